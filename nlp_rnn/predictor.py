"""The public inference API: ``nlp_rnn.load(run_dir)`` returns a predictor. The CLI and demo use only this.

A classification run gives a :class:`SentimentPredictor` (``.predict(texts)``), a translation run a
:class:`TranslationPredictor` (``.translate(texts, beam_size=5, return_attention=False)``).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TypedDict

import torch
from tokenizers import Tokenizer

from nlp_rnn import checkpoint as ckpt
from nlp_rnn.batching import Collator, EncodedDataset
from nlp_rnn.checkpoint import load_tokenizers
from nlp_rnn.classifier import SentimentClassifier
from nlp_rnn.config import Config, ConfigError, config_from_dict, read_yaml
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.evaluation import predict_logits
from nlp_rnn.runtime import select_device
from nlp_rnn.search import decode_dataset
from nlp_rnn.tokenization import PAD_ID, decode_ids, encode_sources, encode_texts, require_tokens, truncate
from nlp_rnn.translator import Translator

log = logging.getLogger(__name__)


class Prediction(TypedDict):
    label: str
    score: float  # probability of ``label``
    scores: dict[str, float]  # every class's probability


class Explanation(TypedDict):
    prediction: Prediction
    method: str  # "attention" (pooling weights, sum to 1) or "gradient x input" (signed, toward the label)
    tokens: list[str]  # the tokens the model read, after truncation
    scores: list[float]  # one per token
    spans: list[tuple[int, int]]  # each token's (start, end) character offsets in the original text
    truncated: bool  # tokens were cut to the model's max length


class SentimentPredictor:
    """A trained classifier with its tokenizer; thread-safe for concurrent ``predict`` calls."""

    def __init__(self, config: Config, tokenizer: Tokenizer, model: torch.nn.Module, labels: list[str],
                 run_dir: Path, explain_model: torch.nn.Module | None = None) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.model = model.eval()
        # gradient x input needs gradients through the encoder, which int8 kernels do not give: a float copy
        self.explain_model = (explain_model or model).eval()
        self.labels = labels
        self.run_dir = run_dir
        self.device = next(model.parameters()).device

    def encode(self, texts: list[str]) -> list[list[int]]:
        if isinstance(texts, str):
            raise TypeError("predict takes a list of texts; wrap a single text in a list")
        data = self.config.data
        ids = encode_texts(self.tokenizer, [str(t) for t in texts], data.max_length, data.truncation,
                           data.head_fraction)
        require_tokens(ids)
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

    def explain(self, text: str) -> Explanation:
        """Which tokens drove the prediction for one text: attention-pooling weights when the model pools
        with attention, else gradient x input toward the predicted label. Spans index into ``text``."""
        data = self.config.data
        encoding = self.tokenizer.encode(str(text), add_special_tokens=False)
        kept = truncate(list(range(len(encoding.ids))), data.max_length, data.truncation, data.head_fraction)
        if not kept:
            raise NlpRnnError("the text has no tokens (empty or whitespace only)")
        ids = [encoding.ids[i] for i in kept]
        batch = Collator(PAD_ID)([{"input_ids": ids}]).to(self.device)
        model = self.explain_model
        with torch.inference_mode():
            pooled, weights = model.pool(batch)
            probabilities = model.head(pooled).softmax(-1)[0].float()
        best = int(probabilities.argmax())
        if weights is not None:
            method, scores = "attention", weights[0]
        else:
            labels = torch.tensor([best], device=self.device)
            method, scores = "gradient x input", model.gradient_x_input(batch, labels)[0]
        row = probabilities.tolist()
        return Explanation(
            prediction=Prediction(label=self.labels[best], score=row[best],
                                  scores=dict(zip(self.labels, row, strict=True))),
            method=method, tokens=[encoding.tokens[i] for i in kept], scores=scores.float().tolist(),
            spans=[encoding.offsets[i] for i in kept], truncated=len(kept) < len(encoding.ids))


class Candidate(TypedDict):
    translation: str
    score: float  # beam: length-normalised log-probability; greedy: log-probability


class Translation(TypedDict, total=False):
    translation: str  # the best hypothesis, detokenized
    score: float
    nbest: list[Candidate]  # best first; length n_best
    source_tokens: list[str]  # with return_attention: the source subwords (and </s>)
    target_tokens: list[str]  # ... the output subwords (and </s> when it ended)
    attention: list[list[float]]  # ... (len(target_tokens), len(source_tokens)) weights
    truncated: bool  # the source was cut to the model's max length


class TranslationPredictor:
    """A trained encoder-decoder with its tokenizer(s); thread-safe for concurrent ``translate`` calls."""

    def __init__(self, config: Config, tokenizers: list[Tokenizer], model: Translator, run_dir: Path) -> None:
        self.config = config
        self.src_tokenizer, self.tgt_tokenizer = tokenizers[0], tokenizers[-1]
        self.model = model.eval()
        self.run_dir = run_dir
        self.device = next(model.parameters()).device

    def encode(self, texts: list[str]) -> tuple[list[list[int]], list[bool]]:
        """Source ids (ending in </s>) and whether each text was cut to ``data.max_length`` tokens."""
        if isinstance(texts, str):
            raise TypeError("translate takes a list of texts; wrap a single text in a list")
        limit = self.config.data.max_length
        sources, truncated = encode_sources(self.src_tokenizer, [str(t) for t in texts], limit)
        if any(truncated):
            log.warning("%d input(s) longer than %d tokens were cut to fit the model", sum(truncated), limit)
        return sources, truncated

    def translate(self, texts: list[str], beam_size: int | None = None, n_best: int = 1,
                  return_attention: bool = False, length_penalty: float | None = None,
                  batch_size: int = 64) -> list[Translation]:
        """Translate a list of texts. ``beam_size`` 1 is greedy search; the default comes from the config."""
        search = self.config.search
        beam_size = search.beam_size if beam_size is None else int(beam_size)
        if beam_size < 1 or n_best < 1 or n_best > beam_size:
            raise NlpRnnError(f"need 1 <= n_best ({n_best}) <= beam_size ({beam_size})")
        if not texts:
            return []
        sources, truncated = self.encode(texts)
        with torch.inference_mode():  # no module state is written: safe from several threads
            found = decode_dataset(self.model, sources, batch_size, self.device, beam_size,
                                   search.length_penalty if length_penalty is None else length_penalty,
                                   search.max_length_ratio, search.max_output_length, n_best, return_attention)
        results = []
        for ids, cut, hypotheses in zip(sources, truncated, found, strict=True):
            nbest = [Candidate(translation=decode_ids(self.tgt_tokenizer, h.tokens), score=h.score)
                     for h in hypotheses]
            result = Translation(translation=nbest[0]["translation"], score=nbest[0]["score"], nbest=nbest,
                                 truncated=cut)
            if return_attention:
                best = hypotheses[0]
                result.update(source_tokens=[self.src_tokenizer.id_to_token(i) for i in ids],
                              target_tokens=[self.tgt_tokenizer.id_to_token(i) for i in best.output_ids],
                              attention=best.attention.float().tolist())
            results.append(result)
        return results


def _read_config(run_dir: Path) -> Config:
    if not run_dir.is_dir():
        raise NlpRnnError(f"{run_dir}: run folder not found")
    config_path = run_dir / ckpt.CONFIG_FILE
    if not config_path.is_file():
        raise NlpRnnError(f"{config_path}: not found (is {run_dir} a run folder?)")
    try:
        return config_from_dict(read_yaml(config_path))
    except ConfigError as err:
        raise NlpRnnError(f"{config_path}: {err}") from None


def _check_vocab(tokenizer: Tokenizer, expected: int | None, name: str, run_dir: Path) -> None:
    size = tokenizer.get_vocab_size()
    if expected not in (None, size):
        raise NlpRnnError(f"{run_dir / name}: vocabulary of {size} tokens does not match the model's {expected} "
                          f"({ckpt.WEIGHTS_FILE}); the tokenizer is from another run")


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """A copy with dynamic int8 quantization (weights int8, activations quantized on the fly) of every
    ``nn.LSTM``, ``nn.GRU`` and ``nn.Linear``: ``torch.ao.quantization.quantize_dynamic``, CPU only. Custom
    cells and embeddings stay float32."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        return quantize_dynamic(model.float(), {torch.nn.LSTM, torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8)


