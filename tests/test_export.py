"""ONNX export: the graphs, run by onnxruntime, give PyTorch's numbers at batch sizes and lengths other than
the traced ones; greedy translation and tagging (Viterbi in numpy) through onnxruntime give our tokens and tags."""

import json
import random

import datasets
import numpy as np
import onnxruntime
import pytest
import torch

import nlp_rnn
from nlp_rnn.batching import Collator
from nlp_rnn.classifier import SentimentClassifier
from nlp_rnn.cli import main
from nlp_rnn.config import ModelConfig, TranslatorConfig, config_from_dict
from nlp_rnn.crf import CRF, FORBIDDEN
from nlp_rnn.data import load_eval_split
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.export import export_classifier, export_translator
from nlp_rnn.onnx_graphs import export_tagger
from nlp_rnn.onnx_inference import load_onnx, viterbi
from nlp_rnn.runtime import native_bf16
from nlp_rnn.tagger import SequenceTagger, TagBatch
from nlp_rnn.tasks.tagging import TaggerConfig, TaggingTask, iob_allowed
from nlp_rnn.training import train
from nlp_rnn.translator import Translator

SHAPES = [(1, 1), (1, 9), (5, 3), (4, 23)]  # (batch, length); the export traced (2, 7)


def random_ids(batch, length, vocab, seed):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, length + 1, (batch,), generator=generator)
    lengths[0] = length
    ids = torch.randint(4, vocab, (batch, length), generator=generator)
    return ids * (torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)), lengths


def assert_classifier_graph_matches(path, model: SentimentClassifier) -> None:
    """The ONNX graph at ``path`` gives the model's logits (vocabulary 50) for every shape in SHAPES."""
    session = onnxruntime.InferenceSession(str(path))
    for seed, (batch, length) in enumerate(SHAPES):
        ids, lengths = random_ids(batch, length, 50, seed)
        (logits,) = session.run(None, {"input_ids": ids.numpy(), "lengths": lengths.numpy()})
        with torch.no_grad():
            expected = model.head(model.pooling(model.encoder(ids, lengths))[0])
        np.testing.assert_allclose(logits, expected.numpy(), atol=1e-5)


@pytest.mark.parametrize("cell,pooling,layers", [("lstm", "max_mean", 1), ("gru", "attention", 2),
                                                 ("rnn", "last", 1), ("lstm", "mean", 2)])
def test_classifier_graph_matches_pytorch(tmp_path, cell, pooling, layers):
    torch.manual_seed(0)
    config = ModelConfig(cell=cell, embedding_dim=8, hidden_size=6, num_layers=layers, pooling=pooling)
    model = SentimentClassifier(config, vocab_size=50, num_labels=3).eval()
    (path,) = export_classifier(model, tmp_path)
    assert_classifier_graph_matches(path, model)


def test_classifier_graph_with_ulmfits_batch_norm_head_matches_pytorch(tmp_path):
    torch.manual_seed(0)
    config = ModelConfig(embedding_dim=8, hidden_size=6, pooling="max_mean", head_hidden_size=4)
    model = SentimentClassifier(config, vocab_size=50, num_labels=2)
    model(Collator()([{"input_ids": random_ids(1, 9, 50, seed)[0][0].tolist()} for seed in range(6)]))
    assert model.head[0].num_batches_tracked.item() == 1  # running statistics of its own, not 0 and 1
    (path,) = export_classifier(model.eval(), tmp_path)
    assert_classifier_graph_matches(path, model)


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
    # the graph computes in float32; our predict runs under bf16 autocast on a CPU with native bf16
    tolerance = 1e-2 if native_bf16(torch.device("cpu")) else 1e-5
    for mine, theirs in zip(ours, exported, strict=True):
        assert theirs["scores"] == pytest.approx(mine["scores"], abs=tolerance)


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


