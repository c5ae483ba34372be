"""The nlp-rnn web demo (Gradio). Plain functions first, the UI after, launch only when run as a script.

    nlp-rnn demo [--sentiment DIR] [--translation DIR] [--host H] [--port P]   # or: python demo/app.py

Both models are loaded once, through the public API (``nlp_rnn.load``), and shared by every request; their
predictors are safe to call from several threads, and Gradio's queue bounds how many run at once.

The app lives in the package so that an installed nlp-rnn serves it; ``demo/app.py`` is the thin script that
Gradio and Hugging Face Spaces run. The shipped models are not in the wheel: run from a source checkout (or an
editable install of one), the demo defaults to its ``demo/models``; installed, it needs both run folders.
"""

from __future__ import annotations

import argparse
import os
import unicodedata
from pathlib import Path

import gradio as gr
import torch

import nlp_rnn
from nlp_rnn import tasks
from nlp_rnn.checkpoint import RunFolder
from nlp_rnn.plots import attention_figure

_CHECKOUT = Path(__file__).resolve().parent.parent
# The shipped models: the source checkout's demo/models, None when the package is installed without one.
MODELS = _CHECKOUT / "demo" / "models" if (_CHECKOUT / "pyproject.toml").is_file() else None
SENTIMENT_MODEL, TRANSLATION_MODEL = "sentiment-imdb", "translate-de-en"  # their folder names in MODELS
MAX_REVIEW_CHARS = 5000
MAX_SOURCE_CHARS = 1000
MAX_BEAM = 10
CONCURRENCY = 2  # model calls at once, both tabs together: the machines we size for have 2 cores
QUEUE_SIZE = 256  # waiting requests beyond this are refused with a message

SENTIMENT_EXAMPLES = [  # positive, negative, mixed, sarcastic
    "A gorgeous, moving film. The performances are superb and the score stayed with me for days.",
    "Two hours of my life I will never get back. Wooden acting and a plot full of holes.",
    "The first half drags badly, but the last forty minutes are some of the best cinema this year.",
    "Oh great, another sequel nobody asked for. Truly the pinnacle of original storytelling.",
]
TRANSLATION_EXAMPLES = [  # from bentrevett/multi30k's validation split (tests check they are there)
    "Eine Gruppe von Männern lädt Baumwolle auf einen Lastwagen",
    "Eine Band gibt ein Rockkonzert vor Zuschauern in einer Bar.",
    "Ein Künstler arbeitet an einer Eisskulptur",
    "Eine Frau und ihre zwei Kinder sind am Strand und die Frau springt hoch in die Luft.",
    "Männer in gelben Anzügen und ein Klavier befinden sich auf der Bühne und ein Mann spielt einen Kontrabass.",
]


def clean(text: str | None, limit: int) -> tuple[str, str]:
    """Control characters removed (line breaks and tabs kept), the text cut to ``limit`` characters, and a
    notice saying what was done (empty when nothing was)."""
    text = text or ""
    kept = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf", "Cs"))
    notices = []
    if len(kept) < len(text):
        notices.append(f"{len(text) - len(kept):,} control character(s) removed.")
    if len(kept) > limit:
        notices.append(f"Input cut to the first {limit:,} of {len(kept):,} characters.")
        kept = kept[:limit]
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
        raise gr.Error("Please enter a review.")
    try:
        explanation = predictor.explain(text)
    except nlp_rnn.NlpRnnError as err:
        raise gr.Error(str(err)) from None
    label = explanation["prediction"]["label"]
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
    return explanation["prediction"]["scores"], pieces, " ".join(n for n in notes if n)


