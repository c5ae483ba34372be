"""The nlp-rnn web demo (Gradio). Plain functions first, the UI after, launch only when run as a script.

    nlp-rnn demo [--sentiment DIR] [--translation DIR] [--entities DIR] [--generate DIR,DIR] [--host H] [--port P]
    python demo/app.py [the same options]

One tab per task (``TABS``: task name -> tab), each serving one run folder. The models are loaded once, through
the public API (``nlp_rnn.load``), and shared by every request; their predictors are safe to call from several
threads, and Gradio's queue bounds how many run at once.

The app lives in the package so that an installed nlp-rnn serves it; ``demo/app.py`` is the thin script that
Gradio and Hugging Face Spaces run. The shipped models are not in the wheel: run from a source checkout (or an
editable install of one), the demo defaults to its ``demo/models``; installed, it needs every run folder.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import torch

import nlp_rnn
from nlp_rnn import tasks
from nlp_rnn.checkpoint import RunFolder
from nlp_rnn.plots import attention_figure
from nlp_rnn.tokenization import SPECIAL_TOKENS, subword_words

_CHECKOUT = Path(__file__).resolve().parent.parent
# The shipped models: the source checkout's demo/models, None when the package is installed without one.
MODELS = _CHECKOUT / "demo" / "models" if (_CHECKOUT / "pyproject.toml").is_file() else None
MAX_REVIEW_CHARS = 5000
MAX_SOURCE_CHARS = 1000
MAX_NEWS_CHARS = 5000
MAX_BEAM = 10
MAX_PROMPT_CHARS = 1000
MAX_WRITE_TOKENS = 600  # the slider's end: a page of text streams in a few seconds
GUIDANCE = 2.0  # the label strength a conditioned writer starts with (README: Generation)
CONCURRENCY = 2  # model calls at once, all tabs together: the machines we size for have 2 cores
QUEUE_SIZE = 256  # waiting requests beyond this are refused with a message

SENTIMENT_EXAMPLES = [  # positive, negative, mixed, sarcastic
    "A gorgeous, moving film. The performances are superb and the score stayed with me for days.",
    "Two hours of my life I will never get back. Wooden acting and a plot full of holes.",
    "The first half drags badly, but the last forty minutes are some of the best cinema this year.",
    "Oh great, another sequel nobody asked for. Truly the pinnacle of original storytelling.",
]
TRANSLATION_EXAMPLES = [  # from bentrevett/multi30k's validation split, where the shipped model's beam-5 output is the
    # reference (tests check both); most other sentences show a visible error or two, as the tab says
    "Ein Mann und eine Frau unterhalten sich, während sie neben einem Baum stehen.",
    "Ein junges Mädchen spielt ein Musikinstrument und singt in ein Mikrofon.",
    "Zwei Hunde spielen im hohen Gras mit einem orangen Spielzeug.",
    "Der Mann telefoniert vor einem Sportgeschäft mit seinem Handy.",
    "Ein Mann an einem Strand baut eine Sandburg.",
]
ENTITY_EXAMPLES = [  # newswire style, as CoNLL-2003's Reuters sentences are written (tokens space-separated)
    "Angela Merkel met Emmanuel Macron in Paris .",
    "The European Commission said on Thursday it disagreed with German advice to consumers to shun British lamb .",
    "Manchester United beat Juventus 2-1 at Old Trafford on Wednesday .",
    "Microsoft Corp. shares rose 3 percent in New York after the company reported record profits .",
]
WRITING_EXAMPLES = {  # per shipped model: prompts in its style
    "shakespeare-char": ["ROMEO:\n", "KING RICHARD III:\nNow is the", "First Citizen:\nWe are"],
    "reviews-imdb": ["This movie", "I went in expecting", "The acting in this film"],
}
# CoNLL-2003's entity types: their meaning (shown in the tab) and colour; a tagger with other types gets PALETTE's.
ENTITY_TYPES = {
    "PER": ("person", "#f4a261"),
    "ORG": ("organisation (company, institution, team, party)", "#2a9d8f"),
    "LOC": ("location (country, city, region, landmark)", "#6fa8dc"),
    "MISC": ("miscellaneous (nationality, event, language, title, product)", "#c39bd3"),
}
PALETTE = ["#e9c46a", "#e76f51", "#90be6d", "#f28482", "#84a59d", "#b5838d"]
EMPTY_REVIEW, EMPTY_GERMAN, EMPTY_NEWS = ("Please enter a review.", "Please enter a German sentence.",
                                         "Please enter some English text.")  # the function's and the page's check
SHOWN_LABELS = {"pos": "positive", "neg": "negative"}  # a model's short label names as the page says them
# The page's own styles: long highlights scroll inside their panel, and on a phone the model cards' tables and
# command blocks scroll sideways inside the card instead of squeezing the text.
CSS = """
#words .textfield, #entities .textfield { max-height: 22em; overflow-y: auto; }
#words .textspan, #entities .textspan { white-space: pre-wrap; }
.model-card table { display: block; overflow-x: auto; max-width: 100%; }
.model-card th, .model-card td { white-space: nowrap; }
.model-card h1 { font-size: 1.4em; }
.model-card pre { white-space: pre-wrap; word-break: break-word; }
"""


def scroll_to(elem_id: str) -> str:
    """JavaScript for an event listener: bring the element into view when it is not (on a phone the results sit
    under the inputs, about a screen further down)."""
    return (f"() => {{ const element = document.getElementById('{elem_id}'); if (!element) return; "
            "const top = element.getBoundingClientRect().top; "
            "if (top < 0 || top > window.innerHeight * 0.5) element.scrollIntoView({behavior: 'smooth', "
            "block: 'start'}); }")


def shown_label(name: str) -> str:
    """``pos`` -> ``positive``: the label as a visitor reads it (other names unchanged)."""
    return SHOWN_LABELS.get(name, name)


def user_error(message: str) -> gr.Error:
    """An expected user error (an empty submit, a bad setting): a toast, and no traceback in the server log."""
    return gr.Error(message, print_exception=False)


def required(message: str, count: int = 1):
    """A Gradio validator: the first input must hold non-blank text, else ``message`` shows at the input and the
    model is not called, so the outputs keep their last results; the other ``count - 1`` inputs are always valid."""

    def validate(text, *others):
        first = gr.validate(bool(text and str(text).strip()), message)
        return (first, *(gr.validate(True, "") for _ in range(count - 1))) if count > 1 else first

    return validate


def clean(text: str | None, limit: int) -> tuple[str, str]:
    """Control characters removed (line breaks and tabs kept), the text cut to ``limit`` characters (at the last
    whole word), and a notice saying what was done (empty when nothing was)."""
    text = text or ""
    kept = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf", "Cs"))
    notices = []
    if len(kept) < len(text):
        notices.append(f"{len(text) - len(kept):,} control character(s) removed.")
    if len(kept) > limit:
        notices.append(f"Input cut to the first {limit:,} of {len(kept):,} characters.")
        cut = kept[:limit]
        if not kept[limit].isspace() and re.search(r"\s\S*$", cut):  # mid-word: end at the last whole word
            cut = cut[: re.search(r"\s\S*$", cut).start()]
        kept = cut
    return kept, " ".join(notices)


def highlights(text: str, spans: list[tuple[int, int]], scores: list[float]) -> list[tuple[str, float | None]]:
    """``text`` cut into pieces for ``gr.HighlightedText``: each token's piece with its score scaled into
    [-1, 1] (by the largest magnitude), the text between tokens with None."""
    peak = max((abs(s) for s in scores), default=0.0) or 1.0
    pieces, position = [], 0
    for (start, end), score in zip(spans, scores, strict=True):
        if start < position:  # tokens sharing characters (normalisation): keep the first
            continue
        if start > position:
            pieces.append((text[position:start], None))
        pieces.append((text[start:end], round(score / peak, 4)))
        position = end
    if position < len(text):
        pieces.append((text[position:], None))
    return pieces


def classify(predictor, text: str) -> tuple[dict[str, float], list[tuple[str, float | None]], str]:
    """Class probabilities for ``gr.Label``, the words that drove the decision, and a notice."""
    text, notice = clean(text, MAX_REVIEW_CHARS)
    if not text.strip():
        raise user_error(EMPTY_REVIEW)
    try:
        explanation = predictor.explain(text)
    except nlp_rnn.NlpRnnError as err:
        raise user_error(str(err)) from None
    label = shown_label(explanation["prediction"]["label"])
    if explanation["method"] == "attention":
        how = "Highlighted by the model's attention-pooling weights (darker: weighed more)."
    else:
        how = (f"Highlighted by gradient x input toward **{label}**: red words pushed the model toward "
               f"{label}, purple ones away from it.")
    notes = [how, notice]
    if explanation["truncated"]:
        notes.append(f"The model read {len(explanation['tokens'])} tokens (the start and end of the review); "
                     "the rest is not highlighted.")
    pieces = highlights(text, explanation["spans"], explanation["scores"])
    scores = {shown_label(name): score for name, score in explanation["prediction"]["scores"].items()}
    return scores, pieces, " ".join(n for n in notes if n)


class LanguageCheck:
    """Says when a text looks like the model's target language rather than its source (English typed into the German
    box): py3langid (a maintained port of langid.py, Lui & Baldwin 2012) restricted to the two languages, named by
    the run's ``data.source_column`` and ``data.target_column`` when those are language codes it knows."""

    def __init__(self, source: str, target: str) -> None:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        self.source, self.target = source, target
        self.identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        self.identifier.set_languages([source, target])

    @classmethod
    def for_run(cls, config) -> LanguageCheck | None:
        """The check for a translation run, or None when its columns are not two language codes py3langid knows."""
        source, target = config.data.source_column, config.data.target_column
        if source == target:
            return None
        try:
            return cls(source, target)
        except ValueError:  # a column name that is not a language code py3langid knows
            return None

    def notice(self, text: str) -> str:
        """A warning when ``text`` (3 words or more) is, with 95% confidence, in the target language."""
        if len(text.split()) < 3:
            return ""
        language, probability = self.identifier.classify(text)
        if language != self.target or probability < 0.95:
            return ""
        return (f"This looks like {LANGUAGE_NAMES.get(self.target, self.target)}, not "
                f"{LANGUAGE_NAMES.get(self.source, self.source)}: the model only translates from "
                f"{LANGUAGE_NAMES.get(self.source, self.source)}, so the output is probably wrong.")


