"""Every shipped config trains a few steps, shrunk, on its real dataset (lightning-hydra-template style)."""

import math
from pathlib import Path

import pytest
import torch

import nlp_rnn
from nlp_rnn.config import Config, load_config
from nlp_rnn.training import train

pytestmark = pytest.mark.slow

CONFIGS = sorted(path for path in (Path(__file__).resolve().parent.parent / "configs").glob("**/*.yaml")
                 if path.parent.name != "tuning")  # search spaces, not configs: tests/test_tuning.py
SHRINK = ["data.max_train_examples=96", "data.max_eval_examples=32", "data.max_length=48",
          "tokenizer.vocab_size=500", "model.embedding_dim=8", "model.hidden_size=8", "train.epochs=1",
          "train.batch_size=32", "train.progress=false", "train.num_threads=1", "train.init_from=null",
          "data.max_unlabelled_examples=64"]  # VAT's unlabelled split, where a config reads one


def test_configs_exist():
    assert {p.name for p in CONFIGS} >= {"imdb_bilstm.yaml", "sst2_bilstm.yaml", "rotten_tomatoes_bilstm.yaml",
                                         "seed_keras_lstm.yaml", "seed_simple_rnn.yaml"}


def assert_the_run_loads_and_predicts(config: Config, run_dir: Path, metrics: dict) -> None:
    """What the run folder is for, per task: a classifier labels texts with its label names, a translator
    translates, and a language model's weights (it has no predictor) reproduce its validation loss."""
    if config.task == "classification":
        texts = ["A wonderful, moving film.", "Dull, and far too long.", "fine"]
        predictions = nlp_rnn.load(run_dir).predict(texts)
        assert len(predictions) == len(texts)
        for prediction in predictions:
            assert list(prediction["scores"]) == metrics["labels"]
            assert prediction["label"] in metrics["labels"]
            scores = prediction["scores"]
            assert scores[prediction["label"]] == prediction["score"] == max(scores.values())
            assert sum(prediction["scores"].values()) == pytest.approx(1.0, abs=1e-5)
    elif config.task == "translation":
        texts = ["Ein Mann fährt Fahrrad.", "A man rides a bike."]
        translations = nlp_rnn.load(run_dir).translate(texts, beam_size=2, n_best=2)
        assert len(translations) == len(texts)
        for translation in translations:
            assert isinstance(translation["translation"], str) and len(translation["nbest"]) == 2
            assert translation["translation"] == translation["nbest"][0]["translation"]
            assert all(math.isfinite(c["score"]) and c["score"] <= 0 for c in translation["nbest"])
    elif config.task == "tagging":
        texts = ["Angela Merkel met Emmanuel Macron in Paris .", "", "EU rejects German call"]
        results = nlp_rnn.load(run_dir).tag(texts)
        assert [len(r["tags"]) for r in results] == [8, 0, 4]
        assert all(set(r["tags"]) <= set(metrics["labels"]) for r in results)
        assert all(text[e["start"] : e["end"]] == e["text"] for text, r in zip(texts, results, strict=True)
                   for e in r["entities"])
    elif config.task == "generation":
        writer = nlp_rnn.load(run_dir)
        label = writer.labels[-1] if writer.labels else None
        written = writer.generate(["The", ""], label=label, num_samples=2, max_new_tokens=12, seed=0)
        assert len(written) == 4 and all(r["tokens"] <= 12 and r["stopped"] in ("end", "length") for r in written)
        assert written == writer.generate(["The", ""], label=label, num_samples=2, max_new_tokens=12, seed=0)
        assert writer.labels == metrics["labels"] if config.data.label_column else not writer.labels
    else:
        from nlp_rnn import checkpoint as ckpt
        from nlp_rnn.batching import Collator
        from nlp_rnn.data import load_splits
        from nlp_rnn.language_model import BidirectionalLM
        from nlp_rnn.tasks import LanguageModelTask
        from nlp_rnn.tokenization import PAD_ID, encode_texts

        with pytest.raises(nlp_rnn.NlpRnnError, match="language-model run has no predictor.*init_from"):
            nlp_rnn.load(run_dir)
        (tokenizer,) = ckpt.load_tokenizers(LanguageModelTask.tokenizer_files(config), run_dir)
        tensors, _ = ckpt.load_weights(run_dir / ckpt.WEIGHTS_FILE)
        model = BidirectionalLM(config.model, tokenizer.get_vocab_size(), PAD_ID)
        model.load_state_dict(tensors)
        data = config.data
        texts = load_splits(data, LanguageModelTask).validation[data.text_column]
        ids = encode_texts(tokenizer, texts, data.max_length, data.truncation, data.head_fraction)
        batch = Collator(PAD_ID)([{"input_ids": row} for row in ids if len(row) >= 2])  # one token predicts nothing
        with torch.no_grad():
            _, loss = model.eval()(batch)
        assert float(loss) == pytest.approx(metrics["validation"]["loss"], rel=1e-5)
        assert metrics["validation"]["ppl"] == pytest.approx(math.exp(float(loss)), rel=1e-5)


