"""The demo's plain functions, called directly on tiny real models (the shipped tagger for the Entities tab), and the
app built on the shipped ones."""

import dataclasses
import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import gradio as gr
import pandas as pd
import pytest

import nlp_rnn
from nlp_rnn.checkpoint import RunFolder

pytestmark = pytest.mark.slow

MODELS = Path(__file__).resolve().parent.parent / "demo" / "models"
SHIPPED = ("sentiment-imdb", "translate-de-en", "ner-conll2003", "shakespeare-char", "reviews-imdb")
NER = MODELS / "ner-conll2003"


@pytest.fixture(scope="module")
def tagger():
    """The shipped CoNLL-2003 tagger: it loads and tags in well under a second, so the tests use the real one."""
    return nlp_rnn.load(NER)


def test_classify_returns_probabilities_and_highlights(demo_module, tiny_run):
    text = "A warm, funny and clever film."
    scores, pieces, notice = demo_module.classify(nlp_rnn.load(tiny_run), text)
    assert set(scores) == {"negative", "positive"}  # the label names as a visitor reads them
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert "".join(piece for piece, _ in pieces) == text  # the highlights cover the text, unchanged
    weights = [w for _, w in pieces if w is not None]
    assert len(weights) == 8 and max(weights) == 1.0 and min(weights) > 0  # attention: scaled to (0, 1]
    assert "attention-pooling weights" in notice and "cut" not in notice


def test_classify_cuts_long_input_and_removes_control_characters(demo_module, tiny_run):
    _, pieces, notice = demo_module.classify(nlp_rnn.load(tiny_run), "great\x00\x1b " * 200_000)  # 1.4 MB
    assert "Input cut to the first 5,000" in notice and "400,000 control character(s) removed" in notice
    assert "".join(piece for piece, _ in pieces) == "great " * 832 + "great"  # cut at the last whole word


@pytest.mark.parametrize("text", ["", "   \n\t ", None, "\x00\x01"])
def test_empty_input_is_a_message(demo_module, tiny_run, reversal_run, tagger, text):
    with pytest.raises(gr.Error, match="Please enter a review"):
        demo_module.classify(nlp_rnn.load(tiny_run), text)
    with pytest.raises(gr.Error, match="Please enter a German sentence"):
        demo_module.translate(nlp_rnn.load(reversal_run), text)
    with pytest.raises(gr.Error, match="Please enter some English text"):
        demo_module.find_entities(tagger, text)


@pytest.mark.parametrize("text", ["مرحبا بالعالم", "😀🎬🍿", "<img src=x onerror=alert(1)>"])
def test_unusual_scripts_get_an_answer(demo_module, tiny_run, text):
    scores, pieces, _ = demo_module.classify(nlp_rnn.load(tiny_run), text)
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert "".join(piece for piece, _ in pieces) == text


def entity_rows(result: dict, offset: int = 0) -> list[list]:
    """The Entities table's rows for one ``tag`` result, its offsets moved by ``offset``."""
    return [[e["type"], e["text"], e["start"] + offset, e["end"] + offset, round(e["score"], 3)]
            for e in result["entities"]]


def test_entities_are_highlighted_with_their_types_and_offsets(demo_module, tagger):
    text = "Angela Merkel met Emmanuel Macron in Paris ."
    pieces, rows, notice = demo_module.find_entities(tagger, text)
    assert rows == entity_rows(tagger.tag([text])[0])  # the predictor's entities, unchanged
    assert ["PER", "Emmanuel Macron", 18, 33] in [row[:4] for row in rows]
    assert ["LOC", "Paris", 37, 42] in [row[:4] for row in rows]
    assert "".join(piece for piece, _ in pieces) == text  # the highlights cover the text, unchanged
    assert [(piece, kind) for piece, kind in pieces if kind] == [(row[1], row[0]) for row in rows]
    assert all(kind is None or kind in demo_module.ENTITY_TYPES for _, kind in pieces)
    assert all(0 < row[4] <= 1 for row in rows)
    assert notice.startswith(f"{len(rows)} entities: ") and notice.endswith(".") and "1 LOC" in notice