LANGUAGE_NAMES = {"de": "German", "en": "English", "fr": "French", "cs": "Czech", "es": "Spanish", "it": "Italian"}


def translate(predictor, text: str, beam_size: int = 5, n_best: int = 3, check: LanguageCheck | None = None):
    """German -> (English translation, n-best rows [rank, translation, score], attention figure, notice). Beam size
    1 is greedy search; ``n_best`` is at most the beam size (a beam keeps no more), and the notice says so;
    ``check`` warns when the text looks like the target language."""
    text, notice = clean(text, MAX_SOURCE_CHARS)
    if not text.strip():
        raise user_error(EMPTY_GERMAN)
    beam_size = max(1, min(int(beam_size), MAX_BEAM))
    notes = [notice, check.notice(text) if check is not None else ""]
    if int(n_best) > beam_size:
        notes.append(f"A beam of {beam_size} keeps {beam_size} candidate{'s' if beam_size > 1 else ''}: "
                     f"showing {beam_size}, not {int(n_best)}.")
    n_best = max(1, min(int(n_best), beam_size))
    try:
        result = predictor.translate([text], beam_size=beam_size, n_best=n_best, return_attention=True)[0]
    except nlp_rnn.NlpRnnError as err:
        raise user_error(str(err)) from None
    rows = [[rank, candidate["translation"], f"{candidate['score']:.2f}"]
            for rank, candidate in enumerate(result["nbest"], start=1)]
    figure = attention_figure(result["source_tokens"], result["target_tokens"], result["attention"])
    if result["truncated"]:
        words, _ = subword_words([t for t in result["source_tokens"] if t not in SPECIAL_TOKENS])
        notes.append(f"The model reads at most {predictor.config.data.max_length} subword tokens, so only the "
                     f"start was translated: “{' '.join(words)}”. Translate the rest on its own.")
    return result["translation"], rows, figure, " ".join(n for n in notes if n)


