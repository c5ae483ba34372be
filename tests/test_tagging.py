"""The tagging task: scores as conlleval counts them, IOB2 decoding, raw-text tokens, a tiny tagger that learns a
synthetic rule through the CLI, subword and softmax variants, bad input as one-line errors."""

import json
import random

import pytest
import torch
import yaml

import nlp_rnn
from nlp_rnn.cli import main
from nlp_rnn.config import load_config
from nlp_rnn.tasks.tagging import entity_confusion, iob_allowed, is_iob, score_tags, split_words
from nlp_rnn.word_vectors import WordVectors, normalize_word, ppmi_svd, write_vectors
from tests.test_cli import assert_one_line_error, run_cli
from tests.tiny import assert_resumed_run_matches

# -- scores ------------------------------------------------------------------------------------------------------

GOLD = [["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-ORG", "I-ORG", "I-ORG", "O", "B-MISC"], ["O", "B-LOC"]]
# sentence 1: PER exact, LOC typed as ORG; sentence 2: ORG cut short (partial: wrong), MISC exact, plus a spurious
# PER; sentence 3: LOC missed. conlleval: 5 gold, 5 predicted, 2 correct.
PREDICTED = [["B-PER", "I-PER", "O", "B-ORG", "O"], ["B-ORG", "I-ORG", "O", "B-PER", "B-MISC"], ["O", "O"]]


def test_entity_scores_count_exact_spans_and_types_as_conlleval():
    from seqeval.metrics import f1_score, precision_score, recall_score

    report = score_tags(GOLD, PREDICTED, "iob2")
    assert report["precision"] == pytest.approx(2 / 5)  # counted by hand above
    assert report["recall"] == pytest.approx(2 / 5)
    assert report["f1"] == pytest.approx(2 / 5)
    assert report["f1"] == pytest.approx(f1_score(GOLD, PREDICTED))  # and as seqeval's own functions say
    assert report["precision"] == pytest.approx(precision_score(GOLD, PREDICTED))
    assert report["recall"] == pytest.approx(recall_score(GOLD, PREDICTED))
    assert report["accuracy"] == pytest.approx(8 / 12)
    per_type = report["per_type"]
    assert per_type["PER"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert per_type["LOC"] == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2})
    assert per_type["MISC"]["f1"] == 1.0 and per_type["ORG"]["f1"] == 0.0


def test_entity_confusion_matrix():
    labels, matrix = entity_confusion(GOLD, PREDICTED)
    assert labels == ["LOC", "MISC", "ORG", "PER", "O"]
    row = {name: dict(zip(labels, counts, strict=True)) for name, counts in zip(labels, matrix, strict=True)}
    assert row["LOC"] == {"LOC": 0, "MISC": 0, "ORG": 1, "PER": 0, "O": 1}  # typed as ORG, then missed
    assert row["ORG"]["O"] == 1  # the cut span is not the gold span
    assert row["O"] == {"LOC": 0, "MISC": 0, "ORG": 1, "PER": 1, "O": 0}  # the short ORG and the extra PER
    assert row["PER"]["PER"] == 1 and row["MISC"]["MISC"] == 1


def test_token_scheme_for_pos_tags():
    gold, predicted = [["NN", "VB", "DT"]], [["NN", "NN", "DT"]]
    assert not is_iob(["NN", "VB", "DT"]) and is_iob(["O", "B-PER", "I-PER"])
    report = score_tags(gold, predicted, "token")
    assert report["f1"] == report["accuracy"] == pytest.approx(2 / 3)
    assert report["per_type"]["NN"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})


# -- decoding ----------------------------------------------------------------------------------------------------

def test_iob2_constraints_forbid_i_without_its_b():
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    allowed, start = iob_allowed(names)
    assert start.tolist() == [True, True, False, True, False]
    assert not allowed[0, 2] and not allowed[3, 2] and allowed[1, 2] and allowed[2, 2] and allowed[2, 0]