def test_each_line_is_tagged_and_offsets_count_from_the_start_of_the_text(demo_module, tagger):
    first, second = "Emmanuel Macron arrived in Paris .", "EU rejects German call to boycott British lamb ."
    text = f"{first}\n\n  \n{second}\n"
    pieces, rows, _ = demo_module.find_entities(tagger, text)
    second_at = text.index(second)
    found = tagger.tag([first, second])
    assert rows == entity_rows(found[0]) + entity_rows(found[1], offset=second_at)
    assert ["ORG", "EU", second_at, second_at + 2] in [row[:4] for row in rows]
    assert all(text[start:end] == entity for _, entity, start, end, _ in rows)
    assert "".join(piece for piece, _ in pieces) == text


def test_the_entity_colours_and_legend_cover_the_tagger_types(demo_module, tagger):
    colours = demo_module.entity_types(tagger)
    assert list(colours) == ["PER", "ORG", "LOC", "MISC"]  # CoNLL-2003's four, each its own colour
    assert len(set(colours.values())) == 4


def test_entities_cut_long_input_with_a_notice(demo_module, tagger):
    text = "Emmanuel Macron visited Paris .\n" * 50_000  # 1.6 MB, one sentence a line
    pieces, rows, notice = demo_module.find_entities(tagger, text)
    assert notice.startswith("Input cut to the first 5,000 of 1,600,000 characters.")
    kept = text[:5000]
    assert "".join(piece for piece, _ in pieces) == kept
    assert all(kept[start:end] == entity for _, entity, start, end, _ in rows)
    assert sum(entity == "Paris" for _, entity, _, _, _ in rows) >= 150  # every line tagged, not only the first
    assert max(end for _, _, _, end, _ in rows) > 4900

    _, _, notice = demo_module.find_entities(tagger, "word " * 300)  # one line beyond the model's 200 words
    assert "1 line(s) longer than the model's 200 words" in notice and "Input cut" not in notice


@pytest.mark.parametrize("text", ["😀 Emmanuel\x00 Macron\x07 visited Paris 🎬", "مرحبا بالعالم", "😀🎬🍿",
                                  "<img src=x onerror=alert(1)>", "the cat sat on the mat ."])
def test_unusual_input_gets_entities_or_a_notice(demo_module, tagger, text):
    pieces, rows, notice = demo_module.find_entities(tagger, text)
    shown, cleaning = demo_module.clean(text, demo_module.MAX_NEWS_CHARS)
    assert "".join(piece for piece, _ in pieces) == shown
    assert all(shown[start:end] == entity for _, entity, start, end, _ in rows)
    assert rows == entity_rows(tagger.tag([shown])[0])
    if "\x00" in text:
        assert "2 control character(s) removed" in notice
        assert ["LOC", "Paris"] in [row[:2] for row in rows]  # the emoji after it is outside
    if not rows:
        assert notice == " ".join(filter(None, [cleaning, "No entities found."]))


def test_translate_gives_nbest_and_a_heatmap_of_the_right_shape(demo_module, reversal_run):
    translator = nlp_rnn.load(reversal_run)
    text, rows, figure, notice = demo_module.translate(translator, "1 2 3 4", 4, 3)
    result = translator.translate(["1 2 3 4"], beam_size=4, n_best=3, return_attention=True)[0]
    assert text == result["translation"]
    assert [row[1] for row in rows] == [c["translation"] for c in result["nbest"]] and len(rows) == 3
    assert [row[0] for row in rows] == [1, 2, 3] and float(rows[0][2]) >= float(rows[1][2]) >= float(rows[2][2])
    assert all(re.fullmatch(r"-?\d+\.\d\d", row[2]) for row in rows)  # every score with two decimals
    axis = figure.axes[0]
    assert axis.images[0].get_array().shape == (len(result["target_tokens"]), len(result["source_tokens"]))
    assert len(axis.get_xticklabels()) == len(result["source_tokens"])
    assert notice == ""


def test_beam_one_is_greedy_and_nbest_is_capped_visibly(demo_module, reversal_run):
    translator = nlp_rnn.load(reversal_run)
    text, rows, _, notice = demo_module.translate(translator, "5 6 7", 1, 5)
    assert len(rows) == 1 and text == translator.translate(["5 6 7"], beam_size=1)[0]["translation"]
    assert "A beam of 1 keeps 1 candidate: showing 1, not 5." in notice
    _, rows, _, notice = demo_module.translate(translator, "5 6 7", 2, 10)
    assert len(rows) == 2 and "showing 2, not 10" in notice