def write(writers: dict, model: str, prompt: str, label: str | None = None, temperature: float = 0.8,
          top_k: int = 0, top_p: float = 0.95, max_tokens: int = 300, seed: int = 0, guidance: float = 0.0):
    """Stream a continuation of ``prompt`` by the writer named ``model``: yields (the text so far, notice); top_k 0
    means no top-k; ``guidance`` weighs the label (conditioned writers only). The same seed and settings give the
    same text."""
    writer = writers[model]
    prompt, notice = clean(prompt, MAX_PROMPT_CHARS)
    notices: list[str] = []
    text = prompt
    options = {"label": (label or None) if writer.labels else None, "temperature": float(temperature),
               "top_k": int(top_k) or None, "top_p": float(top_p),
               "max_new_tokens": max(1, min(int(max_tokens), MAX_WRITE_TOKENS)), "seed": int(seed),
               "guidance": float(guidance or 0.0) if writer.labels else 0.0}
    try:
        for piece in writer.stream(prompt, notices=notices, **options):
            text += piece
            yield text, notice
    except nlp_rnn.NlpRnnError as err:
        raise user_error(str(err)) from None
    yield text, " ".join(n for n in [notice, *(f"{n[0].upper()}{n[1:]}." for n in notices)] if n)


def model_card(predictor) -> str:
    """The model card shipped in the run folder (README.md), or a short summary when there is none."""
    card = RunFolder(predictor.run_dir).card
    if card.is_file():  # its commands name the folder the page serves, not a placeholder
        here = os.path.relpath(predictor.run_dir)
        return card.read_text(encoding="utf-8").replace("<this folder>", here if not here.startswith("..")
                                                        else str(Path(predictor.run_dir).resolve()))
    config = predictor.config
    return (f"# {predictor.run_dir}\n\nTask: {config.task}; data: `{config.data.source}`. "
            "No model card in this folder (`nlp-rnn pack` writes one).")


