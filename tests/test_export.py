"""ONNX export: the graphs, run by onnxruntime, give PyTorch's numbers at batch sizes and lengths other than
the traced ones, and greedy translation through onnxruntime gives our tokens."""

import json

import numpy as np
import onnxruntime
import pytest
import torch

import nlp_rnn
from nlp_rnn.classifier import SentimentClassifier
from nlp_rnn.cli import main
from nlp_rnn.config import ModelConfig, TranslatorConfig
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.export import export_classifier, export_translator
from nlp_rnn.onnx_inference import load_onnx
from nlp_rnn.translator import Translator

SHAPES = [(1, 1), (1, 9), (5, 3), (4, 23)]  # (batch, length); the export traced (2, 7)


def random_ids(batch, length, vocab, seed):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, length + 1, (batch,), generator=generator)
    lengths[0] = length
    ids = torch.randint(4, vocab, (batch, length), generator=generator)
    return ids * (torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)), lengths


@pytest.mark.parametrize("cell,pooling,layers", [("lstm", "max_mean", 1), ("gru", "attention", 2),
                                                 ("rnn", "last", 1), ("lstm", "mean", 2)])
def test_classifier_graph_matches_pytorch(tmp_path, cell, pooling, layers):
    torch.manual_seed(0)
    config = ModelConfig(cell=cell, embedding_dim=8, hidden_size=6, num_layers=layers, pooling=pooling)
    model = SentimentClassifier(config, vocab_size=50, num_labels=3).eval()
    (path,) = export_classifier(model, tmp_path)
    session = onnxruntime.InferenceSession(str(path))
    for seed, (batch, length) in enumerate(SHAPES):
        ids, lengths = random_ids(batch, length, 50, seed)
        (logits,) = session.run(None, {"input_ids": ids.numpy(), "lengths": lengths.numpy()})
        with torch.no_grad():
            expected = model.head(model.pooling(model.encoder(ids, lengths))[0])
        np.testing.assert_allclose(logits, expected.numpy(), atol=1e-5)


def test_a_python_loop_cell_is_refused(tmp_path):
    model = SentimentClassifier(ModelConfig(cell="peephole_lstm", embedding_dim=4, hidden_size=4), 20, 2)
    with pytest.raises(NlpRnnError, match="peephole_lstm"):
        export_classifier(model, tmp_path)


VARIANTS = [dict(attention="bahdanau"), dict(attention="luong_general", input_feeding=True, tie_embeddings=True),
            dict(attention="luong_dot", num_layers=2, decoder_layers=2)]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(f"{k}={v[k]}" for k in v))
def test_translator_graphs_match_pytorch(tmp_path, variant):
    torch.manual_seed(0)
    config = TranslatorConfig(embedding_dim=12, hidden_size=10, decoder_hidden_size=20, attention_size=9,
                              **variant)
    model = Translator(config, 30, 25).eval()
    encoder_path, step_path = export_translator(model, tmp_path)
    encoder, step = onnxruntime.InferenceSession(str(encoder_path)), onnxruntime.InferenceSession(str(step_path))
    step_inputs = {i.name for i in step.get_inputs()}
    for seed, (batch, length) in enumerate(SHAPES):
        src, src_lengths = random_ids(batch, length, 30, seed)
        values, keys, mask, hidden, attentional = encoder.run(None, {"src": src.numpy(),
                                                                     "src_lengths": src_lengths.numpy()})
        prev = torch.randint(4, 25, (batch,))
        feed = {"prev_tokens": prev.numpy(), "hidden": hidden, "attentional": attentional, "values": values,
                "keys": keys, "mask": mask}
        log_probs, next_hidden, next_attentional, attention = step.run(
            None, {k: v for k, v in feed.items() if k in step_inputs})
        with torch.no_grad():
            source = model.encode(src, src_lengths)
            expected = model.decode_step(prev, source.initial_state, source)
        np.testing.assert_allclose(values, source.values.numpy(), atol=1e-5)
        np.testing.assert_array_equal(mask, source.mask.numpy())
        np.testing.assert_allclose(hidden, source.initial_state.hidden.numpy(), atol=1e-5)
        np.testing.assert_allclose(log_probs, expected.logits.log_softmax(-1).numpy(), atol=1e-5)
        np.testing.assert_allclose(next_hidden, expected.state.hidden.numpy(), atol=1e-5)
        np.testing.assert_allclose(next_attentional, expected.state.attentional.numpy(), atol=1e-5)
        np.testing.assert_allclose(attention, expected.attention.numpy(), atol=1e-5)


def test_exported_classifier_predicts_like_the_run(tmp_path, tiny_run, capsys):
    out = tmp_path / "onnx"
    assert main(["export", str(tiny_run), "--format", "onnx", "--out", str(out)]) == 0
    assert "classifier.onnx" in capsys.readouterr().out
    manifest = json.loads((out / "export.json").read_text())
    predictor = nlp_rnn.load(tiny_run)
    assert manifest["graphs"] == ["classifier.onnx"] and manifest["labels"] == predictor.labels
    texts = ["A wonderful, moving film.", "Dull and far too long; I left early.", "ok", "word " * 300]
    ours = predictor.predict(texts)
    exported = load_onnx(out, threads=1).predict(texts, batch_size=3)
    assert [p["label"] for p in exported] == [p["label"] for p in ours]
    for mine, theirs in zip(ours, exported, strict=True):
        assert theirs["scores"] == pytest.approx(mine["scores"], abs=1e-5)


def test_greedy_translation_through_onnxruntime_equals_ours(tmp_path, reversal_run):
    out = tmp_path / "onnx"
    assert main(["export", str(reversal_run), "--out", str(out)]) == 0
    texts = ["1 2 3", "9 8 7 6 5 4 3", "4 4 0 1", "5", "3 1 4 1 5 9 2 6 5 3 5 8 9 7 9 3 2 3 8 4 6 2 6 4"]
    ours = [t["translation"] for t in nlp_rnn.load(reversal_run).translate(texts, beam_size=1)]
    exported = load_onnx(out, threads=1).translate(texts, batch_size=2)
    assert exported == ours
    assert exported[0] == "3 2 1"  # and the model really learned the task


def test_export_errors_are_one_line(tmp_path, tiny_run, capsys):
    assert main(["export", str(tmp_path / "nowhere")]) == 2
    assert "run folder not found" in capsys.readouterr().err
    assert main(["export", str(tiny_run), "--format", "tflite", "--out", str(tmp_path / "x")]) == 2
    assert "unknown export format 'tflite'" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert main(["export", str(tiny_run), "--out", str(tmp_path / "full")]) == 2
    assert "--force" in capsys.readouterr().err
    with pytest.raises(NlpRnnError, match="export.json"):
        load_onnx(tmp_path / "full")