# -- the tagger ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell,layers,chars,output", [("lstm", 1, True, "crf"), ("gru", 2, False, "softmax")])
def test_tagger_emission_graph_matches_pytorch(tmp_path, cell, layers, chars, output):
    torch.manual_seed(0)
    config = TaggerConfig(cell=cell, embedding_dim=8, char_features=chars, char_embedding_dim=4, char_filters=5,
                          hidden_size=6, num_layers=layers, output=output, packed="always")
    model = SequenceTagger(config, vocab_size=40, num_chars=30, num_tags=5).eval()
    written = export_tagger(model, tmp_path)
    assert [p.name for p in written] == ["tagger.onnx"] + (["crf.json"] if output == "crf" else [])
    assert model.encoder.packed == "always"  # exported unpacked, and given back as it was
    session = onnxruntime.InferenceSession(str(written[0]))
    assert ("char_ids" in {i.name for i in session.get_inputs()}) == chars  # an unread input is left out
    for seed, (batch, length) in enumerate(SHAPES):
        input_ids, lengths = random_ids(batch, length, 40, seed)
        width = 1 + seed * 3  # characters per word: 1 to 10 (the export traced 5)
        char_ids = torch.randint(4, 30, (batch, length, width), generator=torch.Generator().manual_seed(seed))
        char_ids = char_ids * (torch.rand(batch, length, width) < 0.8) * (input_ids != 0).unsqueeze(-1)
        feed = {"input_ids": input_ids.numpy(), "char_ids": char_ids.numpy(), "lengths": lengths.numpy()}
        (emissions,) = session.run(None, {i.name: feed[i.name] for i in session.get_inputs()})
        mask = torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1)
        with torch.no_grad():
            expected = model.emissions(TagBatch(input_ids, char_ids, lengths, mask))
        np.testing.assert_allclose(emissions, expected.numpy(), atol=1e-5)


def test_numpy_viterbi_equals_the_crfs_under_iob2_constraints():
    torch.manual_seed(0)
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    allowed, allowed_start = iob_allowed(names)
    transitions, start, end = torch.randn(5, 5) * 3, torch.randn(5) * 3, torch.randn(5)
    masked = (np.where(allowed, transitions, FORBIDDEN), np.where(allowed_start, start, FORBIDDEN), end.numpy())
    emissions = torch.randn(6, 9, 5) * 3
    lengths = torch.tensor([9, 1, 2, 5, 9, 3])
    mask = torch.arange(9).unsqueeze(0) < lengths.unsqueeze(1)
    expected, _ = CRF.viterbi_scores(emissions, mask, transitions, start, end, allowed, allowed_start)
    found = [viterbi(emissions[row, :n].numpy(), *masked) for row, n in enumerate(lengths.tolist())]
    assert found == expected
    unconstrained, _ = CRF.viterbi_scores(emissions, mask, transitions, start, end)
    assert found != unconstrained  # the masks really changed some paths


def write_entity_dataset(folder, seed: int = 0):
    """Synthetic IOB2 sentences: ``Mr`` + a name [+ ``Jr``] is PER, ``in`` + a place is LOC."""
    rng = random.Random(seed)
    people, places = ["Smith", "Jones", "Garcia", "Okafor", "Lee"], ["Paris", "Lagos", "Lima", "Oslo", "Accra"]
    filler = ["the", "a", "met", "saw", "lives", "works", "today", "and", "we", "1996", "new"]

    def sentence() -> tuple[list[str], list[str]]:
        tokens, tags = [], []
        for _ in range(rng.randint(1, 4)):
            kind = rng.choice(["per", "loc", "word"])
            if kind == "per":
                name = rng.choice(people) if rng.random() < 0.8 else rng.choice("QXZ") + "anderson"
                tokens += ["Mr", name] + (["Jr"] if rng.random() < 0.3 else [])
                tags += ["O", "B-PER"] + ["I-PER"] * (len(tokens) - len(tags) - 2)
            elif kind == "loc":
                tokens += ["in", rng.choice(places)]
                tags += ["O", "B-LOC"]
            else:
                tokens.append(rng.choice(filler))
                tags.append("O")
        return tokens, tags

    folder.mkdir(parents=True, exist_ok=True)
    for name, count in (("train", 80), ("validation", 20), ("test", 40)):
        tokens, tags = zip(*(sentence() for _ in range(count)), strict=True)
        datasets.Dataset.from_dict({"tokens": list(tokens), "ner_tags": list(tags)}).to_parquet(
            str(folder / f"{name}.parquet"))
    return folder


@pytest.fixture(scope="module")
def entity_data(tmp_path_factory):
    return write_entity_dataset(tmp_path_factory.mktemp("data") / "entities")


