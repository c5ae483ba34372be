"""ONNX export: ``nlp-rnn export RUN_DIR --format onnx``.

A classifier becomes one graph, ``classifier.onnx``: ``input_ids`` (batch, length) int64 and ``lengths``
(batch,) int64 -> ``logits`` (batch, labels), both axes dynamic. A translator becomes two, because a decode
loop with a data-dependent length cannot be one graph:

- ``encoder.onnx``: ``src``, ``src_lengths`` -> ``values``, ``keys``, ``mask`` and the decoder's initial
  ``hidden`` and ``attentional`` state (``Translator.encode``);
- ``decoder_step.onnx``: ``prev_tokens`` plus that state and source -> ``log_probs`` (batch, vocab), the next
  ``hidden`` and ``attentional``, and ``attention`` (batch, src_len) (``Translator.decode_step``).

The search loop runs outside the graphs (``nlp_rnn.onnx_inference`` runs greedy and beam search, the ones in
:mod:`nlp_rnn.search`, over them on onnxruntime). A tagger
becomes ``tagger.onnx``: ``input_ids`` (batch, length), ``char_ids`` (batch, length, chars) and ``lengths`` ->
``emissions`` (batch, length, tags), every axis dynamic; a CRF's transition, start and end scores go to
``crf.json`` and the tag names and IOB2 masks to the manifest, so Viterbi runs beside the graph, in numpy. The
export folder also holds ``config.yaml`` and the tokenizer file(s), so it is self-contained.

We use torch's TorchScript-based exporter (``dynamo=False``): it maps ``nn.LSTM``/``nn.GRU`` to ONNX's own
LSTM/GRU operators with a dynamic time axis, whereas the ``torch.export``-based one (torch 2.13) unrolls the
recurrence and fixes the sequence length to the example's.

``--int8`` (``export_run(..., int8=True)``) writes the same graphs with dynamic int8 weights
(:func:`nlp_rnn.onnx_graphs.quantize_int8`: LSTM and every Linear; GRU, RNN and embeddings stay float32), and
``"int8": true`` in ``export.json``; ``load_onnx`` runs them as it runs the float ones.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from nlp_rnn import checkpoint as ckpt
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.onnx_graphs import (  # noqa: F401  (public names of this module since it was written)
    OPSET,
    ClassifierGraph,
    DecoderStepGraph,
    EncoderGraph,
    export_classifier,
    export_translator,
    quantize_int8,
)
from nlp_rnn.onnx_inference import MANIFEST
from nlp_rnn.predictor import load
from nlp_rnn.tokenization import BOS_ID, EOS_ID, PAD_ID

FORMATS = ("onnx",)


def export_run(run_dir: str | Path, out: str | Path | None = None, fmt: str = "onnx", opset: int = OPSET,
               force: bool = False, int8: bool = False) -> list[Path]:
    """Export a run folder's model; returns the files written to ``out`` (default RUN_DIR/onnx). ``int8``: the
    graphs with dynamic int8 weights (:func:`nlp_rnn.onnx_graphs.quantize_int8`)."""
    if fmt not in FORMATS:
        raise NlpRnnError(f"unknown export format {fmt!r}; available: {', '.join(FORMATS)}")
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise NlpRnnError("ONNX export needs the onnx package: pip install 'nlp-rnn[export]'") from None
    run = ckpt.RunFolder(run_dir)
    if run.ensemble_members():
        raise NlpRnnError(f"{run_dir} is an ensemble; ONNX export takes one run (export a member in "
                          f"{run / run.ENSEMBLE})")
    predictor = load(run.path)
    task = predictor.task
    predictor.model.float()  # fp16-packed weights export as float32: onnxruntime's CPU kernels want it
    out = Path(out) if out is not None else run.onnx
    if out.exists() and any(out.iterdir()) and not force:
        raise NlpRnnError(f"{out} is not empty (pass --force to overwrite)")
    out.mkdir(parents=True, exist_ok=True)
    written = task.export_onnx(predictor.model, out, opset)
    if int8:
        for graph in written:
            if graph.suffix == ".onnx":
                quantize_int8(graph)
    tokenizers = task.tokenizer_files(predictor.config)
    for name in [ckpt.CONFIG_FILE, *tokenizers]:
        shutil.copyfile(run / name, out / name)
        written.append(out / name)
    manifest = {"format": "onnx", "opset": opset, "task": task.name, "runner": task.onnx_runner,
                "tokenizers": tokenizers, "graphs": [p.name for p in written if p.suffix == ".onnx"],
                "int8": int8, "source": str(run), "special_ids": {"pad": PAD_ID, "bos": BOS_ID, "eos": EOS_ID},
                **task.onnx_manifest()}
    ckpt.write_json(out / MANIFEST, manifest)
    return [*written, out / MANIFEST]