@pytest.mark.parametrize("output", ["crf", "softmax"])
def test_constrained_decoding_gives_valid_iob2(output):
    from nlp_rnn.tagger import SequenceTagger
    from nlp_rnn.tasks.tagging import TaggerConfig

    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    torch.manual_seed(0)
    model = SequenceTagger(TaggerConfig(embedding_dim=4, hidden_size=4, output=output), 10, 10, len(names))
    emissions = torch.randn(64, 7, len(names)) * 3
    emissions[:, :, 2] += 4  # I-PER everywhere would win without constraints
    mask = torch.ones(64, 7, dtype=torch.bool)
    mask[::2, 4:] = False
    unconstrained, _ = model.decode(emissions, mask)
    paths, scores = model.decode(emissions, mask, *iob_allowed(names))
    assert any(p[0] == 2 for p in unconstrained)
    for path, probabilities, row_mask in zip(paths, scores, mask, strict=True):
        tags = [names[t] for t in path]
        assert len(tags) == int(row_mask.sum()) == len(probabilities)
        for previous, tag in zip(["O", *tags], tags, strict=False):
            assert not tag.startswith("I-") or previous in (f"B-{tag[2:]}", tag)


# -- raw text ----------------------------------------------------------------------------------------------------

def test_split_words_rule_and_offsets():
    text = "The U.S. Senate's vote on Hewlett-Packard cost $1,000 in 1996, didn't it?"
    words = split_words(text)
    assert [w for w, _, _ in words] == ["The", "U.S.", "Senate", "'s", "vote", "on", "Hewlett-Packard", "cost", "$",
                                        "1,000", "in", "1996", ",", "did", "n't", "it", "?"]
    assert all(text[start:end] == word for word, start, end in words)
    assert [w for w, _, _ in split_words("Tokyo\x07rocks 😀\u200b!")] == ["Tokyo", "rocks", "😀", "!"]
    assert split_words("  \n\t ") == []
    assert [w for w, _, _ in split_words("Mr. Smith of Acme Corp. met J. Doe in Jan. A.")] == [
        "Mr.", "Smith", "of", "Acme", "Corp.", "met", "J.", "Doe", "in", "Jan.", "A", "."]


# -- word vectors ------------------------------------------------------------------------------------------------

def test_word_vectors_put_words_of_like_contexts_together(tmp_path):
    rng = random.Random(0)
    cities, days = ["paris", "rome", "oslo", "lima"], ["monday", "friday", "sunday", "tuesday"]
    sentences = []
    for _ in range(3000):
        sentences.append(["we", "flew", "to", rng.choice(cities), "from", rng.choice(cities), "."])
        sentences.append(["see", "you", "on", rng.choice(days), "or", rng.choice(days), "."])
    vectors = ppmi_svd(sentences, dim=4, window=2, min_count=1)
    write_vectors(vectors, tmp_path / "v.txt")
    read = WordVectors.read(tmp_path / "v.txt", 4)
    assert read.words == vectors.words and torch.allclose(read.vectors, vectors.vectors, atol=1e-4)
    unit = torch.nn.functional.normalize(read.vectors, dim=1)
    index = {w: i for i, w in enumerate(read.words)}

    def similarity(a, b):
        return float(unit[index[a]] @ unit[index[b]])

    assert similarity("paris", "rome") > similarity("paris", "monday") + 0.5
    assert similarity("friday", "sunday") > similarity("friday", "oslo") + 0.5
    assert normalize_word("Straße\u00b4 1996") == "straße\u03010000"


def test_word_vectors_of_the_wrong_size_are_one_error(tmp_path):
    (tmp_path / "v.txt").write_text("paris 0.1 0.2 0.3\n", encoding="utf-8")
    with pytest.raises(nlp_rnn.NlpRnnError, match="3 numbers; model.embedding_dim is 4"):
        WordVectors.read(tmp_path / "v.txt", 4)


# -- a tiny tagger, trained through the CLI ----------------------------------------------------------------------

