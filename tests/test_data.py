import os
from dataclasses import replace

import pytest

from nlp_rnn.config import DataConfig
from nlp_rnn.data import DataError, load_eval_split, load_raw, load_splits, resolve_dataset
from nlp_rnn.tasks import ClassificationTask

pytestmark = pytest.mark.slow


def test_mirror_is_resolved_by_hub_id(monkeypatch, tmp_path):
    (tmp_path / "owner" / "name").mkdir(parents=True)
    monkeypatch.setenv("NLP_RNN_DATA_DIR", str(tmp_path))
    assert resolve_dataset("owner/name") == str(tmp_path / "owner" / "name")
    assert resolve_dataset("owner/other") == "owner/other"


def test_imdb_splits_validation_carved_from_train_with_fixed_seed():
    config = DataConfig(dataset="stanfordnlp/imdb")
    first, second = load_splits(config, ClassificationTask), load_splits(config, ClassificationTask)
    assert first.label_names == ["neg", "pos"]
    assert len(first.train) + len(first.validation) == 25_000
    assert len(first.validation) == 2_500
    assert len(first.test) == 25_000
    assert first.validation["text"][:5] == second.validation["text"][:5]
    assert not set(first.validation["text"][:200]) & set(first.train["text"])


def test_sst2_uses_sentence_column_and_named_validation():
    config = DataConfig(dataset="stanfordnlp/sst2", text_column="sentence", test_split="validation",
                        validation_fraction=0.05)
    splits = load_splits(config, ClassificationTask)
    assert splits.label_names == ["negative", "positive"]
    assert len(splits.test) == 872


def test_rows_with_empty_text_are_dropped(tmp_path, monkeypatch, caplog):
    import datasets

    folder = tmp_path / "me" / "tiny"
    rows = {"text": ["good", "", "   ", None, "bad"], "label": [1, 0, 0, 1, 0]}
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    for split in ("train", "test"):
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(folder / f"{split}.parquet"))
    monkeypatch.setenv("NLP_RNN_DATA_DIR", str(tmp_path))
    splits = load_splits(DataConfig(dataset="me/tiny", validation_split="test"), ClassificationTask)
    assert splits.train["text"] == ["good", "bad"]
    assert "dropped 3 of 5" in caplog.text