def test_a_cut_translation_says_what_was_translated(demo_module, reversal_run):
    translator = nlp_rnn.load(reversal_run)
    limit = translator.config.data.max_length
    long = " ".join(str(i % 10) for i in range(limit + 10))
    _, _, _, notice = demo_module.translate(translator, long, 1, 1)
    kept = " ".join(long.split()[:limit])
    assert f"at most {limit} subword tokens, so only the start was translated: “{kept}”" in notice


def test_english_in_the_german_box_gets_a_warning(demo_module):
    translator = nlp_rnn.load(demo_module.MODELS / "translate-de-en")
    check = demo_module.LanguageCheck.for_run(translator.config)
    _, _, _, notice = demo_module.translate(translator, "A man is riding a bicycle in the park.", 5, 3, check)
    assert "This looks like English, not German" in notice
    _, _, _, notice = demo_module.translate(translator, "Ein Mann fährt im Park Fahrrad.", 5, 3, check)
    assert notice == ""
    columns = dataclasses.replace(translator.config.data, source_column="src", target_column="tgt")
    assert demo_module.LanguageCheck.for_run(dataclasses.replace(translator.config, data=columns)) is None


def test_translation_examples_come_from_the_validation_split_and_the_model_gets_them_right(demo_module):
    mirror = Path(os.environ["NLP_RNN_DATA_DIR"]) / "bentrevett" / "multi30k" / "validation.parquet"
    references = dict(pd.read_parquet(mirror)[["de", "en"]].itertuples(index=False))
    assert all(example in references for example in demo_module.TRANSLATION_EXAMPLES)
    translator = nlp_rnn.load(demo_module.MODELS / "translate-de-en")
    for example in demo_module.TRANSLATION_EXAMPLES:
        english, _, _, _ = demo_module.translate(translator, example, 5, 1)
        assert english == references[example]


def test_app_builds_on_the_shipped_models(demo_module):
    assert [name for tab in demo_module.TABS.values() for name in tab.models] == list(SHIPPED)
    for name in SHIPPED:
        folder = MODELS / name
        runs = RunFolder(folder).runs()  # the folder, or a packed ensemble's members
        assert all((run / "model.safetensors").is_file() for run in runs), f"demo/models/{name} must be shipped"
        assert not list(folder.rglob("training_state.pt"))
        assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) <= 25 * 1024 * 1024
    assert sum(p.stat().st_size for p in (MODELS / "sentiment-imdb").rglob("*") if p.is_file()) <= 15 * 1024 * 1024
    app = demo_module.build_app()
    assert isinstance(app, gr.Blocks)
    cards = [demo_module.model_card(nlp_rnn.load(MODELS / name)) for name in SHIPPED]
    assert "stanfordnlp/imdb" in cards[0] and "bentrevett/multi30k" in cards[1] and "eriktks/conll2003" in cards[2]
    assert "karpathy/tiny_shakespeare" in cards[3] and "stanfordnlp/imdb" in cards[4]
    assert all("Trained with" in card and "nlp-rnn train" in card for card in cards)
    blocks = list(app.blocks.values())
    assert [b.label for b in blocks if isinstance(b, gr.Tab)] == ["Sentiment", "Translate", "Entities", "Generate",
                                                                  "Models"]
    markdown = [b.value for b in blocks if isinstance(b, gr.Markdown) and b.value]
    assert all(card.strip() in markdown for card in cards)  # each shown on the Models tab (Gradio strips text)
    assert any(text.startswith("**PER** person · **ORG** organisation") for text in markdown)  # the types' legend


def test_the_imdb_ensemble_shipped_beside_the_classifier_serves_on_the_sentiment_tab(demo_module):
    """``demo/models/sentiment-imdb-ensemble`` (README: issue 19): the from-scratch classifier and adversarially
    trained runs as one packed ensemble (the shipped classifier's teacher), scored on test, that the Sentiment tab
    serves with ``--sentiment``."""
    folder = MODELS / "sentiment-imdb-ensemble"
    members = RunFolder(folder).ensemble_members()
    assert len(members) >= 2 and all((run / "model.safetensors").is_file() for run in members)
    assert not list(folder.rglob("training_state.pt"))
    assert sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) <= 25 * 1024 * 1024
    assert (folder / "evaluation" / "test" / "metrics.json").is_file()
    ensemble = nlp_rnn.load(folder)
    scores, pieces, _ = demo_module.classify(ensemble, "A moving, beautifully acted film; I loved every minute.")
    assert max(scores, key=scores.get) == demo_module.shown_label("pos") and any(s is not None for _, s in pieces)
    scores, _, _ = demo_module.classify(ensemble, "Dull, badly written and far too long. A waste of an evening.")
    assert max(scores, key=scores.get) == demo_module.shown_label("neg")
    card = demo_module.model_card(ensemble)
    assert f"An ensemble of {len(members)} runs" in card and "nlp-rnn train" in card
    assert isinstance(demo_module.build_app(sentiment=folder), gr.Blocks)


