"""Run an exported model (``nlp-rnn export RUN_DIR --format onnx``) with onnxruntime and numpy.

``load_onnx(folder)`` gives an :class:`OnnxClassifier` (``.predict(texts)``, the same results as
``SentimentPredictor.predict``), an :class:`OnnxTranslator` (``.translate(texts, beam_size=1)``: greedy or beam
search from :mod:`nlp_rnn.search`, the same tokens as ``TranslationPredictor.translate`` with that beam) or an
:class:`OnnxTagger` (``.tag_tokens(sentences)``: the same tags as ``TaggerPredictor.tag_tokens``). The folder's
config and tokenizer files do the text processing; the graphs do the arithmetic. A folder exported with ``--int8``
loads the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from nlp_rnn.batching import pad
from nlp_rnn.checkpoint import CONFIG_FILE
from nlp_rnn.config import Config, config_from_dict, read_yaml
from nlp_rnn.crf import FORBIDDEN
from nlp_rnn.decoder import DecoderState, DecoderStep, EncodedSource
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.search import Hypothesis, beam_search, greedy_search
from nlp_rnn.tokenization import (
    PAD_ID,
    UNK_ID,
    decode_ids,
    encode_sources,
    encode_texts,
    require_tokens,
)

MANIFEST = "export.json"
CRF_FILE = "crf.json"  # a CRF tagger's transition, start and end scores, for Viterbi beside its emission graph


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
        self.temperature = float(manifest.get("temperature", 1.0))  # the run's calibration, as nlp_rnn.load uses
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
            logits = logits / self.temperature
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


class OnnxSeq2Seq:
    """``encoder.onnx`` and ``decoder_step.onnx`` behind ``encode`` and ``decode_step`` on tensors: the only two
    calls greedy and beam search make, so :mod:`nlp_rnn.search` decodes over onnxruntime exactly as over PyTorch
    (the arrays pass between numpy and torch without copies). The graph gives log-probabilities as the step's
    logits: a softmax of them is the same distribution."""

    def __init__(self, encoder, decoder) -> None:
        self.encoder, self.decoder = encoder, decoder
        # the exporter drops inputs a model never reads (``attentional`` without input feeding)
        self.decoder_inputs = {i.name for i in decoder.get_inputs()}

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EncodedSource:
        values, keys, mask, hidden, attentional = (torch.from_numpy(array) for array in self.encoder.run(
            None, {"src": src.numpy(), "src_lengths": src_lengths.numpy()}))
        return EncodedSource(values, keys, mask, DecoderState(hidden, attentional))

    def decode_step(self, prev_tokens: torch.Tensor, state: DecoderState, source: EncodedSource) -> DecoderStep:
        feed = {"prev_tokens": prev_tokens, "hidden": state.hidden, "attentional": state.attentional,
                "values": source.values, "keys": source.keys, "mask": source.mask}
        log_probs, hidden, attentional, attention = (torch.from_numpy(array) for array in self.decoder.run(
            None, {name: value.numpy() for name, value in feed.items() if name in self.decoder_inputs}))
        return DecoderStep(log_probs, DecoderState(hidden, attentional), attention)


class OnnxTranslator:
    def __init__(self, folder: Path, config: Config, manifest: dict, threads: int = 0) -> None:
        self.config = config
        names = manifest["tokenizers"]
        self.src_tokenizer = Tokenizer.from_file(str(folder / names[0]))
        self.tgt_tokenizer = Tokenizer.from_file(str(folder / names[-1]))
        self.model = OnnxSeq2Seq(_session(folder / "encoder.onnx", threads),
                                 _session(folder / "decoder_step.onnx", threads))

    def search(self, src: torch.Tensor, src_lengths: torch.Tensor, beam_size: int = 1) -> list[Hypothesis]:
        """One padded batch, src (batch, src_len) -> each sentence's best hypothesis: ``greedy_search`` for
        ``beam_size`` 1, else ``beam_search`` with the config's length penalty and limits."""
        search = self.config.search
        if beam_size == 1:
            return greedy_search(self.model, src, src_lengths, search.max_length_ratio, search.max_output_length)
        found = beam_search(self.model, src, src_lengths, beam_size, search.length_penalty, search.max_length_ratio,
                            search.max_output_length)
        return [hypotheses[0] for hypotheses in found]

    def translate(self, texts: list[str], beam_size: int = 1, batch_size: int = 64) -> list[str]:
        """Each text's translation: greedy search by default (``TranslationPredictor.translate(texts,
        beam_size=1)``'s tokens), beam search for ``beam_size`` > 1 (the same as ``beam_size=beam_size``)."""
        if beam_size < 1:
            raise NlpRnnError(f"beam_size must be at least 1, not {beam_size}")
        sources, _ = encode_sources(self.src_tokenizer, [str(t) for t in texts], self.config.data.max_length)
        order = sorted(range(len(sources)), key=lambda i: len(sources[i]))  # similar lengths together
        translations: list[str] = [""] * len(sources)
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            src, src_lengths, _ = pad([sources[i] for i in chosen], PAD_ID)
            for index, hypothesis in zip(chosen, self.search(src, src_lengths, beam_size), strict=True):
                translations[index] = decode_ids(self.tgt_tokenizer, hypothesis.tokens)
        return translations


