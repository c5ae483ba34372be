"""The public inference API: ``nlp_rnn.load(run_dir)`` returns a predictor. The CLI and demo use only this."""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

import torch
from tokenizers import Tokenizer

from nlp_rnn import checkpoint as ckpt
from nlp_rnn.batching import Collator, EncodedDataset
from nlp_rnn.classifier import SentimentClassifier
from nlp_rnn.config import Config, ConfigError, config_from_dict, read_yaml
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.evaluation import predict_logits
from nlp_rnn.tokenization import PAD_ID, encode_texts


class Prediction(TypedDict):
    label: str
    score: float  # probability of ``label``
    scores: dict[str, float]  # every class's probability


class SentimentPredictor:
    """A trained classifier with its tokenizer; thread-safe for concurrent ``predict`` calls."""

    def __init__(self, config: Config, tokenizer: Tokenizer, model: torch.nn.Module, labels: list[str],
                 run_dir: Path) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.model = model.eval()
        self.labels = labels
        self.run_dir = run_dir
        self.device = next(model.parameters()).device

    def encode(self, texts: list[str]) -> list[list[int]]:
        if isinstance(texts, str):
            raise TypeError("predict takes a list of texts; wrap a single text in a list")
        data = self.config.data
        ids = encode_texts(self.tokenizer, [str(t) for t in texts], data.max_length, data.truncation,
                           data.head_fraction)
        empty = [i for i, row in enumerate(ids) if not row]
        if empty:
            raise NlpRnnError(f"text {empty[0]} has no tokens (empty or whitespace only)")
        return ids

    def predict_proba(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """(len(texts), num_labels) class probabilities."""
        if not texts:
            return torch.empty(0, len(self.labels))
        dataset = EncodedDataset(self.encode(texts))
        with torch.inference_mode():
            logits = predict_logits(self.model, dataset, batch_size, self.device)
        return logits.softmax(-1)

    def predict(self, texts: list[str], batch_size: int = 64) -> list[Prediction]:
        results = []
        for row in self.predict_proba(texts, batch_size).tolist():
            best = max(range(len(row)), key=row.__getitem__)
            results.append(Prediction(label=self.labels[best], score=row[best],
                                      scores=dict(zip(self.labels, row, strict=True))))
        return results

    def token_weights(self, text: str) -> tuple[list[str], list[float] | None]:
        """The text's tokens and, for attention pooling, the weight each received (else None)."""
        ids = self.encode([text])[0]
        batch = Collator(PAD_ID)([{"input_ids": ids}]).to(self.device)
        with torch.inference_mode():
            _, weights = self.model.pool(batch)
        tokens = [self.tokenizer.id_to_token(i) for i in ids]
        return tokens, None if weights is None else weights[0].float().tolist()


def load(path: str | Path, device: str = "cpu") -> SentimentPredictor:
    """Rebuild a trained model from its run folder (config.yaml, tokenizer.json, model.safetensors)."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise NlpRnnError(f"{run_dir}: run folder not found")
    config_path = run_dir / ckpt.CONFIG_FILE
    if not config_path.is_file():
        raise NlpRnnError(f"{config_path}: not found (is {run_dir} a run folder?)")
    try:
        config = config_from_dict(read_yaml(config_path))
    except ConfigError as err:
        raise NlpRnnError(f"{config_path}: {err}") from None
    tokenizer_path = run_dir / ckpt.TOKENIZER_FILE
    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
    except Exception as err:  # noqa: BLE001 - tokenizers raises a bare Exception
        raise NlpRnnError(f"{tokenizer_path}: cannot load tokenizer ({str(err).splitlines()[0]})") from None
    weights_path = run_dir / ckpt.WEIGHTS_FILE
    tensors, metadata = ckpt.load_weights(weights_path)
    labels = metadata.get("labels")
    if not labels:
        raise NlpRnnError(f"{weights_path}: no label names in the file's metadata")
    vocab_size = tokenizer.get_vocab_size()
    if metadata.get("vocab_size") not in (None, vocab_size):
        raise NlpRnnError(f"{tokenizer_path}: vocabulary of {vocab_size} tokens does not match the model's "
                          f"{metadata['vocab_size']} ({weights_path.name}); the tokenizer is from another run")
    model = SentimentClassifier(config.model, vocab_size, len(labels), PAD_ID)
    ckpt.load_into(model, tensors, weights_path)
    return SentimentPredictor(config, tokenizer, model.to(device), list(labels), run_dir)