def test_installed_without_a_checkout_every_folder_is_needed(demo_module, monkeypatch, tiny_run, reversal_run,
                                                            tiny_writer):
    """A wheel ships no models (``MODELS`` is None): the folders not given are one error naming their options."""
    assert demo_module.MODELS == MODELS  # the tests run from the checkout
    monkeypatch.setattr(demo_module, "MODELS", None)
    with pytest.raises(nlp_rnn.NlpRnnError, match="needs --sentiment RUN_DIR, --translation RUN_DIR, --entities "
                                                  "RUN_DIR and --generate RUN_DIR: an installed nlp-rnn ships no"):
        demo_module.build_app()
    with pytest.raises(nlp_rnn.NlpRnnError, match=r"needs --translation RUN_DIR, --entities RUN_DIR and --generate"):
        demo_module.model_dirs(sentiment=tiny_run)
    with pytest.raises(nlp_rnn.NlpRnnError, match=r"needs --generate RUN_DIR: an installed nlp-rnn ships no"):
        demo_module.model_dirs(sentiment=tiny_run, translation=reversal_run, entities=NER)
    folders = demo_module.model_dirs(sentiment=tiny_run, translation=reversal_run, entities=NER,
                                     generate=f"{tiny_writer},{tiny_writer}")
    assert folders == {"classification": [tiny_run], "translation": [reversal_run], "tagging": [NER],
                       "generation": [tiny_writer, tiny_writer]}
    with pytest.raises(TypeError, match="unknown run folder option"):
        demo_module.model_dirs(sentiment_dir=tiny_run)  # a misspelt option is not silently the shipped model


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
        demo_module.build_app(sentiment=tiny_run, translation=tiny_run)
    with pytest.raises(nlp_rnn.NlpRnnError, match=r"not a tagging run folder \(the Entities tab needs one; this is "
                                                  r"classification\)"):
        demo_module.build_app(entities=tiny_run)


def test_write_streams_growing_text_that_the_seed_repeats(demo_module, tiny_writer):
    writers = {"tiny": nlp_rnn.load(tiny_writer)}
    steps = list(demo_module.write(writers, "tiny", "the c", None, 0.8, 0, 0.95, 40, 3))
    texts = [text for text, _ in steps]
    assert len(texts) > 5 and texts[0].startswith("the c") and len(texts[-1]) > len("the c") + 20
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(texts))  # it only grows
    assert list(demo_module.write(writers, "tiny", "the c", None, 0.8, 0, 0.95, 40, 3))[-1] == steps[-1]
    assert list(demo_module.write(writers, "tiny", "the c", None, 0.8, 0, 0.95, 40, 4))[-1] != steps[-1]
    final, notice = list(demo_module.write(writers, "tiny", "the 😀 c\x00", None, 0.8, 0, 0.95, 10, 3))[-1]
    assert "control character(s) removed" in notice and "does not know" in notice
    with pytest.raises(gr.Error, match="temperature must be > 0"):
        list(demo_module.write(writers, "tiny", "the", None, 0.0, 0, 0.95, 10, 3))


def test_quantized_app_classifies_and_explains(demo_module):
    """``nlp-rnn demo --quantize``: every shipped model int8, the sentiment highlight from the float copy."""
    app = demo_module.build_app(quantize=True)
    assert isinstance(app, gr.Blocks)
    predictor = nlp_rnn.load(MODELS / "sentiment-imdb", quantize=True)
    label, spans, _ = demo_module.classify(predictor, "A wonderful film, moving and funny.")
    assert max(label, key=label.get) == "positive" and spans
    _, rows, _ = demo_module.find_entities(nlp_rnn.load(NER, quantize=True), "Emmanuel Macron arrived in Paris .")
    assert ["LOC", "Paris"] in [row[:2] for row in rows]