def load(path: str | Path, device: str | torch.device = "cpu",
         quantize: bool = False) -> SentimentPredictor | TranslationPredictor:
    """Rebuild a trained model from its run folder (config.yaml, tokenizer file(s), model.safetensors).

    ``device``: ``cpu`` (the default), ``cuda``, ``cuda:N``, ``mps`` or ``auto`` (CUDA when available); hardware
    that is not there is one :class:`NlpRnnError`. ``quantize=True`` runs the model with dynamic int8
    quantization (:func:`quantize_int8`), which is CPU only (``auto`` then means the CPU)."""
    run_dir = Path(path)
    if quantize and str(device) == "auto":
        device = "cpu"
    device = select_device(str(device), "device")
    if quantize and device.type != "cpu":
        raise NlpRnnError(f"quantize=True runs on the CPU (dynamic int8 kernels), not on {device}")
    config = _read_config(run_dir)
    if config.task == "language_model":
        raise NlpRnnError(f"{run_dir}: a language-model run has no predictor; it pretrains an encoder: name it "
                          "in a classifier config's train.init_from")
    tokenizers = load_tokenizers(config, run_dir)
    weights_path = run_dir / ckpt.WEIGHTS_FILE
    tensors, metadata = ckpt.load_weights(weights_path)
    if config.task == "translation":
        names = ckpt.tokenizer_files(config)  # one joint file, or source and target
        _check_vocab(tokenizers[0], metadata.get("src_vocab_size"), names[0], run_dir)
        _check_vocab(tokenizers[-1], metadata.get("tgt_vocab_size"), names[-1], run_dir)
        model = Translator(config.model, tokenizers[0].get_vocab_size(), tokenizers[-1].get_vocab_size(), PAD_ID)
        ckpt.load_into(model, tensors, weights_path)
        return TranslationPredictor(config, tokenizers, quantize_int8(model) if quantize else model.to(device),
                                    run_dir)
    labels = metadata.get("labels")
    if not labels:
        raise NlpRnnError(f"{weights_path}: no label names in the file's metadata")
    tokenizer = tokenizers[0]
    _check_vocab(tokenizer, metadata.get("vocab_size"), ckpt.TOKENIZER_FILE, run_dir)
    model = SentimentClassifier(config.model, tokenizer.get_vocab_size(), len(labels), PAD_ID)
    ckpt.load_into(model, tensors, weights_path)
    if quantize:
        return SentimentPredictor(config, tokenizer, quantize_int8(model), list(labels), run_dir, explain_model=model)
    return SentimentPredictor(config, tokenizer, model.to(device), list(labels), run_dir)