def viterbi(emissions: np.ndarray, transitions: np.ndarray, start: np.ndarray, end: np.ndarray) -> list[int]:
    """The best tag path through one sentence's emissions (len, tags) (``CRF.viterbi_scores``, one row)."""
    score = start + emissions[0]  # (tags,)
    backpointers = []
    for emission in emissions[1:]:
        candidates = score[:, None] + transitions  # (from, to)
        backpointers.append(candidates.argmax(0))
        score = candidates.max(0) + emission
    path = [int((score + end).argmax())]
    for pointers in reversed(backpointers):
        path.append(int(pointers[path[-1]]))
    return path[::-1]


class OnnxTagger:
    """Pre-split tokens -> tags: ``tagger.onnx`` gives each word's emissions; a CRF's Viterbi, or for softmax the
    argmax (Viterbi over the log-probabilities when IOB2 constraints apply), picks the tags in numpy."""

    def __init__(self, folder: Path, config: Config, manifest: dict, threads: int = 0) -> None:
        self.config = config
        self.tags = list(manifest["tags"])
        words, chars = (Tokenizer.from_file(str(folder / name)) for name in manifest["tokenizers"])
        self.word_vocab, self.char_vocab = words.get_vocab(), chars.get_vocab()
        self.normalize_word = words.normalizer.normalize_str if words.normalizer else str
        self.normalize_chars = chars.normalizer.normalize_str if chars.normalizer else str
        self.session = _session(folder / "tagger.onnx", threads)
        self.inputs = {i.name for i in self.session.get_inputs()}  # no char_ids without the character CNN
        self.crf = config.model.output == "crf"
        size = len(self.tags)
        scores = (json.loads((folder / CRF_FILE).read_text(encoding="utf-8")) if self.crf else
                  {"transitions": np.zeros((size, size)), "start": np.zeros(size), "end": np.zeros(size)})
        transitions, start, end = (np.asarray(scores[k], dtype=np.float32) for k in ("transitions", "start", "end"))
        self.constrained = manifest.get("allowed") is not None  # IOB2: no I-X unless after B-X or I-X
        if self.constrained:
            transitions = np.where(manifest["allowed"], transitions, FORBIDDEN).astype(np.float32)
            start = np.where(manifest["allowed_start"], start, FORBIDDEN).astype(np.float32)
        self.transitions, self.start, self.end = transitions, start, end

    def encode(self, sentence: list[str]) -> tuple[list[int], list[list[int]]]:
        """Word ids and each word's character ids, as ``TaggingTask.encode_words`` (word-level vocabulary)."""
        limit = self.config.model.max_word_length
        ids = [self.word_vocab.get(self.normalize_word(word), UNK_ID) for word in sentence]
        chars = [[self.char_vocab.get(c, UNK_ID) for c in self.normalize_chars(word)[:limit]] or [UNK_ID]
                 for word in sentence]
        return ids, chars

    def decode(self, emissions: np.ndarray) -> list[int]:
        """One sentence's emissions (len, tags) -> tag ids, as ``SequenceTagger.decode``."""
        if self.crf:
            return viterbi(emissions, self.transitions, self.start, self.end)
        exp = np.exp(emissions - emissions.max(-1, keepdims=True))
        probabilities = exp / exp.sum(-1, keepdims=True)
        if not self.constrained:
            return probabilities.argmax(-1).tolist()
        return viterbi(np.log(np.maximum(probabilities, 1e-12)), self.transitions, self.start, self.end)

    def tag_tokens(self, sentences: list[list[str]], batch_size: int = 64) -> list[list[str]]:
        """Each sentence's tags; a sentence of no tokens gets none."""
        encoded = [self.encode([str(word) for word in sentence]) for sentence in sentences]
        kept = sorted((i for i, s in enumerate(sentences) if s), key=lambda i: len(sentences[i]))  # little padding
        results: list[list[str]] = [[] for _ in sentences]
        for begin in range(0, len(kept), batch_size):
            chosen = kept[begin : begin + batch_size]
            input_ids, lengths = _padded([encoded[i][0] for i in chosen])
            longest = max(len(word) for i in chosen for word in encoded[i][1])
            char_ids = np.zeros((*input_ids.shape, longest), dtype=np.int64)  # (batch, len, chars)
            for row, i in enumerate(chosen):
                for position, word in enumerate(encoded[i][1]):
                    char_ids[row, position, : len(word)] = word
            feed = {"input_ids": input_ids, "char_ids": char_ids, "lengths": lengths}
            (emissions,) = self.session.run(None, {name: value for name, value in feed.items() if name in self.inputs})
            for row, i in enumerate(chosen):
                results[i] = [self.tags[t] for t in self.decode(emissions[row, : lengths[row]])]
        return results


def load_onnx(folder: str | Path, threads: int = 0) -> OnnxClassifier | OnnxTranslator | OnnxTagger:
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


# a task's ``onnx_runner`` names one
RUNNERS = {"classifier": OnnxClassifier, "translator": OnnxTranslator, "tagger": OnnxTagger}