PEOPLE = ["Anna Berg", "Bob Stone", "Cara Lind", "Dan Frost", "Eva Moss", "Finn Hale", "Gus Reed", "Hana Kent"]
PLACES = ["Oslo", "Lima", "Paris", "Rome", "Quito", "Kyiv", "Bern", "Doha"]
COMPANIES = ["Acme Corp", "Globex Ltd", "Initech Inc", "Umbrella Group"]
TEMPLATES = ["{p} met {q} in {l} .", "{p} works for {c} in {l} .", "In {l} , {p} joined {c} .",
             "{c} hired {p} and {q} .", "{p} flew from {l} to {m} ."]


def sentence(rng: random.Random) -> tuple[list[str], list[str]]:
    """A templated sentence and its IOB2 tags: people and companies are two tokens, places one."""
    values = {"p": (rng.choice(PEOPLE), "PER"), "q": (rng.choice(PEOPLE), "PER"), "l": (rng.choice(PLACES), "LOC"),
              "m": (rng.choice(PLACES), "LOC"), "c": (rng.choice(COMPANIES), "ORG")}
    tokens, tags = [], []
    for part in rng.choice(TEMPLATES).split():
        if part.startswith("{"):
            text, kind = values[part[1]]
            words = text.split()
            tokens += words
            tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(words) - 1)
        else:
            tokens.append(part)
            tags.append("O")
    return tokens, tags


def write_split(path, count: int, seed: int) -> None:
    rng = random.Random(seed)
    rows = [dict(zip(("tokens", "ner_tags"), sentence(rng), strict=True)) for _ in range(count)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def write_tagging_config(folder, model: dict | None = None, tokenizer: dict | None = None, epochs: int = 12) -> str:
    values = {
        "task": "tagging",
        "data": {"dataset": str(folder / "data"), "validation_split": "validation", "max_length": 40},
        "tokenizer": {"vocab_size": 300, "min_frequency": 1, **(tokenizer or {})},
        "model": {"embedding_dim": 16, "hidden_size": 16, "char_embedding_dim": 8, "char_filters": 8,
                  "dropout": 0.1, "embedding_dropout": 0.1, **(model or {})},
        "train": {"epochs": epochs, "batch_size": 8, "lr": 0.01, "num_threads": 1, "progress": False,
                  "eval_batch_size": 64, "patience": None, "schedule": "constant"},
    }
    path = folder / "tagger.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def tagging_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tagging")
    (folder / "data").mkdir()
    for name, count, seed in (("train", 240, 1), ("validation", 60, 2), ("test", 60, 3)):
        write_split(folder / "data" / f"{name}.jsonl", count, seed)
    return folder


@pytest.fixture(scope="module")
def tiny_tagger(tagging_data):
    run_dir = tagging_data / "run"
    assert main(["train", write_tagging_config(tagging_data), "--out", str(run_dir)]) == 0
    return run_dir


