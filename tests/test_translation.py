"""Translation end to end: the reversal sanity task learns, the run folder rebuilds, the API, the CLI and bad
input behave, resume is exact, runs form ensembles, and Multi30k / eng-fra load through the same loader."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import nlp_rnn
from nlp_rnn.cli import main
from nlp_rnn.config import load_config
from nlp_rnn.data import load_splits
from nlp_rnn.predictor import TranslationPredictor, load_model
from nlp_rnn.search import beam_search, greedy_search
from nlp_rnn.tasks import TranslationTask, encode_pairs
from nlp_rnn.tokenization import decode_ids
from nlp_rnn.training import train
from tests.tiny import assert_resumed_run_matches, reversal_config

pytestmark = pytest.mark.slow


def run_cli(*args, stdin: bytes | None = None):
    return subprocess.run([sys.executable, "-m", "nlp_rnn", *args], input=stdin, capture_output=True,
                          env=dict(os.environ), check=False)


def test_the_reversal_task_is_learned_near_perfectly(reversal_run):
    metrics = json.loads((reversal_run / "metrics.json").read_text())
    assert metrics["validation"]["bleu"] > 95.0
    assert metrics["validation"]["signature"]["bleu"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    names = {p.name for p in reversal_run.iterdir()}
    assert {"config.yaml", "tokenizer.json", "model.safetensors", "metrics.json", "log.jsonl",
            "learning_curve.png", "training_state.pt", "attention"} <= names
    assert len(list((reversal_run / "attention").glob("*.png"))) == 3


def test_translate_api(reversal_run):
    translator = nlp_rnn.load(reversal_run)
    assert isinstance(translator, TranslationPredictor)
    results = translator.translate(["1 2 3 4", "9 8 7 6 5"], beam_size=3, n_best=2, return_attention=True)
    assert [r["translation"] for r in results] == ["4 3 2 1", "5 6 7 8 9"]
    for result in results:
        assert len(result["nbest"]) == 2 and result["nbest"][0]["score"] >= result["nbest"][1]["score"]
        weights = torch.tensor(result["attention"])
        assert weights.shape == (len(result["target_tokens"]), len(result["source_tokens"]))
        assert result["source_tokens"][-1] == "</s>"
    greedy = translator.translate(["1 2 3 4"], beam_size=1)
    assert greedy[0]["translation"] == "4 3 2 1" and translator.translate([]) == []


def test_long_and_odd_inputs_translate_or_fail_in_one_line(reversal_run, caplog):
    translator = nlp_rnn.load(reversal_run)
    paragraph = " ".join(["7"] * 5000)
    (result,) = translator.translate([paragraph], beam_size=2)
    assert result["truncated"] and "cut" in caplog.text
    assert len(result["translation"].split()) <= 1.5 * 21 + 5  # decoding ends: at most the output limit
    odd = ["😀 <b>html</b> \u05e9\u05dc\u05d5\u05dd", "\x00\x07 control", "<script>alert(1)</script>"]
    assert len(translator.translate(odd)) == 3
    with pytest.raises(nlp_rnn.NlpRnnError, match="no tokens"):
        translator.translate(["   "])


def test_evaluate_json_has_bleu_with_its_signature(reversal_run, tmp_path):
    result = run_cli("evaluate", str(reversal_run), "--split", "test", "--beam", "3", "--json", "--out",
                     str(tmp_path))
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout)
    assert report["bleu"] > 95.0 and report["num_sentences"] == 100 and report["beam_size"] == 3
    assert {"chrf", "ter", "bleu_lowercase", "sentences_per_second"} <= set(report)
    assert report["signature"]["bleu"].startswith("nrefs:1|case:mixed")
    assert len((tmp_path / "hypotheses.beam3.txt").read_text().splitlines()) == 100


def test_evaluate_greedy_reproduces_the_validation_bleu_of_training(tmp_path, reversal_data, capsys):
    """A weak one-epoch model on sources cut to 6 tokens, validated on data.max_eval_examples=40:
    ``evaluate --split validation --beam 1 --max-examples 40`` decodes the same sample, encoded and cut alike,
    so it gives metrics.json's validation BLEU and chrF (same signature), in batches of any size; without
    --max-examples it scores the whole split."""
    from nlp_rnn.cli import main

    config = reversal_config(reversal_data, data={"max_length": 6, "max_eval_examples": 40},
                             train={"epochs": 1, "device": "cpu", "amp": False})
    run_dir = tmp_path / "weak"
    validation = train(config, run_dir)["validation"]
    assert 10 < validation["bleu"] < 95  # far from 0 and 100, so a decoding difference would show
    for batch_size in (7, 100):
        assert main(["evaluate", str(run_dir), "--split", "validation", "--beam", "1", "--max-examples", "40",
                     "--batch-size", str(batch_size), "--device", "cpu", "--json",
                     "--out", str(tmp_path / "evaluation")]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["num_sentences"] == 40
        assert (report["bleu"], report["chrf"]) == (validation["bleu"], validation["chrf"])
        assert report["signature"]["bleu"] == validation["signature"]["bleu"]
    assert main(["evaluate", str(run_dir), "--split", "validation", "--beam", "1", "--device", "cpu", "--json",
                 "--out", str(tmp_path / "whole")]) == 0
    assert json.loads(capsys.readouterr().out)["num_sentences"] == 100


def test_predict_prints_one_line_per_input_line(reversal_run):
    lines = [b"1 2 3", b"", b"\xff\xfe 4 5", "😀 6".encode(), b"   ", b"7 8 9 0"]
    result = run_cli("predict", str(reversal_run), "--beam", "2", "--nbest", "2", stdin=b"\n".join(lines) + b"\n")
    out = result.stdout.decode().splitlines()
    assert "Traceback" not in result.stderr.decode()
    assert len(out) == len(lines) and out[1] == out[4] == "error: empty text"
    assert out[0].split("\t")[0] == "3 2 1" and len(out[0].split("\t")) == 2
    assert out[5].split("\t")[0] == "0 9 8 7"
    assert result.returncode == 1


def test_predict_bad_beam_is_one_line(reversal_run):
    result = run_cli("predict", str(reversal_run), "1 2", "--beam", "2", "--nbest", "3")
    assert result.returncode == 2 and "Traceback" not in result.stderr.decode()
    assert result.stderr.decode().startswith("error:") and "n_best" in result.stderr.decode()


# -- ensembles ----------------------------------------------------------------------------------------------------

def test_a_run_in_an_ensemble_with_itself_translates_as_the_run(reversal_run):
    texts = ["1 2 3", "4 5 6 7 8", "9 0 1 2 3 4 5 6"]
    alone, twice = nlp_rnn.load(reversal_run), nlp_rnn.load(reversal_run, ensemble=[reversal_run])
    for beam in (1, 3):
        expected, found = alone.translate(texts, beam_size=beam), twice.translate(texts, beam_size=beam)
        assert [r["translation"] for r in found] == [r["translation"] for r in expected]
        assert [r["score"] for r in found] == pytest.approx([r["score"] for r in expected], abs=1e-4)


@pytest.fixture(scope="module")
def second_reversal_run(tmp_path_factory, reversal_data):
    """Another translator of the reversal task (another seed, one epoch): the same tokenizer, other weights."""
    run_dir = tmp_path_factory.mktemp("runs") / "second"
    train(reversal_config(reversal_data, train={"epochs": 1, "seed": 1}), run_dir)
    return run_dir


def test_two_runs_evaluate_and_predict_as_an_ensemble(reversal_run, second_reversal_run, tmp_path, capsys):
    assert main(["evaluate", str(reversal_run), "--ensemble", str(second_reversal_run), "--split", "test", "--beam",
                 "2", "--json", "--out", str(tmp_path / "evaluation")]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert report["ensemble"] == [str(second_reversal_run)] and 0 < report["bleu"] <= 100
    assert main(["predict", str(reversal_run), "--ensemble", str(second_reversal_run), "1 2 3", "--beam", "2",
                 "--nbest", "2"]) == 0
    assert len(capsys.readouterr().out.strip().split("\t")) == 2
    task, ensemble = load_model(reversal_run, ensemble=[second_reversal_run])
    batch = task.collate([{"src": ids} for ids in TranslationPredictor(
        task.config, task.tokenizers, ensemble, reversal_run, task).encode(["1 2 3", "4 5 6 7 8 9", "0"])[0]])
    greedy = greedy_search(ensemble, batch.src, batch.src_lengths)
    beam_of_one = beam_search(ensemble, batch.src, batch.src_lengths, beam_size=1)
    assert [h.tokens for h in greedy] == [n[0].tokens for n in beam_of_one]


def test_a_packed_translation_ensemble_translates_as_its_runs_together(reversal_run, second_reversal_run, tmp_path):
    from nlp_rnn.packaging import pack_run

    packed = pack_run(reversal_run, tmp_path / "packed", ensemble=[second_reversal_run])
    assert "An ensemble of 2 runs" in (packed / "README.md").read_text()
    texts = ["1 2 3", "4 5 6 7 8"]
    together = nlp_rnn.load(reversal_run, ensemble=[second_reversal_run]).translate(texts, beam_size=2)
    assert nlp_rnn.load(packed).translate(texts, beam_size=2) == together


def test_runs_with_other_tokenizers_cannot_form_an_ensemble(reversal_run, tmp_path, capsys):
    from tokenizers import Tokenizer, normalizers

    other = tmp_path / "other"
    shutil.copytree(reversal_run, other)
    tokenizer = Tokenizer.from_file(str(other / "tokenizer.json"))
    tokenizer.normalizer = normalizers.Lowercase()  # the same vocabulary, read otherwise
    tokenizer.save(str(other / "tokenizer.json"))
    assert main(["predict", str(reversal_run), "--ensemble", str(other), "1 2 3"]) == 2
    error = capsys.readouterr().err
    assert "run 2's source tokenizer differs" in error and "run 2's target tokenizer differs" in error
    assert len(error.strip().splitlines()) == 1


# -- BPE-dropout --------------------------------------------------------------------------------------------------

def bpe_config(reversal_data, dropout, **train_options):
    return reversal_config(reversal_data, tokenizer={"type": "bpe", "vocab_size": 60, "dropout": dropout},
                           train={"epochs": 2, **train_options})


def test_bpe_dropout_segments_the_training_pairs_anew_each_epoch(reversal_data):
    task, data = TranslationTask.for_training(bpe_config(reversal_data, 0.3))
    rows = [data.train[i] for i in range(len(data.train))]
    kept = data.train_for_epoch(0)  # epoch 0's draw again: read back from the data cache, as a resume does
    assert [kept[i] for i in range(len(kept))] == rows
    later = data.train_for_epoch(1)
    assert [later[i] for i in range(len(later))] != rows
    split = load_splits(task.config.data, TranslationTask).train
    for pairs in (data.train, later):  # every draw still spells the same texts
        assert [decode_ids(task.src_tokenizer, pairs[i]["src"]) for i in range(len(pairs))] == list(split["src"])
        assert [decode_ids(task.tgt_tokenizer, pairs[i]["tgt"][1:]) for i in range(len(pairs))] == list(split["tgt"])


def test_a_run_trained_with_bpe_dropout_saves_its_tokenizer_without_it(reversal_data, tmp_path):
    train(bpe_config(reversal_data, 0.1), tmp_path / "run")
    spec = json.loads((tmp_path / "run" / "tokenizer.json").read_text())
    assert spec["model"]["type"] == "BPE" and spec["model"]["dropout"] is None
    (result,) = nlp_rnn.load(tmp_path / "run").translate(["1 2 3"], beam_size=1)
    assert isinstance(result["translation"], str)


def test_a_run_with_bpe_dropout_resumes_exactly(tmp_path, reversal_data):
    """Interrupted in its second epoch: the resumed run reads both epochs' draws back from the data cache."""
    assert_resumed_run_matches(bpe_config(reversal_data, 0.1), tmp_path, stop_at=130)