@pytest.mark.parametrize("output,constrained", [("crf", True), ("softmax", True), ("softmax", False)])
def test_exported_tagger_tags_like_the_run(tmp_path, entity_data, output, constrained):
    run_dir = tmp_path / "run"
    train(config_from_dict({
        "task": "tagging", "data": {"dataset": str(entity_data), "max_length": 40},
        "tokenizer": {"type": "word", "min_frequency": 1, "lowercase": False},
        "model": {"embedding_dim": 12, "char_embedding_dim": 6, "char_filters": 8, "hidden_size": 12,
                  "max_word_length": 6, "dropout": 0.0, "embedding_dropout": 0.0, "output": output,
                  "iob_constraints": constrained},
        "train": {"epochs": 8, "batch_size": 8, "lr": 1e-2, "progress": False, "num_threads": 1,
                  "checkpoint_every": 1000},
    }), run_dir)
    out = tmp_path / "onnx"
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    manifest = json.loads((out / "export.json").read_text())
    predictor = nlp_rnn.load(run_dir)
    assert manifest["runner"] == "tagger" and manifest["tags"] == predictor.labels
    assert (manifest["allowed"] is not None) == constrained and (out / "crf.json").is_file() == (output == "crf")
    test = datasets.Dataset.from_parquet(str(entity_data / "test.parquet"))
    sentences = [*test["tokens"], [], ["Mr", "Unseenname", "in", "Transylvaniaville", "2024"], ["in"] * 30,
                 ["Jr"], ["the", "Jr", "in", "Jr"]]  # unknown, long, empty; I-PER's word where IOB2 forbids it
    ours = [tags for tags, _ in predictor.tag_tokens(sentences)]
    exported = load_onnx(out, threads=1).tag_tokens(sentences, batch_size=7)
    assert exported == ours
    gold = list(test["ner_tags"])
    right = sum(g == p for gold_row, row in zip(gold, ours, strict=False) for g, p in zip(gold_row, row, strict=True))
    assert right / sum(map(len, gold)) > 0.8  # the model learned the entities: agreeing on all-O would prove little


def test_a_subword_tagger_is_refused(tmp_path):
    config = config_from_dict({"task": "tagging", "tokenizer": {"type": "bpe"}})
    task = TaggingTask(config, [], {"labels": ["O", "B-PER", "I-PER"]})
    with pytest.raises(NlpRnnError, match="word-level"):
        task.export_onnx(None, tmp_path, 17)


# -- beam search and int8 over onnxruntime ----------------------------------------------------------------------

def test_beam_search_through_onnxruntime_equals_ours(tmp_path, reversal_run):
    out = tmp_path / "onnx"
    assert main(["export", str(reversal_run), "--out", str(out)]) == 0
    texts = ["1 2 3", "9 8 7 6 5 4 3", "4 4 0 1", "5", "3 1 4 1 5 9 2 6 5 3 5 8 9 7 9 3 2 3 8 4 6 2 6 4"]
    predictor, runner = nlp_rnn.load(reversal_run), load_onnx(out, threads=1)
    for beam in (1, 2, 4):
        ours = [t["translation"] for t in predictor.translate(texts, beam_size=beam, batch_size=3)]
        assert runner.translate(texts, beam_size=beam, batch_size=2) == ours
    with pytest.raises(NlpRnnError, match="beam_size"):
        runner.translate(texts, beam_size=0)


def graph_ops(path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_int8_classifier_export_predicts_like_the_float_one(tmp_path, tiny_run, capsys):
    assert main(["export", str(tiny_run), "--out", str(tmp_path / "float")]) == 0
    assert main(["export", str(tiny_run), "--out", str(tmp_path / "int8"), "--int8"]) == 0
    assert "classifier.onnx" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "int8" / "export.json").read_text())
    assert manifest["int8"] is True and manifest["graphs"] == ["classifier.onnx"]
    ops = graph_ops(tmp_path / "int8" / "classifier.onnx")
    assert {"DynamicQuantizeLSTM", "MatMulInteger"} <= ops and "LSTM" not in ops  # both directions and the head
    predictor = nlp_rnn.load(tiny_run)
    texts = load_eval_split(predictor.config.data, "test", type(predictor.task), max_examples=64)["text"]
    full = load_onnx(tmp_path / "float", threads=1).predict_proba(texts, batch_size=7)
    small = load_onnx(tmp_path / "int8", threads=1).predict_proba(texts, batch_size=7)
    np.testing.assert_allclose(small, full, atol=0.05)  # int8 rounding moves a probability a little, not a lot
    assert (small.argmax(-1) == full.argmax(-1)).mean() >= 0.9


def test_int8_translator_export_keeps_its_grus_float(tmp_path, reversal_run):
    out = tmp_path / "int8"
    assert main(["export", str(reversal_run), "--out", str(out), "--int8"]) == 0
    assert "MatMulInteger" in graph_ops(out / "decoder_step.onnx")  # the output layer and the attention's
    assert "GRU" in graph_ops(out / "decoder_step.onnx")  # onnxruntime has no int8 GRU
    texts = ["1 2 3", "9 8 7 6 5 4 3", "4 4 0 1", "5", "2 7 1 8 2 8"]
    ours = [t["translation"] for t in nlp_rnn.load(reversal_run).translate(texts, beam_size=3)]
    found = load_onnx(out, threads=1).translate(texts, beam_size=3)
    assert sum(a == b for a, b in zip(found, ours, strict=True)) >= 4