# the unlabelled text and the teacher off: a config as it would be without distillation
WITHOUT_TEACHER = ["train.distillation.teacher=null", "data.unlabelled_split=null", "data.unlabelled_dataset=null",
                   "data.unlabelled_column=null", "data.unlabelled_sentences=false"]


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_trains_shrunk(path, tmp_path, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)  # shipped teachers are named relative to the checkout
    as_written = load_config(path)
    tagging = as_written.task == "tagging"  # pretrained vectors are built apart (README), not in CI
    overrides = SHRINK + (["model.word_vectors=null"] if tagging else [])
    teacher = as_written.train.distillation.teacher
    if teacher and not Path(teacher).exists():  # a teacher trained apart (runs/..., README), not in CI: a shrunk
        train(load_config(path, overrides + WITHOUT_TEACHER), tmp_path / "teacher")  # run of the config stands in
        overrides += [f"train.distillation.teacher={tmp_path / 'teacher'}"]
    config = load_config(path, overrides)
    metrics = train(config, tmp_path / path.stem)
    assert metrics["best_epoch"] == 1
    assert_the_run_loads_and_predicts(config, tmp_path / path.stem, metrics)


TRANSFER = [p for p in CONFIGS if (load_config(p).train.init_from or "runs/").split("/")[0] != "runs"]
PRETRAINING = Path(__file__).resolve().parent.parent / "configs" / "pretraining"
# configs that start from a language model run: runs/<name> is made by configs/pretraining/<name>.yaml
FROM_LM = [p for p in CONFIGS if (PRETRAINING / f"{Path(load_config(p).train.init_from or '-').name}.yaml").is_file()]


@pytest.mark.parametrize("path", TRANSFER, ids=[p.stem for p in TRANSFER])
def test_transfer_config_starts_from_the_shipped_model(path, tmp_path, monkeypatch):
    """Its model matches the run it starts from: every encoder tensor is copied."""
    import torch
    from safetensors.torch import load_file

    from nlp_rnn.training import Trainer

    monkeypatch.chdir(Path(__file__).resolve().parent.parent)  # init_from is relative to the checkout
    config = load_config(path, SHRINK[:3] + ["train.progress=false"] + WITHOUT_TEACHER)  # the weights alone
    trainer = Trainer(config, tmp_path / path.stem)
    source = load_file(Path(config.train.init_from) / "model.safetensors")
    own = trainer.model.state_dict()
    encoder = [k for k in source if k.startswith("encoder.")]
    assert encoder and all(torch.equal(own[k], source[k].float()) for k in encoder)


@pytest.mark.parametrize("path", FROM_LM, ids=[p.stem for p in FROM_LM])
def test_configs_from_a_language_model_match_its_encoder(path):
    """Language model runs are trained, not shipped (``make imdb-lm``, ``make sst2-lm``): a config that starts
    from one must build the same encoder as the config that makes it."""
    config = load_config(path)
    lm = load_config(PRETRAINING / f"{Path(config.train.init_from).name}.yaml")
    for key in ("cell", "embedding_dim", "hidden_size", "num_layers", "bidirectional"):
        assert getattr(config.model, key) == getattr(lm.model, key), key


def test_language_model_chains_are_covered():
    names = {p.stem for p in FROM_LM}
    assert {"sst2_from_lm", "rotten_tomatoes_from_lm", "sst2_bilm", "sst2_from_sst2_lm", "rotten_tomatoes_bilm",
            "rotten_tomatoes_from_rt_lm", "imdb_ulmfit", "sst2_awd_lm", "sst2_ulmfit",
            "rotten_tomatoes_ulmfit"} <= names, names