def entity_types(tagger) -> dict[str, str]:
    """The tagger's entity types (from its ``B-``/``I-`` tags, CoNLL-2003's first) -> their colour."""
    found = {name[2:] for name in tagger.labels if name[:2] in ("B-", "I-")}
    others = zip(sorted(found - set(ENTITY_TYPES)), itertools.cycle(PALETTE))
    return {**{kind: colour for kind, (_, colour) in ENTITY_TYPES.items() if kind in found}, **dict(others)}


def find_entities(tagger, text: str) -> tuple[list[tuple[str, str | None]], list[list], str]:
    """Named entities for ``gr.HighlightedText``: the text cut into pieces, each entity's piece labelled with its
    type and the text between with None; the table rows [type, entity, start, end, score] (character offsets into
    the text as shown, score the mean probability of the entity's tags); and a notice. Each line is tagged as one
    sentence, up to the model's ``data.max_length`` words."""
    text, notice = clean(text, MAX_NEWS_CHARS)
    if not text.strip():
        raise user_error(EMPTY_NEWS)
    lines = [(m.start(), m.group()) for m in re.finditer(r"[^\n]+", text) if m.group().strip()]
    try:
        results = tagger.tag([line for _, line in lines])
    except nlp_rnn.NlpRnnError as err:
        raise user_error(str(err)) from None
    found = [(offset + e["start"], offset + e["end"], e["type"], e["score"])
             for (offset, _), result in zip(lines, results, strict=True) for e in result["entities"]]
    pieces: list[tuple[str, str | None]] = []
    position = 0
    for start, end, kind, _ in found:  # in text order, never overlapping
        if start > position:
            pieces.append((text[position:start], None))
        pieces.append((text[start:end], kind))
        position = end
    if position < len(text):
        pieces.append((text[position:], None))
    rows = [[kind, text[start:end], start, end, round(score, 3)] for start, end, kind, score in found]
    counts = ", ".join(f"{n} {kind}" for kind, n in Counter(kind for _, _, kind, _ in found).items())
    notes = [notice, f"{len(found)} entit{'y' if len(found) == 1 else 'ies'}: {counts}." if found
             else "No entities found."]
    cut = sum(result["truncated"] for result in results)
    if cut:
        limit = tagger.config.data.max_length
        notes.append(f"{cut} line(s) longer than the model's {limit} words: each was tagged up to its {limit}th "
                     "word; the rest is not highlighted.")
    return pieces, rows, " ".join(n for n in notes if n)


