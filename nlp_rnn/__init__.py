"""nlp-rnn: recurrent-network NLP in PyTorch: tokenize, pad, train, evaluate, serve."""

__version__ = "0.1.0"

from nlp_rnn.errors import NlpRnnError  # noqa: E402
from nlp_rnn.predictor import SentimentPredictor, TranslationPredictor, load  # noqa: E402

__all__ = ["NlpRnnError", "SentimentPredictor", "TranslationPredictor", "load", "__version__"]