def test_unreachable_dataset_gives_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("NLP_RNN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError) as info:
        load_raw("nobody/no-such-dataset")
    message = str(info.value)
    assert "nobody/no-such-dataset" in message and "NLP_RNN_DATA_DIR" in message
    assert "\n" not in message


def test_missing_split_or_column_is_named():
    with pytest.raises(DataError, match="no split 'dev'"):
        load_splits(DataConfig(dataset="cornell-movie-review-data/rotten_tomatoes", validation_split="dev"),
                    ClassificationTask)
    with pytest.raises(DataError, match="no column 'review'"):
        load_splits(DataConfig(dataset="cornell-movie-review-data/rotten_tomatoes", text_column="review",
                               validation_split="validation"), ClassificationTask)


def test_data_dir_is_set_for_the_suite():
    """The suite reads the mirror (make test, .ci/run and tests/conftest.py set it); a missing mirror fails, never
    skips: every hub id a shipped config names is a folder there, so no test quietly falls back to the hub."""
    from pathlib import Path

    from nlp_rnn.config import read_yaml

    root = os.environ.get("NLP_RNN_DATA_DIR")
    assert root and Path(root).is_dir(), f"NLP_RNN_DATA_DIR={root!r} is not a folder"
    configs = Path(__file__).resolve().parent.parent / "configs"
    hub_ids = {read_yaml(path).get("data", {}).get("dataset", DataConfig.dataset) for path in configs.rglob("*.yaml")}
    hub_ids = {name for name in hub_ids if not name.startswith((".", "/"))}  # relative folders are not hub ids
    assert {"stanfordnlp/imdb", "stanfordnlp/sst2", "cornell-movie-review-data/rotten_tomatoes",
            "bentrevett/multi30k"} <= hub_ids
    missing = sorted(name for name in hub_ids if resolve_dataset(name) != str(Path(root) / name))
    assert not missing, f"not in the mirror {root}: {missing}"


def test_an_evaluation_sample_is_the_one_training_validated_on():
    """``evaluate --max-examples N`` reads the rows training read with data.max_eval_examples=N, whatever
    max_train_examples was; without N, the whole split (validation carved from train as training carved it)."""
    limited = DataConfig(dataset="stanfordnlp/imdb", max_train_examples=256, max_eval_examples=64)
    trained_on = load_splits(limited, ClassificationTask)
    for split in ("validation", "test"):
        sample = load_eval_split(limited, split, ClassificationTask, max_examples=64)
        assert sample["text"] == trained_on[split]["text"] and sample["label"] == trained_on[split]["label"]
        whole = load_eval_split(limited, split, ClassificationTask)
        assert whole["text"] == load_splits(DataConfig(dataset="stanfordnlp/imdb"), ClassificationTask)[split]["text"]
        assert set(trained_on[split]["text"]) <= set(whole["text"])  # the sample is drawn from this very split
        assert len(whole) == {"validation": 2_500, "test": 25_000}[split]


def test_ptb_detokenization_matches_raw_text():
    from nlp_rnn.data import detokenize_ptb

    assert detokenize_ptb("it 's not that it does n't -lrb- try -rrb- , you 're right . ") == \
        "it's not that it doesn't (try), you're right."
    assert detokenize_ptb("i ca n't and wo n't say `` best '' !") == "i can't and won't say \"best\"!"
    assert detokenize_ptb("plain text, untouched.") == "plain text, untouched."


def test_the_unlabelled_split_is_read_for_its_text_only():
    from nlp_rnn.data import load_unlabelled

    config = DataConfig(dataset="stanfordnlp/imdb", unlabelled_split="unsupervised", max_unlabelled_examples=40)
    unlabelled = load_unlabelled(config, "text")
    assert unlabelled.column_names == ["text"] and len(unlabelled) == 40  # IMDB's unsupervised labels (-1) dropped
    assert unlabelled["text"] == load_unlabelled(config, "text")["text"]  # a fixed sample
    with pytest.raises(DataError, match="has no split 'unlabeled' .*unsupervised"):
        load_unlabelled(DataConfig(dataset="stanfordnlp/imdb", unlabelled_split="unlabeled"), "text")
    with pytest.raises(DataError, match="no column 'review'"):
        load_unlabelled(config, "review")


def test_sentences_split_at_final_punctuation_and_line_breaks():
    from nlp_rnn.data import split_sentences

    assert split_sentences('I loved it. The cast shines!<br /><br />Was it long? "Too long." (Still, see it.) End') == \
        ["I loved it.", "The cast shines!", "Was it long?", '"Too long."', "(Still, see it.)"]  # "End": one word
    assert split_sentences("No break here, version 2.0 of it... and on") == ["No break here, version 2.0 of it...",
                                                                            "and on"]
    assert split_sentences("One", min_words=1) == ["One"] and split_sentences("  ") == []


def test_unlabelled_text_may_come_from_another_corpus_split_into_sentences():
    from nlp_rnn.data import load_unlabelled

    # SST-2 (sentences, column "sentence") taught on IMDB's unlabelled reviews, read sentence by sentence
    config = DataConfig(dataset="stanfordnlp/sst2", text_column="sentence", detokenize_ptb=True,
                        unlabelled_dataset="stanfordnlp/imdb", unlabelled_split="unsupervised",
                        unlabelled_column="text", unlabelled_sentences=True, max_unlabelled_examples=20)
    sentences = load_unlabelled(config, "sentence")
    whole = load_unlabelled(DataConfig(dataset="stanfordnlp/imdb", unlabelled_split="unsupervised",
                                       max_unlabelled_examples=20), "text")["text"]
    assert sentences.column_names == ["sentence"] and len(sentences) > 5 * len(whole)
    for sentence in sentences["sentence"]:  # pieces of the reviews as written (no PTB detokenisation of IMDB)
        assert len(sentence.split()) >= 2 and "<br" not in sentence
        assert any(sentence in review for review in whole)
    assert sentences["sentence"] == load_unlabelled(config, "sentence")["sentence"]  # the same sample each time
    with pytest.raises(DataError, match="dataset 'stanfordnlp/imdb' has no split 'unlabeled'"):
        load_unlabelled(DataConfig(dataset="stanfordnlp/sst2", unlabelled_dataset="stanfordnlp/imdb",
                                   unlabelled_split="unlabeled"), "sentence")
    with pytest.raises(DataError, match="no column 'review' .*data.unlabelled_column"):
        load_unlabelled(DataConfig(dataset="stanfordnlp/sst2", unlabelled_dataset="stanfordnlp/imdb",
                                   unlabelled_split="unsupervised", unlabelled_column="review"), "sentence")


def test_a_users_text_file_is_an_unlabelled_corpus(tmp_path):
    from nlp_rnn.data import load_unlabelled

    corpus = tmp_path / "reviews.txt"
    corpus.write_text("A fine film. Go.\n\nWorst two hours of my life!\n", encoding="utf-8")
    config = DataConfig(dataset="stanfordnlp/imdb", unlabelled_dataset=str(corpus), unlabelled_split="train")
    assert load_unlabelled(config, "review")["review"] == ["A fine film. Go.", "Worst two hours of my life!"]
    split_up = DataConfig(dataset="stanfordnlp/imdb", unlabelled_dataset=str(corpus), unlabelled_split="train",
                          unlabelled_sentences=True)
    assert load_unlabelled(split_up, "text")["text"] == ["A fine film.", "Worst two hours of my life!"]
    with pytest.raises(DataError, match=f"data.unlabelled_dataset '{corpus}' has no split 'unsupervised'"):
        load_unlabelled(DataConfig(unlabelled_dataset=str(corpus), unlabelled_split="unsupervised"), "text")
    with pytest.raises(DataError, match=r"nope.txt: no such file \(data.unlabelled_dataset\)"):
        load_unlabelled(DataConfig(unlabelled_dataset=str(tmp_path / "nope.txt"), unlabelled_split="train"), "text")


def _treebank(tmp_path, monkeypatch, sentences: dict[str, int]) -> DataConfig:
    """A tiny SST-like dataset: every run of consecutive words of each sentence is a row of train, labelled as its
    sentence (a phrase shared by two sentences once)."""
    import datasets

    rows: dict[str, int] = {}
    for sentence, label in sentences.items():
        words = sentence.split()
        for start in range(len(words)):
            for end in range(start + 1, len(words) + 1):
                rows.setdefault(" ".join(words[start:end]), label)
    folder = tmp_path / "me" / "treebank"
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    data = {"sentence": list(rows), "label": list(rows.values())}
    for split in ("train", "test"):
        datasets.Dataset.from_dict(data, features=features).to_parquet(str(folder / f"{split}.parquet"))
    monkeypatch.setenv("NLP_RNN_DATA_DIR", str(tmp_path))
    return DataConfig(dataset="me/treebank", text_column="sentence", carve_whole_sentences=True,
                      validation_fraction=0.25)


def test_a_treebank_is_carved_by_whole_sentences_and_their_phrases_leave_train(tmp_path, monkeypatch, caplog):
    sentences = {"the film is good": 1, "the film is bad": 0, "a dull slow mess": 0, "a fine cast": 1,
                 "warm and funny": 1, "not worth it": 0, "the cast is fine": 1, "slow and dull": 0}
    config = _treebank(tmp_path, monkeypatch, sentences)
    caplog.set_level("INFO", logger="nlp_rnn.data")
    splits = load_splits(config, ClassificationTask)
    held = splits.validation["sentence"]
    assert len(held) == 2 and set(held) <= set(sentences)  # a quarter of the 8 sentences, whole
    assert "held out 2 of 8 whole sentences" in caplog.text
    train = set(splits.train["sentence"])
    kept = set(sentences) - set(held)
    assert kept <= train and not set(held) & train
    for row in train:  # every phrase left in train occurs in a sentence left in train
        assert any(f" {row} " in f" {sentence} " for sentence in kept), row
    for sentence in held:  # and every phrase of a held-out sentence that no kept sentence has is gone
        words = sentence.split()
        for start in range(len(words)):
            for end in range(start + 1, len(words) + 1):
                phrase = " ".join(words[start:end])
                assert (phrase in train) == any(f" {phrase} " in f" {other} " for other in kept), phrase
    assert load_splits(config, ClassificationTask).validation["sentence"] == held  # the seed fixes the choice
    everything = len(load_raw("me/treebank")["train"])
    assert len(splits.train) + len(held) < everything  # phrases were left out
    by_rows = load_splits(replace(config, carve_whole_sentences=False), ClassificationTask)
    assert len(by_rows.train) + len(by_rows.validation) == everything  # the default carves rows, keeps them all


def test_carving_whole_sentences_needs_one_text_column_and_enough_sentences(tmp_path, monkeypatch):
    from nlp_rnn.tasks import TranslationTask

    config = _treebank(tmp_path, monkeypatch, {"a good film": 1})
    with pytest.raises(DataError, match="needs a task with one text column"):
        load_splits(replace(config, source_column="sentence", target_column="sentence"), TranslationTask)
    with pytest.raises(DataError, match=r"too few whole sentences \(1\) to hold out 0.5"):
        load_splits(replace(config, validation_fraction=0.5), ClassificationTask)