def test_bpe_dropout_zero_encodes_the_training_pairs_as_today(reversal_data):
    task, data = TranslationTask.for_training(bpe_config(reversal_data, 0.0))
    assert data.train_for_epoch is None
    split = load_splits(task.config.data, TranslationTask).train
    expected, _ = encode_pairs(task.src_tokenizer, task.tgt_tokenizer, split["src"], split["tgt"], 20, True)
    assert [data.train[i] for i in range(len(data.train))] == [expected[i] for i in range(len(expected))]


def test_interrupted_and_resumed_translation_run_matches(tmp_path, reversal_data):
    config = reversal_config(reversal_data, train={"epochs": 1, "teacher_forcing": 0.7})
    assert_resumed_run_matches(config, tmp_path, stop_at=40)


def test_separate_vocabularies_and_bahdanau_train(tmp_path, reversal_data):
    config = reversal_config(reversal_data, tokenizer={"joint": False, "type": "bpe", "vocab_size": 60},
                             model={"attention": "bahdanau"}, train={"epochs": 1})
    train(config, tmp_path / "separate")
    assert {"tokenizer.source.json", "tokenizer.target.json"} <= {p.name for p in (tmp_path / "separate").iterdir()}
    (result,) = nlp_rnn.load(tmp_path / "separate").translate(["1 2 3"], beam_size=2)
    assert isinstance(result["translation"], str)


