"""The ONNX graphs of the built-in models (``nlp-rnn export``; see :mod:`nlp_rnn.export` for the layout).

A task's ``export_onnx`` calls :func:`export_classifier`, :func:`export_translator` or :func:`export_tagger`;
:func:`quantize_int8` rewrites a written graph with dynamic int8 weights (``nlp-rnn export --int8``). This module
knows the models, not the tasks or run folders.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from nlp_rnn.cells import FUSED_CELLS
from nlp_rnn.decoder import DecoderState, EncodedSource
from nlp_rnn.encoder import lengths_to_mask
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.onnx_inference import CRF_FILE
from nlp_rnn.tagger import TagBatch

OPSET = 17


class ClassifierGraph(nn.Module):
    """The classifier on plain tensors: (input_ids, lengths) -> logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, lengths: Tensor) -> Tensor:
        pooled, _ = self.model.pooling(self.model.encoder(input_ids, lengths))
        return self.model.head(pooled)  # (batch, labels)


class EncoderGraph(nn.Module):
    """``Translator.encode`` flattened to tensors: (src, src_lengths) -> values, keys, mask, hidden, attentional."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, ...]:
        source = self.model.encode(src, src_lengths)
        return source.values, source.keys, source.mask, source.initial_state.hidden, source.initial_state.attentional


class DecoderStepGraph(nn.Module):
    """``Translator.decode_step`` flattened to tensors, with log-probabilities for search."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, prev_tokens: Tensor, hidden: Tensor, attentional: Tensor, values: Tensor, keys: Tensor,
                mask: Tensor) -> tuple[Tensor, ...]:
        state = DecoderState(hidden, attentional)
        step = self.model.decode_step(prev_tokens, state, EncodedSource(values, keys, mask, state))
        log_probs = step.logits.float().log_softmax(-1)  # (batch, vocab)
        return log_probs, step.state.hidden, step.state.attentional, step.attention