@pytest.mark.slow
def test_the_tiny_tagger_learns_the_rule(tiny_tagger, capsys):
    assert main(["evaluate", str(tiny_tagger), "--split", "test", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert report["scheme"] == "iob2" and report["num_examples"] == 60
    assert report["f1"] >= 0.97, report
    assert set(report["per_type"]) == {"PER", "LOC", "ORG"}
    evaluation = tiny_tagger / "evaluation" / "test"
    assert (evaluation / "per_type.png").stat().st_size > 0 and (evaluation / "confusion_matrix.png").exists()
    validation = json.loads((tiny_tagger / "metrics.json").read_text())["validation"]
    assert main(["evaluate", str(tiny_tagger), "--split", "validation", "--json"]) == 0
    again = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert again["f1"] == pytest.approx(validation["f1"]) and again["loss"] == pytest.approx(validation["loss"])


@pytest.mark.slow
def test_tag_returns_entities_with_offsets(tiny_tagger):
    tagger = nlp_rnn.load(tiny_tagger)
    text = "Cara Lind met  Dan Frost in Quito ."
    (result,) = tagger.tag([text])
    assert result["tokens"] == ["Cara", "Lind", "met", "Dan", "Frost", "in", "Quito", "."]
    assert [(e["type"], e["text"]) for e in result["entities"]] == [("PER", "Cara Lind"), ("PER", "Dan Frost"),
                                                                   ("LOC", "Quito")]
    assert all(text[e["start"] : e["end"]] == e["text"] for e in result["entities"])
    assert all(0.0 <= s <= 1.0 for s in result["scores"]) and not result["truncated"]
    # a batch gives what each text gives alone
    texts = [text, "Acme Corp hired Eva Moss and Gus Reed .", "", "Oslo"]
    together = tagger.tag(texts)
    assert [tagger.tag([t])[0]["tags"] for t in texts] == [r["tags"] for r in together]
    assert together[2]["tokens"] == [] and together[2]["entities"] == []


@pytest.mark.slow
def test_bad_text_gets_a_sensible_result(tiny_tagger, caplog):
    tagger = nlp_rnn.load(tiny_tagger)
    (emoji,) = tagger.tag(["😀 Anna\x00Berg \u200b in Rome 🎉"])
    assert emoji["tokens"] == ["😀", "Anna", "Berg", "in", "Rome", "🎉"] and len(emoji["tags"]) == 6
    assert emoji["tags"][0] == emoji["tags"][5] == "O"  # no character the model knows: outside any entity
    assert tagger._outside_unknown_symbols(["Rome", "🎉", "Bern"], ["B-LOC", "I-LOC", "I-LOC"]) == ["B-LOC", "O",
                                                                                                   "B-LOC"]
    long_text = " ".join(["Rome"] * 100)
    with caplog.at_level("WARNING"):
        (long,) = tagger.tag([long_text])
    assert long["truncated"] and len(long["tags"]) == 40 and "only the first 40" in caplog.text


@pytest.mark.slow
def test_predict_prints_tags_and_entities(tiny_tagger):
    result = run_cli("predict", str(tiny_tagger), "Bob Stone met Hana Kent in Bern .", "")
    lines = result.stdout.decode().splitlines()
    assert result.returncode == 1 and len(lines) == 2  # one line per input; the empty one is an error line
    tagged, entities = lines[0].split("\t")
    assert tagged.startswith("Bob/B-PER Stone/I-PER met/O")
    assert entities == "PER 'Bob Stone' 0-9; PER 'Hana Kent' 14-23; LOC 'Bern' 27-31"
    assert lines[1] == "error: empty text"
    result = run_cli("predict", str(tiny_tagger), "--json", stdin=b"Eva Moss\nAcme Corp\n")
    rows = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [r["entities"][0]["type"] for r in rows] == ["PER", "ORG"]


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["softmax", "bpe", "no_chars"])
def test_variants_learn_the_rule(tmp_path, tagging_data, variant):
    model = {"output": "softmax"} if variant == "softmax" else {"char_features": False} if variant == "no_chars" \
        else {}
    tokenizer = {"type": "bpe", "vocab_size": 120} if variant == "bpe" else {}
    config = write_tagging_config(tagging_data, model, tokenizer)
    run_dir = tmp_path / "run"
    assert main(["train", config, "--out", str(run_dir)]) == 0
    tagger = nlp_rnn.load(run_dir)
    (result,) = tagger.tag(["Finn Hale flew from Doha to Kyiv ."])
    assert result["tags"] == ["B-PER", "I-PER", "O", "O", "B-LOC", "O", "B-LOC", "O"]  # per word, whatever pieces
    report = json.loads((run_dir / "metrics.json").read_text())["validation"]
    assert report["f1"] >= 0.95


def test_interrupted_tagging_run_resumes_to_the_same_weights(tmp_path, tagging_data):
    """The best F1 (seqeval's numpy float) is kept in the training state; resuming must read it back."""
    config = load_config(write_tagging_config(tagging_data, epochs=2))
    assert_resumed_run_matches(config, tmp_path, stop_at=40)  # 30 steps an epoch: after the first validation


# -- ensembles -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def second_tagger(tagging_data):
    """A softmax tagger of another seed that keeps only the 26 most frequent words: a vocabulary unlike
    tiny_tagger's."""
    run_dir = tagging_data / "second"
    config = write_tagging_config(tagging_data, {"output": "softmax"}, {"vocab_size": 30})
    assert main(["train", config, "--out", str(run_dir), "--set", "train.seed=1"]) == 0
    return run_dir


def word_distributions(run_dir, sentences) -> list[torch.Tensor]:
    """The reference: a run alone, through its own tokenizers, one sentence at a time: (words, tags) each."""
    from nlp_rnn.predictor import load_model
    from nlp_rnn.tasks.tagging import TagDataset

    task, model = load_model(run_dir)
    encoded = task.encode_words(sentences)
    found = []
    for i in range(len(sentences)):
        batch = task.collate([TagDataset(encoded.ids, encoded.chars, None)[i]])
        emissions = model.emissions(batch)
        found.append((model.crf.marginals(emissions, batch.tag_mask) if model.crf is not None
                      else emissions.softmax(-1))[0])
    return found


@pytest.mark.slow
def test_ensemble_reads_the_mean_of_its_members(tiny_tagger, second_tagger):
    from nlp_rnn.predictor import load_model

    sentences = [["Cara", "Lind", "met", "Dan", "Frost", "in", "Quito", "."], ["Zyxw", "hired", "Eva", "Moss"]]
    task, ensemble = load_model(tiny_tagger, ensemble=[second_tagger])
    sizes = [load_model(run)[0].tokenizers[0].get_vocab_size() for run in (tiny_tagger, second_tagger)]
    assert task.tokenizers[0].get_vocab_size() == sizes[0] > sizes[1]  # the members really read different ids
    first, second = word_distributions(tiny_tagger, sentences), word_distributions(second_tagger, sentences)
    encoded = task.encode_words(sentences)
    from nlp_rnn.tasks.tagging import TagDataset

    batch = task.collate([TagDataset(encoded.ids, encoded.chars, None)[i] for i in range(2)])
    mean = ensemble.probabilities(batch)
    for row, (a, b) in enumerate(zip(first, second, strict=True)):
        assert torch.allclose(mean[row, : len(a)], (a + b) / 2, atol=1e-5)
    (result,) = nlp_rnn.load(tiny_tagger, ensemble=[second_tagger]).tag(["Cara Lind met Dan Frost in Quito ."])
    assert result["tags"] == ["B-PER", "I-PER", "O", "B-PER", "I-PER", "O", "B-LOC", "O"]


@pytest.mark.slow
def test_packed_ensemble_evaluates_and_predicts_as_its_runs_together(tmp_path, tiny_tagger, second_tagger, capsys):
    packed = tmp_path / "packed"
    assert main(["pack", str(tiny_tagger), str(packed), "--ensemble", str(second_tagger)]) == 0
    assert json.loads((packed / "ensemble.json").read_text())["members"] == ["0-run", "1-second"]
    assert "An ensemble of 2 runs" in (packed / "README.md").read_text()
    assert main(["evaluate", str(packed), "--split", "test", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert main(["evaluate", str(tiny_tagger), "--ensemble", str(second_tagger), "--split", "test", "--json",
                 "--out", str(tmp_path / "direct")]) == 0
    direct = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert report["f1"] == direct["f1"] >= 0.97 and report["loss"] == pytest.approx(direct["loss"])
    assert main(["predict", str(packed), "Eva Moss flew from Doha to Kyiv ."]) == 0
    assert "PER 'Eva Moss' 0-8; LOC 'Doha' 19-23; LOC 'Kyiv' 27-31" in capsys.readouterr().out


@pytest.mark.slow
def test_runs_that_cannot_combine_are_one_line_errors(tmp_path, tiny_tagger, tiny_run, tagging_data):
    assert_one_line_error(run_cli("evaluate", str(tiny_tagger), "--ensemble", str(tiny_run)),
                          "an ensemble's runs must be of one task", "classification")
    packed = tmp_path / "packed"
    assert main(["pack", str(tiny_tagger), str(packed), "--ensemble", str(tiny_tagger)]) == 0
    assert_one_line_error(run_cli("export", str(packed)), "is an ensemble; ONNX export takes one run")
    assert main(["pack", str(packed), str(tmp_path / "again"), "--ensemble", str(tiny_tagger), "--fp16"]) == 0
    assert json.loads((tmp_path / "again" / "ensemble.json").read_text())["members"] == ["0-run", "1-run", "2-run"]
    result = run_cli("predict", str(tiny_tagger), "--ensemble", str(tmp_path / "nowhere"), "Rome")
    assert result.returncode == 2 and "no run folder" in result.stderr.decode()
    # another tag set: the same data with PER read as PERSON
    other = tmp_path / "other"
    (other / "data").mkdir(parents=True)
    for name in ("train", "validation", "test"):
        rows = (tagging_data / "data" / f"{name}.jsonl").read_text().replace("-PER\"", "-PERSON\"")
        (other / "data" / f"{name}.jsonl").write_text(rows)
    assert main(["train", write_tagging_config(other, epochs=1), "--out", str(other / "run")]) == 0
    assert_one_line_error(run_cli("evaluate", str(tiny_tagger), "--ensemble", str(other / "run")),
                          "cannot form an ensemble", "B-PERSON")


@pytest.mark.slow
def test_pretrained_vectors_fill_the_embedding_and_the_vocabulary(tmp_path, tagging_data):
    words = ["zurich", "oslo", "met"]
    vectors = WordVectors(words, torch.arange(48, dtype=torch.float32).view(3, 16) / 48)
    write_vectors(vectors, tmp_path / "vectors.txt")
    config = write_tagging_config(tagging_data, {"word_vectors": str(tmp_path / "vectors.txt")}, epochs=1)
    run_dir = tmp_path / "run"
    assert main(["train", config, "--out", str(run_dir), "--set", "train.lr=0"]) == 0
    tagger = nlp_rnn.load(run_dir)
    vocab = tagger.task.tokenizers[0].get_vocab()
    assert "zurich" in vocab  # a word of the vectors that training never saw joins the vocabulary
    embedding = tagger.model.word_embedding.weight
    assert torch.allclose(embedding[vocab["zurich"]], vectors.vectors[0], atol=1e-4)  # lr 0: as initialised
    assert torch.allclose(embedding[vocab["oslo"]], vectors.vectors[1], atol=1e-4)


# -- bad data ----------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_bad_rows_are_one_line_errors(tmp_path, tagging_data):
    folder = tmp_path
    (folder / "data").mkdir()
    for name in ("train", "validation", "test"):
        (folder / "data" / f"{name}.jsonl").write_text((tagging_data / "data" / f"{name}.jsonl").read_text())
    rows = (folder / "data" / "validation.jsonl").read_text().splitlines()
    rows[3] = json.dumps({"tokens": ["Anna", "Berg", "left"], "ner_tags": ["B-PER", "I-PER"]})
    (folder / "data" / "validation.jsonl").write_text("\n".join(rows) + "\n")
    result = run_cli("train", write_tagging_config(folder, epochs=1), "--out", str(folder / "run"))
    assert_one_line_error(result, "row 3", "3 tokens but 2 tags", "Anna Berg left")
    rows[3] = json.dumps({"tokens": ["Anna", "Berg"], "ner_tags": ["B-PER", "B-DATE"]})
    (folder / "data" / "validation.jsonl").write_text("\n".join(rows) + "\n")
    result = run_cli("train", write_tagging_config(folder, epochs=1), "--out", str(folder / "run2"))
    assert_one_line_error(result, "row 3", "tag 'B-DATE' is not one of the model's tags")