def test_multi30k_loads_with_the_hub_splits_and_columns():
    config = load_config("configs/translation/multi30k_de_en_gru.yaml")
    splits = load_splits(config.data, TranslationTask)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (29000, 1014, 1000)
    assert splits.test[0] == {"de": "Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt.",
                              "en": "A man in an orange hat starring at something."}


def test_eng_fra_trains_with_a_config_change(tmp_path, monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).resolve().parent.parent)  # the config names the mirror relative to here
    overrides = ["data.max_train_examples=300", "data.max_eval_examples=20", "tokenizer.vocab_size=300",
                 "model.embedding_dim=8", "model.hidden_size=8", "model.decoder_hidden_size=16",
                 "model.attention_size=8", "train.epochs=1", "train.progress=false", "train.num_threads=1",
                 "train.max_tokens=null", "train.batch_size=32"]
    config = load_config("configs/translation/eng_fra_gru.yaml", overrides)
    splits = load_splits(config.data, TranslationTask)
    assert len(splits.test) == 20 and set(splits.train.column_names) == {"en", "fr"}
    metrics = train(config, tmp_path / "eng_fra")
    assert metrics["best_epoch"] == 1 and "bleu" in metrics["validation"]


def test_pack_ships_a_translator_with_its_card(reversal_run, tmp_path):
    from nlp_rnn.cli import main
    from nlp_rnn.packaging import pack_run

    out = pack_run(reversal_run, tmp_path / "shipped", fp16=True)
    assert not (out / "training_state.pt").exists() and (out / "attention").is_dir()
    for beam in ("1", "3"):
        assert main(["evaluate", str(out), "--split", "test", "--beam", beam]) == 0
    assert main(["pack", str(out), "--card-only"]) == 0
    card = (out / "README.md").read_text()
    assert "| test | 100 | greedy |" in card and "| test | 100 | beam 3 |" in card and "nrefs:1|case:mixed" in card
    texts = ["1 2 3", "4 5 6 7"]
    original = nlp_rnn.load(reversal_run).translate(texts)
    assert [r["translation"] for r in nlp_rnn.load(out).translate(texts)] == [r["translation"] for r in original]
    assert "decoder.output (Linear" in nlp_rnn.load(out).model.summary(print_fn=None)