def translate(predictor, text: str, search: str = "beam", beam_size: int = 5, n_best: int = 3):
    """German -> (English translation, n-best rows [rank, translation, score], attention figure, notice)."""
    text, notice = clean(text, MAX_SOURCE_CHARS)
    if not text.strip():
        raise gr.Error("Please enter a German sentence.")
    beam_size = 1 if search == "greedy" else max(1, min(int(beam_size), MAX_BEAM))
    n_best = max(1, min(int(n_best), beam_size))
    try:
        result = predictor.translate([text], beam_size=beam_size, n_best=n_best, return_attention=True)[0]
    except nlp_rnn.NlpRnnError as err:
        raise gr.Error(str(err)) from None
    rows = [[rank, candidate["translation"], round(candidate["score"], 3)]
            for rank, candidate in enumerate(result["nbest"], start=1)]
    figure = attention_figure(result["source_tokens"], result["target_tokens"], result["attention"])
    if result["truncated"]:
        notice = " ".join(filter(None, [notice, "The sentence was cut to the model's maximum input length."]))
    return result["translation"], rows, figure, notice


def model_card(predictor) -> str:
    """The model card shipped in the run folder (README.md), or a short summary when there is none."""
    card = RunFolder(predictor.run_dir).card
    if card.is_file():
        return card.read_text(encoding="utf-8")
    config = predictor.config
    return (f"# {predictor.run_dir}\n\nTask: {config.task}; data: `{config.data.source}`. "
            "No model card in this folder (`nlp-rnn pack` writes one).")


def model_dirs(sentiment_dir: str | Path | None = None,
               translation_dir: str | Path | None = None) -> tuple[Path, Path]:
    """The two run folders to serve: those given, else the shipped ones in ``MODELS`` (a source checkout's
    ``demo/models``). Installed without a checkout there are none, and a missing one is one clear error."""
    if MODELS is None and (sentiment_dir is None or translation_dir is None):
        options = (("--sentiment RUN_DIR", sentiment_dir), ("--translation RUN_DIR", translation_dir))
        missing = " and ".join(option for option, given in options if given is None)
        raise nlp_rnn.NlpRnnError(f"the demo needs {missing}: an installed nlp-rnn ships no models (a source "
                                  f"checkout's demo/models/{SENTIMENT_MODEL} and {TRANSLATION_MODEL} work, "
                                  "as do your own run folders)")
    return (Path(sentiment_dir) if sentiment_dir is not None else MODELS / SENTIMENT_MODEL,
            Path(translation_dir) if translation_dir is not None else MODELS / TRANSLATION_MODEL)


