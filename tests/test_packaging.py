import pytest

import nlp_rnn
from nlp_rnn.cli import main
from nlp_rnn.packaging import pack_run

pytestmark = pytest.mark.slow

TEXTS = ["What a film!", "Awful.", "It had its moments, I suppose."]


def test_pack_ships_no_training_state_and_half_size_weights(tiny_run, tmp_path):
    out = pack_run(tiny_run, tmp_path / "shipped", fp16=True)
    assert not (out / "training_state.pt").exists()
    assert {"config.yaml", "tokenizer.json", "model.safetensors", "metrics.json", "README.md"} <= {
        p.name for p in out.iterdir()}
    full, half = (tiny_run / "model.safetensors").stat().st_size, (out / "model.safetensors").stat().st_size
    assert half < 0.6 * full
    original, packed = nlp_rnn.load(tiny_run).predict(TEXTS), nlp_rnn.load(out).predict(TEXTS)
    for a, b in zip(original, packed, strict=True):
        assert a["label"] == b["label"] and a["score"] == pytest.approx(b["score"], abs=2e-3)


def test_model_card_reports_evaluation_after_card_only(tiny_run, tmp_path):
    out = pack_run(tiny_run, tmp_path / "shipped")
    assert main(["evaluate", str(out), "--split", "validation"]) == 0
    assert main(["pack", str(out), "--card-only"]) == 0
    card = (out / "README.md").read_text()
    assert "stanfordnlp/imdb" in card and "| validation |" in card and "parameters" in card
    assert "by validation accuracy" in card and "auto" not in card


def test_model_card_counts_the_tokenizers_vocabulary_not_the_configs(tiny_run, tmp_path):
    """A config may ask for more types than its corpus has (20,000 asked, a few thousand found)."""
    import yaml

    out = pack_run(tiny_run, tmp_path / "shipped")
    config = yaml.safe_load((out / "config.yaml").read_text())
    config["tokenizer"]["vocab_size"] = 20000
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert main(["pack", str(out), "--card-only"]) == 0
    card = (out / "README.md").read_text()
    vocabulary = nlp_rnn.load(out).tokenizer.get_vocab_size()
    assert vocabulary < 20000 and f"word-level, {vocabulary:,} types" in card and "20,000" not in card


def test_pack_refuses_to_overwrite(tiny_run, tmp_path):
    pack_run(tiny_run, tmp_path / "shipped")
    with pytest.raises(nlp_rnn.NlpRnnError, match="--force"):
        pack_run(tiny_run, tmp_path / "shipped")


def test_force_replaces_a_model_folder_but_never_the_run_or_other_files(tiny_run, tmp_path):
    pack_run(tiny_run, tmp_path / "shipped")
    (tmp_path / "shipped" / "stale.txt").write_text("from the old copy")
    pack_run(tiny_run, tmp_path / "shipped", force=True)
    assert not (tmp_path / "shipped" / "stale.txt").exists() and (tmp_path / "shipped" / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["shipped"]  # no temporary folders left beside it
    with pytest.raises(nlp_rnn.NlpRnnError, match="run folder"):
        pack_run(tiny_run, tiny_run, force=True)
    with pytest.raises(nlp_rnn.NlpRnnError, match="run folder"):
        pack_run(tiny_run, tiny_run.parent, force=True)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    with pytest.raises(nlp_rnn.NlpRnnError, match="not a model folder"):
        pack_run(tiny_run, tmp_path / "notes", force=True)
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me"