class TaggerGraph(nn.Module):
    """``SequenceTagger.emissions`` on plain tensors: (input_ids, char_ids, lengths) -> emissions; one token per
    word (a word-level vocabulary), so no ``word_starts``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, char_ids: Tensor, lengths: Tensor) -> Tensor:
        mask = lengths_to_mask(lengths, input_ids.size(1))  # (batch, len)
        return self.model.emissions(TagBatch(input_ids, char_ids, lengths, mask))  # (batch, len, tags)


def _export(graph: nn.Module, args: tuple[Tensor, ...], path: Path, inputs: dict[str, dict[int, str]],
            outputs: dict[str, dict[int, str]], opset: int) -> Path:
    temp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings():
        # The legacy exporter warns that it is legacy, and that an LSTM exported without initial states may
        # not take other batch sizes; ours does (tested with several batch sizes against PyTorch).
        warnings.simplefilter("ignore")
        torch.onnx.export(graph.eval(), args, str(temp), input_names=list(inputs), output_names=list(outputs),
                          dynamic_axes={**inputs, **outputs}, opset_version=opset, dynamo=False)
    temp.replace(path)
    return path


def _example_ids(batch: int, length: int) -> tuple[Tensor, Tensor]:
    """Example inputs for tracing: ids >= 4 (no special tokens), the second row shorter and padded."""
    lengths = torch.tensor([length] + [max(1, length - 2)] * (batch - 1))
    ids = torch.arange(length).add(4).repeat(batch, 1)  # (batch, length)
    ids = ids * (torch.arange(length).unsqueeze(0) < lengths.unsqueeze(1))
    return ids, lengths


def _check_exportable(encoder: nn.Module) -> None:
    if encoder.cell not in FUSED_CELLS:
        raise NlpRnnError(f"ONNX export supports the cells {', '.join(FUSED_CELLS)} (ONNX has RNN, LSTM and GRU "
                          f"operators); {encoder.cell!r} steps in a Python loop, which a graph would fix to one length")


def export_classifier(model: nn.Module, out: Path, opset: int = OPSET) -> list[Path]:
    """``classifier.onnx`` in ``out`` from a SentimentClassifier (float32, any fused cell and pooling)."""
    _check_exportable(model.encoder)
    ids, lengths = _example_ids(2, 7)
    batch_len = {0: "batch", 1: "length"}
    return [_export(ClassifierGraph(model), (ids, lengths), out / "classifier.onnx",
                    {"input_ids": batch_len, "lengths": {0: "batch"}}, {"logits": {0: "batch"}}, opset)]


def export_translator(model: nn.Module, out: Path, opset: int = OPSET) -> list[Path]:
    """``encoder.onnx`` and ``decoder_step.onnx`` in ``out`` from a Translator (float32)."""
    _check_exportable(model.encoder)
    src, src_lengths = _example_ids(2, 7)
    encoder = EncoderGraph(model)
    source_axes = {0: "batch", 1: "src_len"}
    state_axes = {"hidden": {1: "batch"}, "attentional": {0: "batch"}}
    written = [_export(encoder, (src, src_lengths), out / "encoder.onnx",
                       {"src": source_axes, "src_lengths": {0: "batch"}},
                       {"values": source_axes, "keys": source_axes, "mask": source_axes, **state_axes}, opset)]
    with torch.no_grad():
        values, keys, mask, hidden, attentional = encoder.eval()(src, src_lengths)
    prev_tokens = torch.tensor([2, 5])
    written.append(_export(
        DecoderStepGraph(model), (prev_tokens, hidden, attentional, values, keys, mask), out / "decoder_step.onnx",
        {"prev_tokens": {0: "batch"}, **state_axes, "values": source_axes, "keys": source_axes, "mask": source_axes},
        {"log_probs": {0: "batch"}, "next_hidden": {1: "batch"}, "next_attentional": {0: "batch"},
         "attention": source_axes}, opset))
    return written


def export_tagger(model: nn.Module, out: Path, opset: int = OPSET) -> list[Path]:
    """``tagger.onnx`` (the emissions) in ``out`` from a SequenceTagger (float32), and for a CRF tagger its
    transition, start and end scores in ``crf.json``: decoding (Viterbi) runs outside the graph."""
    _check_exportable(model.encoder)
    input_ids, lengths = _example_ids(2, 7)
    word_lengths = torch.tensor([1, 3, 5, 2, 4, 1, 3])  # characters per word, the longest 5; the rest padding
    char_ids = (torch.arange(5) < word_lengths.unsqueeze(1)) * torch.arange(5).add(4)  # (7, 5)
    char_ids = char_ids.repeat(2, 1, 1) * (input_ids != 0).unsqueeze(-1)  # (2, 7, 5), none at padded words
    packed, model.encoder.packed = model.encoder.packed, "never"  # a graph has no PackedSequence; same numbers
    try:
        written = [_export(TaggerGraph(model), (input_ids, char_ids, lengths), out / "tagger.onnx",
                           {"input_ids": {0: "batch", 1: "length"}, "char_ids": {0: "batch", 1: "length", 2: "chars"},
                            "lengths": {0: "batch"}}, {"emissions": {0: "batch", 1: "length"}}, opset)]
    finally:
        model.encoder.packed = packed
    if model.crf is not None:
        scores = {name: getattr(model.crf, name).detach().float().tolist() for name in ("transitions", "start", "end")}
        (out / CRF_FILE).write_text(json.dumps(scores), encoding="utf-8")
        written.append(out / CRF_FILE)
    return written


# What onnxruntime's dynamic quantization turns into int8 kernels: LSTM -> DynamicQuantizeLSTM, MatMul with a
# constant weight (every Linear: it first rewrites Gemm as MatMul + Add) -> DynamicQuantizeLinear + MatMulInteger.
# It has no int8 GRU or RNN: those stay float32. Embedding tables (Gather) stay float32 too: a lookup gains no
# speed from int8, only a 4x smaller file, for rounding every vector.
INT8_OPS = ("LSTM", "MatMul")


class _DropPreprocessAdvice(logging.Filter):
    """quantize_dynamic advises (on the root logger) running its shape-inference pre-processing first; our graphs
    quantize the same without it (every weight is a constant initializer), so the advice is noise for a user."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Please consider to run pre-processing")


def quantize_int8(path: Path) -> Path:
    """Rewrite the graph at ``path`` in place with dynamic int8 quantization (``onnxruntime.quantization.
    quantize_dynamic``, :data:`INT8_OPS`): int8 weights (per output channel for an LSTM, per tensor for a
    MatMul), activations quantized to uint8 on the fly at every call. onnxruntime's int8 GEMMs use VNNI where the
    CPU has it; on a CPU without VNNI, loading the graph converts int8 weights that could overflow AVX2's 16-bit
    u8 x s8 products to uint8 (its Avx2WeightS8ToU8Transformer), so one file serves both kinds of CPU."""
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise NlpRnnError("int8 export needs onnxruntime's quantization tools: pip install 'nlp-rnn[export]'") from None
    temp = path.with_name(path.name + ".int8.tmp")
    advice = _DropPreprocessAdvice()
    logging.getLogger().addFilter(advice)
    try:
        quantize_dynamic(path, temp, op_types_to_quantize=list(INT8_OPS), weight_type=QuantType.QInt8)
    finally:
        logging.getLogger().removeFilter(advice)
    temp.replace(path)
    return path
