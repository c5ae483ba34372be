"""The demo's plain functions, called directly on a tiny real model, and the app built on the shipped one."""

import importlib.util
from pathlib import Path

import gradio as gr
import pytest

import nlp_rnn

pytestmark = pytest.mark.slow

APP = Path(__file__).resolve().parent.parent / "demo" / "app.py"
SHIPPED = APP.parent / "models" / "sentiment-imdb"


def load_app_module():
    spec = importlib.util.spec_from_file_location("demo_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_classify_returns_probabilities(tiny_run):
    app = load_app_module()
    scores, notice = app.classify(nlp_rnn.load(tiny_run), "A warm, funny and clever film.")
    assert set(scores) == {"neg", "pos"}
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert notice == ""


def test_classify_cuts_long_input_with_a_notice(tiny_run):
    app = load_app_module()
    _, notice = app.classify(nlp_rnn.load(tiny_run), "great " * 5000)
    assert "cut to the first 5,000" in notice


def test_empty_input_is_a_message(tiny_run):
    app = load_app_module()
    with pytest.raises(gr.Error):
        app.classify(nlp_rnn.load(tiny_run), "   ")


def test_app_builds_on_the_shipped_model():
    assert (SHIPPED / "model.safetensors").is_file(), "demo/models/sentiment-imdb must be shipped"
    assert not (SHIPPED / "training_state.pt").exists()
    assert sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file()) <= 15 * 1024 * 1024
    app = load_app_module()
    assert isinstance(app.build_app(SHIPPED), gr.Blocks)