# -- the tabs: each builds its components around one loaded predictor -------------------------------------------

def sentiment_tab(sentiment) -> None:
    with gr.Row():
        with gr.Column():
            review = gr.Textbox(label="Movie review", lines=6, elem_id="review", max_length=MAX_REVIEW_CHARS,
                                placeholder="Type or paste an English movie review...",
                                info=f"Up to {MAX_REVIEW_CHARS:,} characters. Shift+Enter or Classify submits.")
            classify_button = gr.Button("Classify", variant="primary", elem_id="classify")
            gr.Examples(SENTIMENT_EXAMPLES, inputs=review)
        with gr.Column():
            probabilities = gr.Label(label="Sentiment (calibrated probabilities)",
                                     num_top_classes=len(sentiment.labels), elem_id="sentiment")
            review_notice = gr.Markdown(elem_id="review-notice")
            words = gr.HighlightedText(label="Words that drove the decision", elem_id="words", show_legend=True)
    outputs = [probabilities, words, review_notice]
    check = required(EMPTY_REVIEW)
    for event, api_name in ((classify_button.click, "classify"), (review.submit, False)):
        event(lambda text: classify(sentiment, text), review, outputs, api_name=api_name, concurrency_id="model",
              validator=check).success(None, js=scroll_to("sentiment"))


def translate_tab(translator) -> None:
    limit = translator.config.data.max_length
    with gr.Row():
        with gr.Column():
            source = gr.Textbox(label="German", lines=1, max_lines=6, elem_id="source", max_length=MAX_SOURCE_CHARS,
                                placeholder="Ein Mann fährt Fahrrad.",
                                info=f"Enter translates. The model reads the first {limit} subword tokens (about "
                                     f"{limit * 2 // 3} words; up to {MAX_SOURCE_CHARS:,} characters can be typed). "
                                     "It was trained on image captions (Multi30k), so short descriptive sentences "
                                     "work best; expect some errors.")
            beam_size = gr.Slider(1, MAX_BEAM, value=5, step=1, label="Beam size (1: greedy search)",
                                  elem_id="beam-size")
            n_best = gr.Slider(1, 5, value=3, step=1, label="Candidates to show (n-best, at most the beam size)",
                               elem_id="n-best")
            translate_button = gr.Button("Translate", variant="primary", elem_id="translate")
            gr.Examples(TRANSLATION_EXAMPLES, inputs=source)
        with gr.Column():
            english = gr.Textbox(label="English", interactive=False, elem_id="english")
            source_notice = gr.Markdown(elem_id="source-notice")
            nbest = gr.Dataframe(headers=["#", "translation", "score"], datatype=["number", "str", "str"],
                                 label="n-best (score: log-probability / GNMT length penalty)", interactive=False,
                                 wrap=True, column_widths=["12%", "66%", "22%"], elem_id="nbest")
            gr.Markdown("**Attention**: which German word (columns) each English word (rows) looked at.",
                        elem_id="heatmap-title")
            heatmap = gr.Plot(show_label=False, elem_id="heatmap")

    def clamp(beam: float, shown: float):  # the n-best slider never offers more than the beam keeps
        beam = int(beam)
        return gr.update(maximum=max(beam, 2), value=min(int(shown), beam), interactive=beam > 1)

    beam_size.change(clamp, [beam_size, n_best], n_best, api_name=False, queue=False)
    inputs = [source, beam_size, n_best]
    outputs = [english, nbest, heatmap, source_notice]
    check = required(EMPTY_GERMAN, len(inputs))
    language = LanguageCheck.for_run(translator.config)
    for event, api_name in ((translate_button.click, "translate"), (source.submit, False)):
        event(lambda *args: translate(translator, *args, check=language), inputs, outputs, api_name=api_name,
              concurrency_id="model", validator=check).success(None, js=scroll_to("english"))