def build_app(sentiment_dir: str | Path | None = None, translation_dir: str | Path | None = None,
              quantize: bool = False, device: str = "cpu") -> gr.Blocks:
    """``device``: where both models run (``auto``, ``cpu``, ``cuda``...; ``quantize`` is CPU only). A folder
    not given: the shipped model (``model_dirs``)."""
    sentiment_dir, translation_dir = model_dirs(sentiment_dir, translation_dir)
    sentiment = nlp_rnn.load(sentiment_dir, device, quantize=quantize)  # loaded once, shared by every request
    translator = nlp_rnn.load(translation_dir, device, quantize=quantize)
    tasks.require(sentiment, "classification", "the Sentiment tab")
    tasks.require(translator, "translation", "the Translate tab")
    with gr.Blocks(title="nlp-rnn demo") as app:
        gr.Markdown("# nlp-rnn\nRecurrent networks for NLP, trained from scratch on 2 CPU cores. "
                    "See the **Models** tab for how each was trained and scored.")
        with gr.Tab("Sentiment"):
            with gr.Row():
                with gr.Column():
                    review = gr.Textbox(label="Movie review", lines=6, elem_id="review",
                                        placeholder="Type or paste an English movie review...",
                                        info=f"Up to {MAX_REVIEW_CHARS:,} characters.")
                    classify_button = gr.Button("Classify", variant="primary", elem_id="classify")
                    gr.Examples(SENTIMENT_EXAMPLES, inputs=review)
                with gr.Column():
                    probabilities = gr.Label(label="Sentiment", num_top_classes=len(sentiment.labels),
                                             elem_id="sentiment")
                    words = gr.HighlightedText(label="Words that drove the decision", elem_id="words")
                    review_notice = gr.Markdown(elem_id="review-notice")
            classify_button.click(lambda text: classify(sentiment, text), review,
                                  [probabilities, words, review_notice], api_name="classify", concurrency_id="model")
            review.submit(lambda text: classify(sentiment, text), review,
                          [probabilities, words, review_notice], api_name=False, concurrency_id="model")
        with gr.Tab("Translate"):
            with gr.Row():
                with gr.Column():
                    source = gr.Textbox(label="German", lines=3, elem_id="source",
                                        placeholder="Ein Mann fährt Fahrrad.",
                                        info=f"Up to {MAX_SOURCE_CHARS:,} characters. The model was trained on "
                                             "image captions (Multi30k), so short descriptive sentences work best.")
                    search = gr.Radio(["beam", "greedy"], value="beam", label="Search")
                    beam_size = gr.Slider(1, MAX_BEAM, value=5, step=1, label="Beam size")
                    n_best = gr.Slider(1, MAX_BEAM, value=3, step=1, label="Candidates to show (n-best)")
                    translate_button = gr.Button("Translate", variant="primary", elem_id="translate")
                    gr.Examples(TRANSLATION_EXAMPLES, inputs=source)
                with gr.Column():
                    english = gr.Textbox(label="English", interactive=False, elem_id="english")
                    nbest = gr.Dataframe(headers=["#", "translation", "score"], datatype=["number", "str", "number"],
                                         label="n-best (score: log-probability / GNMT length penalty)",
                                         interactive=False, elem_id="nbest")
                    heatmap = gr.Plot(label="Attention (output x source)", elem_id="heatmap")
                    source_notice = gr.Markdown(elem_id="source-notice")
            inputs = [source, search, beam_size, n_best]
            outputs = [english, nbest, heatmap, source_notice]
            translate_button.click(lambda *args: translate(translator, *args), inputs, outputs, api_name="translate",
                                   concurrency_id="model")
            source.submit(lambda *args: translate(translator, *args), inputs, outputs, api_name=False,
                          concurrency_id="model")
        with gr.Tab("Models"):
            for predictor in (sentiment, translator):
                with gr.Accordion(Path(predictor.run_dir).name, open=True):
                    gr.Markdown(model_card(predictor))
    app.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)
    return app


def main(sentiment: str | Path | None = None, translation: str | Path | None = None, host: str = "127.0.0.1",
         port: int = 7860, quantize: bool = False, device: str = "auto") -> None:
    sentiment, translation = model_dirs(sentiment, translation)  # a missing folder fails before anything starts
    # Each of the CONCURRENCY model calls gets its share of the cores: oversubscribed threads only wait.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // CONCURRENCY))
    app = build_app(sentiment, translation, quantize, device)
    print(f"nlp-rnn demo on http://{host}:{port}", flush=True)
    app.launch(server_name=host, server_port=port, show_error=False)


def script(argv: list[str] | None = None, models: str | Path | None = None) -> None:
    """``python demo/app.py`` and ``python -m nlp_rnn.demo``: the options of ``nlp-rnn demo``. ``models``: the
    folder whose shipped models serve when a run folder is not given (default ``MODELS``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentiment", default=None)
    parser.add_argument("--translation", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--quantize", action="store_true", help="dynamic int8 quantization (CPU)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when there is a GPU), cpu, cuda, cuda:N, mps")
    args = parser.parse_args(argv)
    if models is not None:
        args.sentiment = args.sentiment or Path(models) / SENTIMENT_MODEL
        args.translation = args.translation or Path(models) / TRANSLATION_MODEL
    try:
        main(args.sentiment, args.translation, args.host, args.port, args.quantize, args.device)
    except nlp_rnn.NlpRnnError as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    script()
