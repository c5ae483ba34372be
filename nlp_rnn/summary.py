"""A Keras-style ``model.summary()`` table: layer, output shape, parameters, totals.

PyTorch's LSTM counts 512 more parameters than Keras's for Embedding(1000, 64) -> LSTM(128): Keras
keeps one bias vector per gate (4 * 128), torch keeps two (``bias_ih`` and ``bias_hh``, cuDNN's layout),
so torch has 4 * (64 * 128 + 128 * 128 + 2 * 128) = 99,328 where Keras has 98,816. The two biases are
always added together, so the models compute the same functions.
"""

from __future__ import annotations

from torch import nn


def _count(module: nn.Module) -> tuple[int, int]:
    params = list(module.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def summary_rows(model: nn.Module) -> list[tuple[str, str, int]]:
    """(layer name, output shape, parameters) for a :class:`SentimentClassifier`."""
    encoder = model.encoder
    rows = [(f"embedding (Embedding {encoder.embedding.num_embeddings}x{encoder.embedding.embedding_dim})",
             f"(batch, seq, {encoder.embedding.embedding_dim})", _count(encoder.embedding)[0])]
    directions = "bidirectional " if encoder.num_directions == 2 else ""
    for index, layer in enumerate(encoder.layers):
        rows.append((f"rnn_{index} ({directions}{encoder.cell} {encoder.hidden_size})",
                     f"(batch, seq, {encoder.output_size})", _count(layer)[0]))
    rows.append((f"pooling ({model.pooling.kind})", f"(batch, {model.pooling.output_size})",
                 _count(model.pooling)[0]))
    rows.append(("dropout", f"(batch, {model.pooling.output_size})", 0))
    rows.append((f"head (Linear {model.head.in_features}->{model.head.out_features})",
                 f"(batch, {model.head.out_features})", _count(model.head)[0]))
    return rows


def format_summary(model: nn.Module) -> str:
    rows = summary_rows(model)
    total, trainable = _count(model)
    name_width = max(len("Layer (type)"), *(len(r[0]) for r in rows)) + 2
    shape_width = max(len("Output Shape"), *(len(r[1]) for r in rows)) + 2
    width = name_width + shape_width + 12
    lines = [f"Model: {type(model).__name__}", "=" * width,
             f"{'Layer (type)':<{name_width}}{'Output Shape':<{shape_width}}{'Param #':>12}", "=" * width]
    for name, shape, params in rows:
        lines.append(f"{name:<{name_width}}{shape:<{shape_width}}{params:>12,}")
    lines += ["=" * width, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
              f"Non-trainable params: {total - trainable:,}", "=" * width]
    return "\n".join(lines)