def entities_tab(tagger) -> None:
    colours = entity_types(tagger)
    legend = " · ".join(f"**{kind}** {ENTITY_TYPES.get(kind, ('',))[0]}".rstrip() for kind in colours)
    with gr.Row():
        with gr.Column():
            news = gr.Textbox(label="English text", lines=4, elem_id="news", max_length=MAX_NEWS_CHARS,
                              placeholder="Angela Merkel met Emmanuel Macron in Paris .",
                              info=f"Up to {MAX_NEWS_CHARS:,} characters; each line is tagged as one sentence. "
                                   "The model was trained on Reuters news (CoNLL-2003), so newswire works best. "
                                   "Shift+Enter or Find entities submits.")
            entities_button = gr.Button("Find entities", variant="primary", elem_id="find-entities")
            gr.Examples(ENTITY_EXAMPLES, inputs=news)
        with gr.Column():
            highlighted = gr.HighlightedText(label="Entities", color_map=colours, show_legend=True, elem_id="entities")
            gr.Markdown(legend, elem_id="entity-legend")
            table = gr.Dataframe(headers=["type", "entity", "start", "end", "score"],
                                 datatype=["str", "str", "number", "number", "number"],
                                 label="Entities (start, end: character offsets; score: mean tag probability)",
                                 interactive=False, elem_id="entity-table")
            news_notice = gr.Markdown(elem_id="news-notice")
    outputs = [highlighted, table, news_notice]
    check = required(EMPTY_NEWS)
    for event, api_name in ((entities_button.click, "entities"), (news.submit, False)):
        event(lambda text: find_entities(tagger, text), news, outputs, api_name=api_name, concurrency_id="model",
              validator=check).success(None, js=scroll_to("entities"))


