"""The demo's plain functions, called directly on tiny real models, and the app built on the shipped ones."""

import os
import subprocess
import sys
from pathlib import Path

import gradio as gr
import pandas as pd
import pytest

import nlp_rnn

pytestmark = pytest.mark.slow

MODELS = Path(__file__).resolve().parent.parent / "demo" / "models"


def test_classify_returns_probabilities_and_highlights(demo_module, tiny_run):
    text = "A warm, funny and clever film."
    scores, pieces, notice = demo_module.classify(nlp_rnn.load(tiny_run), text)
    assert set(scores) == {"neg", "pos"}
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert "".join(piece for piece, _ in pieces) == text  # the highlights cover the text, unchanged
    weights = [w for _, w in pieces if w is not None]
    assert len(weights) == 8 and max(weights) == 1.0 and min(weights) > 0  # attention: scaled to (0, 1]
    assert "attention-pooling weights" in notice and "cut" not in notice


def test_classify_cuts_long_input_and_removes_control_characters(demo_module, tiny_run):
    _, pieces, notice = demo_module.classify(nlp_rnn.load(tiny_run), "great\x00\x1b " * 200_000)  # 1.4 MB
    assert "Input cut to the first 5,000" in notice and "400,000 control character(s) removed" in notice
    assert "".join(piece for piece, _ in pieces) == "great " * 833 + "gr"


@pytest.mark.parametrize("text", ["", "   \n\t ", None, "\x00\x01"])
def test_empty_input_is_a_message(demo_module, tiny_run, reversal_run, text):
    with pytest.raises(gr.Error, match="Please enter a review"):
        demo_module.classify(nlp_rnn.load(tiny_run), text)
    with pytest.raises(gr.Error, match="Please enter a German sentence"):
        demo_module.translate(nlp_rnn.load(reversal_run), text)


@pytest.mark.parametrize("text", ["مرحبا بالعالم", "😀🎬🍿", "<img src=x onerror=alert(1)>"])
def test_unusual_scripts_get_an_answer(demo_module, tiny_run, text):
    scores, pieces, _ = demo_module.classify(nlp_rnn.load(tiny_run), text)
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert "".join(piece for piece, _ in pieces) == text


def test_translate_gives_nbest_and_a_heatmap_of_the_right_shape(demo_module, reversal_run):
    translator = nlp_rnn.load(reversal_run)
    text, rows, figure, notice = demo_module.translate(translator, "1 2 3 4", "beam", 4, 3)
    result = translator.translate(["1 2 3 4"], beam_size=4, n_best=3, return_attention=True)[0]
    assert text == result["translation"]
    assert [row[1] for row in rows] == [c["translation"] for c in result["nbest"]] and len(rows) == 3
    assert [row[0] for row in rows] == [1, 2, 3] and rows[0][2] >= rows[1][2] >= rows[2][2]
    axis = figure.axes[0]
    assert axis.images[0].get_array().shape == (len(result["target_tokens"]), len(result["source_tokens"]))
    assert len(axis.get_xticklabels()) == len(result["source_tokens"])
    assert notice == ""


def test_greedy_ignores_the_beam_slider_and_nbest_is_capped(demo_module, reversal_run):
    translator = nlp_rnn.load(reversal_run)
    text, rows, _, _ = demo_module.translate(translator, "5 6 7", "greedy", 8, 5)
    assert len(rows) == 1 and text == translator.translate(["5 6 7"], beam_size=1)[0]["translation"]
    _, rows, _, _ = demo_module.translate(translator, "5 6 7", "beam", 2, 10)
    assert len(rows) == 2


def test_translation_examples_come_from_the_validation_split(demo_module):
    mirror = Path(os.environ["NLP_RNN_DATA_DIR"]) / "bentrevett" / "multi30k" / "validation.parquet"
    german = set(pd.read_parquet(mirror)["de"])
    assert all(example in german for example in demo_module.TRANSLATION_EXAMPLES)


def test_app_builds_on_the_shipped_models(demo_module):
    for name in ("sentiment-imdb", "translate-de-en"):
        folder = MODELS / name
        assert (folder / "model.safetensors").is_file(), f"demo/models/{name} must be shipped"
        assert not (folder / "training_state.pt").exists()
        assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) <= 20 * 1024 * 1024
    assert sum(p.stat().st_size for p in (MODELS / "sentiment-imdb").rglob("*") if p.is_file()) <= 15 * 1024 * 1024
    app = demo_module.build_app()
    assert isinstance(app, gr.Blocks)
    cards = [demo_module.model_card(nlp_rnn.load(MODELS / name)) for name in ("sentiment-imdb", "translate-de-en")]
    assert "stanfordnlp/imdb" in cards[0] and "bentrevett/multi30k" in cards[1]
    assert all("Trained with" in card and "nlp-rnn train" in card for card in cards)


def test_installed_without_a_checkout_both_folders_are_needed(demo_module, monkeypatch, tiny_run, reversal_run):
    """A wheel ships no models (``MODELS`` is None): a folder not given is one error naming the option."""
    assert demo_module.MODELS == MODELS  # the tests run from the checkout
    monkeypatch.setattr(demo_module, "MODELS", None)
    with pytest.raises(nlp_rnn.NlpRnnError, match="needs --sentiment RUN_DIR and --translation RUN_DIR"):
        demo_module.build_app()
    with pytest.raises(nlp_rnn.NlpRnnError, match=r"needs --translation RUN_DIR: an installed nlp-rnn ships no"):
        demo_module.model_dirs(tiny_run)
    assert demo_module.model_dirs(tiny_run, reversal_run) == (tiny_run, reversal_run)


def test_the_script_serves_the_models_beside_it():
    """``python demo/app.py``: the sentiment model from demo/models loads, the wrong translation folder is one line."""
    script, checkout = MODELS.parent / "app.py", str(MODELS.parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [checkout, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, str(script), "--translation", str(MODELS / "sentiment-imdb")],
                            capture_output=True, text=True, cwd="/", env=env, check=False)  # this checkout's code
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (f"error: {MODELS / 'sentiment-imdb'}: not a translation run "
                                                      "folder (the Translate tab needs one; this is classification)")


def test_a_model_of_the_wrong_kind_is_a_clear_error(demo_module, tiny_run):
    with pytest.raises(nlp_rnn.NlpRnnError, match="not a translation run folder"):
        demo_module.build_app(tiny_run, tiny_run)


def test_quantized_app_classifies_and_explains(demo_module):
    """``nlp-rnn demo --quantize``: both shipped models int8, the sentiment highlight from the float copy."""
    app = demo_module.build_app(quantize=True)
    assert isinstance(app, gr.Blocks)
    predictor = nlp_rnn.load(MODELS / "sentiment-imdb", quantize=True)
    label, spans, _ = demo_module.classify(predictor, "A wonderful film, moving and funny.")
    assert max(label, key=label.get) == "pos" and spans
