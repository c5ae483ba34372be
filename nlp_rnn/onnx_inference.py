"""Run an exported model (``nlp-rnn export RUN_DIR --format onnx``) with onnxruntime and numpy.

``load_onnx(folder)`` gives an :class:`OnnxClassifier` (``.predict(texts)``, the same results as
``SentimentPredictor.predict``) or an :class:`OnnxTranslator` (``.translate(texts)``: greedy search, the same
tokens as ``TranslationPredictor.translate(texts, beam_size=1)``). The folder's config and tokenizer files do
the text processing; the graphs do the arithmetic.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from nlp_rnn.batching import pad
from nlp_rnn.checkpoint import CONFIG_FILE
from nlp_rnn.config import Config, config_from_dict, read_yaml
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.search import output_limits
from nlp_rnn.tokenization import BOS_ID, EOS_ID, PAD_ID, decode_ids, encode_sources, encode_texts, require_tokens

MANIFEST = "export.json"


def _session(path: Path, threads: int):
    try:
        import onnxruntime
    except ImportError:
        raise NlpRnnError("running ONNX graphs needs onnxruntime: pip install 'nlp-rnn[export]'") from None
    if not path.is_file():
        raise NlpRnnError(f"{path}: not found (make it with nlp-rnn export RUN_DIR --format onnx)")
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _padded(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged ids -> (batch, longest) int64 padded with <pad>, and lengths (batch,) int64, as numpy."""
    ids, lengths, _ = pad(rows, PAD_ID)
    return ids.numpy(), lengths.numpy()


class OnnxClassifier:
    def __init__(self, folder: Path, config: Config, manifest: dict, threads: int = 0) -> None:
        self.config = config
        self.labels = list(manifest["labels"])
        self.tokenizer = Tokenizer.from_file(str(folder / manifest["tokenizers"][0]))
        self.session = _session(folder / "classifier.onnx", threads)

    def predict_proba(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        data = self.config.data
        ids = encode_texts(self.tokenizer, [str(t) for t in texts], data.max_length, data.truncation,
                           data.head_fraction)
        require_tokens(ids)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths together: little padding
        probabilities = np.zeros((len(ids), len(self.labels)), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            input_ids, lengths = _padded([ids[i] for i in chosen])
            (logits,) = self.session.run(None, {"input_ids": input_ids, "lengths": lengths})
            exp = np.exp(logits - logits.max(-1, keepdims=True))
            probabilities[chosen] = exp / exp.sum(-1, keepdims=True)
        return probabilities

    def predict(self, texts: list[str], batch_size: int = 64) -> list[dict]:
        results = []
        for row in self.predict_proba(texts, batch_size).tolist():
            best = int(np.argmax(row))
            results.append({"label": self.labels[best], "score": row[best],
                            "scores": dict(zip(self.labels, row, strict=True))})
        return results


class OnnxTranslator:
    def __init__(self, folder: Path, config: Config, manifest: dict, threads: int = 0) -> None:
        self.config = config
        names = manifest["tokenizers"]
        self.src_tokenizer = Tokenizer.from_file(str(folder / names[0]))
        self.tgt_tokenizer = Tokenizer.from_file(str(folder / names[-1]))
        self.encoder = _session(folder / "encoder.onnx", threads)
        self.decoder = _session(folder / "decoder_step.onnx", threads)
        # the exporter drops inputs a model never reads (``attentional`` without input feeding)
        self.decoder_inputs = {i.name for i in self.decoder.get_inputs()}

    def greedy_ids(self, src: np.ndarray, src_lengths: np.ndarray) -> list[list[int]]:
        """Greedy search over one padded batch -> each sentence's output ids, ``</s>`` included if it ended."""
        search = self.config.search
        limits = output_limits(src_lengths, search.max_length_ratio, search.max_output_length)
        limit_array = np.array(limits)
        values, keys, mask, hidden, attentional = self.encoder.run(None, {"src": src, "src_lengths": src_lengths})
        tokens = np.full(len(src), BOS_ID, dtype=np.int64)
        finished = np.zeros(len(src), dtype=bool)
        steps = []
        for t in range(max(limits)):
            feed = {"prev_tokens": tokens, "hidden": hidden, "attentional": attentional, "values": values,
                    "keys": keys, "mask": mask}
            log_probs, hidden, attentional, _ = self.decoder.run(
                None, {name: value for name, value in feed.items() if name in self.decoder_inputs})
            tokens = log_probs.argmax(-1).astype(np.int64)  # (batch,)
            steps.append(tokens)
            finished |= (tokens == EOS_ID) | (t + 1 >= limit_array)
            if finished.all():
                break
        outputs = []
        for row, sequence in enumerate(np.stack(steps, axis=1).tolist()):
            sequence = sequence[: limits[row]]
            outputs.append(sequence[: sequence.index(EOS_ID) + 1] if EOS_ID in sequence else sequence)
        return outputs

    def translate(self, texts: list[str], batch_size: int = 64) -> list[str]:
        sources, _ = encode_sources(self.src_tokenizer, [str(t) for t in texts], self.config.data.max_length)
        translations: list[str] = [""] * len(sources)
        for start in range(0, len(sources), batch_size):
            src, src_lengths = _padded(sources[start : start + batch_size])
            for offset, ids in enumerate(self.greedy_ids(src, src_lengths)):
                translations[start + offset] = decode_ids(self.tgt_tokenizer, ids)
        return translations


def load_onnx(folder: str | Path, threads: int = 0) -> OnnxClassifier | OnnxTranslator:
    """An exported folder's model on onnxruntime (``threads`` 0: onnxruntime's default)."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise NlpRnnError(f"{manifest_path}: not found (is {folder} made by nlp-rnn export?)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    config = config_from_dict(read_yaml(folder / CONFIG_FILE))
    if manifest.get("runner") not in RUNNERS:
        raise NlpRnnError(f"{manifest_path}: no onnxruntime runner {manifest.get('runner')!r} (known: "
                          f"{', '.join(RUNNERS)}); export it again with this version of nlp-rnn")
    return RUNNERS[manifest["runner"]](folder, config, manifest, threads)


RUNNERS = {"classifier": OnnxClassifier, "translator": OnnxTranslator}  # a task's ``onnx_runner`` names one