def generate_tab(writers: dict) -> None:
    """``writers``: shipped folder name (or run folder name) -> generation predictor; the first is shown first."""
    names = list(writers)
    first = writers[names[0]]
    with gr.Row():
        with gr.Column():
            model = gr.Radio(names, value=names[0], label="Model", elem_id="writer")
            prompt = gr.Textbox(label="Prompt", lines=3, elem_id="prompt",
                                value=WRITING_EXAMPLES.get(names[0], [""])[0],
                                max_length=MAX_PROMPT_CHARS,
                                info=f"Up to {MAX_PROMPT_CHARS:,} characters; empty: a new text from its start. "
                                     "Shift+Enter or Write submits.")
            every_label = list(dict.fromkeys(name for writer in writers.values() for name in writer.labels))
            label = gr.Dropdown(every_label, value=first.labels[-1] if first.labels else None, label="Label",
                                visible=bool(first.labels), elem_id="write-label",
                                info="What to write (a model trained with a label column).")
            guidance = gr.Slider(0.0, 5.0, value=GUIDANCE, step=0.5, label="Label strength (guidance; 0: none)",
                                 visible=bool(first.labels), elem_id="guidance")
            with gr.Row():
                temperature = gr.Slider(0.05, 2.0, value=0.8, step=0.05, label="Temperature")
                top_k = gr.Slider(0, 100, value=0, step=1, label="Top-k (0: off)")
                top_p = gr.Slider(0.05, 1.0, value=0.95, step=0.05, label="Top-p")
            with gr.Row():
                max_tokens = gr.Slider(1, MAX_WRITE_TOKENS, value=300, step=1, label="New tokens at most")
                seed = gr.Number(value=0, precision=0, label="Seed (same seed, same text)", elem_id="seed")
            write_button = gr.Button("Write", variant="primary", elem_id="write")
            examples = [[name, example] for name in names for example in WRITING_EXAMPLES.get(name, [])]
            if examples:
                gr.Examples(examples, inputs=[model, prompt])
        with gr.Column():
            text = gr.Textbox(label="Text (streams in as it is written)", lines=18, interactive=False,
                              elem_id="written")
            write_notice = gr.Markdown(elem_id="write-notice")

    def choose(name):
        labels = writers[name].labels
        return (gr.update(choices=labels, value=labels[-1] if labels else None, visible=bool(labels)),
                gr.update(visible=bool(labels)))

    model.change(choose, model, [label, guidance], api_name=False)
    inputs = [model, prompt, label, temperature, top_k, top_p, max_tokens, seed, guidance]
    for event, api_name in ((write_button.click, "write"), (prompt.submit, False)):
        event(lambda *args: (yield from write(writers, *args)), inputs, [text, write_notice], api_name=api_name,
              concurrency_id="model")
        event(None, js=scroll_to("written"))  # at once: the text streams in where the visitor looks


@dataclass(frozen=True)
class Tab:
    title: str
    option: str  # the run folder's option: ``--sentiment DIR`` on the command line, ``sentiment=DIR`` in Python
    models: tuple[str, ...]  # the shipped models' folder names in MODELS
    # builds the tab's components around the loaded predictor (a tab of several models: folder name -> predictor)
    build: Callable[[object], None]

    @property
    def several(self) -> bool:
        """A tab of several models: its option takes a list of folders (comma-separated on the command line)."""
        return len(self.models) > 1


# task name -> its tab, in the page's order. A new task's tab is one entry here (and its option in cli.py).
TABS = {
    "classification": Tab("Sentiment", "sentiment", ("sentiment-imdb",), sentiment_tab),
    "translation": Tab("Translate", "translation", ("translate-de-en",), translate_tab),
    "tagging": Tab("Entities", "entities", ("ner-conll2003",), entities_tab),
    "generation": Tab("Generate", "generate", ("shakespeare-char", "reviews-imdb"), generate_tab),
}


def model_dirs(**folders: str | Path | list | None) -> dict[str, list[Path]]:
    """task name -> the run folders to serve on its tab: the ones given by the tab's option (``sentiment=``,
    ``translation=``, ``entities=``, ``generate=``: a folder, a list of them, or a comma-separated string), else
    the shipped ones in ``MODELS`` (a source checkout's ``demo/models``). Installed without a checkout there are
    none, and missing folders are one clear error."""
    unknown = set(folders) - {tab.option for tab in TABS.values()}
    if unknown:
        raise TypeError(f"model_dirs() got unknown run folder option(s) {sorted(unknown)}")
    given = {task: folders.get(tab.option) for task, tab in TABS.items()}
    missing = [task for task, folder in given.items() if folder is None]
    if MODELS is None and missing:
        options = [f"--{TABS[task].option} RUN_DIR" for task in missing]
        shipped = [f"demo/models/{name}" for tab in TABS.values() for name in tab.models]
        raise nlp_rnn.NlpRnnError(f"the demo needs {_and(options)}: an installed nlp-rnn ships no models (a source "
                                  f"checkout's {_and(shipped)} work, as do your own run folders)")
    return {task: _folders(folder) if folder is not None else [MODELS / name for name in TABS[task].models]
            for task, folder in given.items()}