def test_validation_loss_is_plain_cross_entropy(reversal_data):
    from nlp_rnn.tasks import make_task

    config = reversal_config(reversal_data, train={"label_smoothing": 0.2})
    task = make_task(config)
    model = task.build_model().eval()
    report = task.evaluate(model, task.validation, torch.device("cpu"), batch_size=64, beam_size=1)
    pairs = task.validation.pairs
    batch = task.collate([pairs[i] for i in range(len(pairs))])
    with torch.no_grad():
        logits, _ = model(batch)
    expected = torch.nn.functional.cross_entropy(logits[batch.tgt_mask], batch.tgt_out[batch.tgt_mask])
    assert report["loss"] == pytest.approx(float(expected), rel=1e-4)
    assert report["ppl"] == pytest.approx(float(expected.exp()), rel=1e-3)


def test_the_shipped_translator_loads_and_translates():
    from pathlib import Path

    shipped = Path(__file__).resolve().parent.parent / "demo" / "models" / "translate-de-en"
    assert (shipped / "model.safetensors").is_file(), "demo/models/translate-de-en must be shipped"
    assert not (shipped / "training_state.pt").exists()
    assert sum(p.stat().st_size for p in shipped.rglob("*") if p.is_file()) <= 25 * 1024 * 1024
    translator = nlp_rnn.load(shipped)
    (result,) = translator.translate(["Ein Mann fährt Fahrrad."], beam_size=5, return_attention=True)
    assert "man" in result["translation"].lower() and result["translation"][0].isupper()  # detokenized, cased
    assert torch.tensor(result["attention"]).shape == (len(result["target_tokens"]), len(result["source_tokens"]))
