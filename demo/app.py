"""The nlp-rnn web demo (Gradio). Plain functions first, the UI after, launch only when run as a script.

    python demo/app.py            # or: nlp-rnn demo [--sentiment DIR] [--host H] [--port P]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gradio as gr

import nlp_rnn

MODELS = Path(__file__).resolve().parent / "models"
DEFAULT_SENTIMENT = MODELS / "sentiment-imdb"
MAX_CHARS = 5000
EXAMPLES = [
    "A gorgeous, moving film. The performances are superb and the score stayed with me for days.",
    "Two hours of my life I will never get back. Wooden acting and a plot full of holes.",
    "The first half drags badly, but the last forty minutes are some of the best cinema this year.",
    "Oh great, another sequel nobody asked for. Truly the pinnacle of original storytelling.",
]


def clip(text: str, limit: int = MAX_CHARS) -> tuple[str, str]:
    """The text cut to ``limit`` characters and a notice saying so (empty when nothing was cut)."""
    text = text or ""
    if len(text) <= limit:
        return text, ""
    return text[:limit], f"Input cut to the first {limit:,} of {len(text):,} characters."


def classify(predictor, text: str) -> tuple[dict[str, float], str]:
    """{label: probability} for ``gr.Label`` and a notice; raises gr.Error on empty input."""
    text, notice = clip(text)
    if not text.strip():
        raise gr.Error("Please enter a review.")
    try:
        prediction = predictor.predict([text])[0]
    except nlp_rnn.NlpRnnError as err:
        raise gr.Error(str(err)) from None
    return prediction["scores"], notice


def build_app(sentiment_dir: str | Path = DEFAULT_SENTIMENT) -> gr.Blocks:
    predictor = nlp_rnn.load(sentiment_dir)  # loaded once, shared by every request
    with gr.Blocks(title="nlp-rnn demo") as app:
        gr.Markdown("# nlp-rnn\nRecurrent networks for NLP, trained from scratch on CPU.")
        with gr.Tab("Sentiment"):
            review = gr.Textbox(label="Movie review", lines=6, placeholder="Type or paste a review...")
            button = gr.Button("Classify", variant="primary")
            label = gr.Label(label="Sentiment", num_top_classes=len(predictor.labels))
            notice = gr.Markdown()
            gr.Examples(EXAMPLES, inputs=review)
            button.click(lambda text: classify(predictor, text), review, [label, notice], api_name="classify")
    app.queue(default_concurrency_limit=4)
    return app


def main(sentiment: str | None = None, host: str = "127.0.0.1", port: int = 7860) -> None:
    app = build_app(sentiment or DEFAULT_SENTIMENT)
    print(f"nlp-rnn demo on http://{host}:{port}", flush=True)
    app.launch(server_name=host, server_port=port, show_error=False)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sentiment", default=None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7860)
    args = parser.parse_args()
    main(args.sentiment, args.host, args.port)