def _folders(value: str | Path | list) -> list[Path]:
    if isinstance(value, (list, tuple)):
        return [Path(v) for v in value]
    return [Path(part.strip()) for part in str(value).split(",") if part.strip()]


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def build_app(quantize: bool = False, device: str = "cpu", **folders: str | Path | None) -> gr.Blocks:
    """One tab per entry of ``TABS``, then the Models tab. ``folders``: the run folders by option
    (``sentiment=``, ``translation=``, ``entities=``, ``generate=``); one not given: the shipped model(s)
    (``model_dirs``).
    ``device``: where the models run (``auto``, ``cpu``, ``cuda``...; ``quantize`` is CPU only). Launch it with
    ``css=CSS`` (Gradio 6 takes styles at launch), as ``main`` does."""
    predictors: dict[str, list] = {}
    for task, task_folders in model_dirs(**folders).items():
        predictors[task] = [nlp_rnn.load(folder, device, quantize=quantize) for folder in task_folders]  # once
        for predictor in predictors[task]:
            tasks.require(predictor, task, f"the {TABS[task].title} tab")
    with gr.Blocks(title="nlp-rnn demo") as app:
        gr.Markdown("# nlp-rnn\nRecurrent networks for NLP, trained from scratch on 2 CPU cores. "
                    "See the **Models** tab for how each was trained and scored.")
        for task, tab in TABS.items():
            with gr.Tab(tab.title):
                loaded = predictors[task]
                tab.build({Path(p.run_dir).name: p for p in loaded} if tab.several else loaded[0])
        with gr.Tab("Models"):
            for predictor in itertools.chain(*predictors.values()):
                with gr.Accordion(Path(predictor.run_dir).name, open=True):
                    gr.Markdown(model_card(predictor), elem_classes=["model-card"])
    app.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return app


def main(host: str = "127.0.0.1", port: int = 7860, quantize: bool = False, device: str = "auto",
         **folders: str | Path | None) -> None:
    """Serve the demo; ``folders`` as for ``build_app`` (``sentiment=``, ``translation=``, ``entities=``,
    ``generate=``)."""
    folders = {TABS[task].option: found for task, found in model_dirs(**folders).items()}  # fails before starting
    # Each of the CONCURRENCY model calls gets its share of the cores: oversubscribed threads only wait.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // CONCURRENCY))
    app = build_app(quantize, device, **folders)
    print(f"nlp-rnn demo on http://{host}:{port}", flush=True)
    app.launch(server_name=host, server_port=port, show_error=False, css=CSS)


def script(argv: list[str] | None = None, models: str | Path | None = None) -> None:
    """``python demo/app.py`` and ``python -m nlp_rnn.demo``: the options of ``nlp-rnn demo``. ``models``: the
    folder whose shipped models serve when a run folder is not given (default ``MODELS``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for task, tab in TABS.items():
        parser.add_argument(f"--{tab.option}", default=None, metavar="DIR[,DIR]" if tab.several else "DIR",
                            help=f"{task} run folder{'s' if tab.several else ''} ({tab.title} tab)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--quantize", action="store_true", help="dynamic int8 quantization (CPU)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when there is a GPU), cpu, cuda, cuda:N, mps")
    args = parser.parse_args(argv)
    folders = {tab.option: getattr(args, tab.option) for tab in TABS.values()}
    if models is not None:
        folders = {tab.option: folders[tab.option] or [Path(models) / name for name in tab.models]
                   for tab in TABS.values()}
    try:
        main(args.host, args.port, args.quantize, args.device, **folders)
    except nlp_rnn.NlpRnnError as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    script()
