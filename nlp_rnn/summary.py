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


def _encoder_rows(encoder: nn.Module, prefix: str = "") -> list[tuple[str, str, int]]:
    rows = [(f"{prefix}embedding (Embedding {encoder.embedding.num_embeddings}x{encoder.embedding.embedding_dim})",
             f"(batch, seq, {encoder.embedding.embedding_dim})", _count(encoder.embedding)[0])]
    directions = "bidirectional " if encoder.num_directions == 2 else ""
    for index, layer in enumerate(encoder.layers):
        rows.append((f"{prefix}rnn_{index} ({directions}{encoder.cell} {encoder.hidden_size})",
                     f"(batch, seq, {encoder.output_size})", _count(layer)[0]))
    return rows


def _translator_rows(model: nn.Module) -> list[tuple[str, str, int]]:
    decoder = model.decoder
    embedding, rnn = decoder.embedding, decoder.rnn
    rows = _encoder_rows(model.encoder, "encoder.")
    rows.append((f"bridge (Linear {model.bridge.in_features}->{model.bridge.out_features}, tanh)",
                 f"({rnn.num_layers}, batch, {rnn.hidden_size})", _count(model.bridge)[0]))
    rows.append((f"decoder.embedding (Embedding {embedding.num_embeddings}x{embedding.embedding_dim})",
                 f"(batch, tgt, {embedding.embedding_dim})", _count(embedding)[0]))
    rows.append((f"decoder.rnn ({rnn.num_layers} x GRU {rnn.input_size}->{rnn.hidden_size})",
                 f"(batch, tgt, {rnn.hidden_size})", _count(rnn)[0]))
    rows.append((f"decoder.attention ({model.config.attention})", f"(batch, tgt, {model.encoder.output_size})",
                 _count(decoder.attention)[0]))
    rows.append((f"decoder.combine (Linear {decoder.combine.in_features}->{decoder.combine.out_features}, tanh)",
                 f"(batch, tgt, {decoder.output_size})", _count(decoder.combine)[0]))
    tied = decoder.output.weight is embedding.weight
    rows.append((f"decoder.output (Linear {decoder.output.in_features}->{decoder.output.out_features}"
                 f"{', tied to decoder.embedding' if tied else ''})", f"(batch, tgt, {decoder.output.out_features})",
                 decoder.output.bias.numel() if tied else _count(decoder.output)[0]))
    return rows


def summary_rows(model: nn.Module) -> list[tuple[str, str, int]]:
    """(layer name, output shape, parameters) for a :class:`SentimentClassifier` or a :class:`Translator`."""
    if hasattr(model, "decoder"):
        return _translator_rows(model)
    rows = _encoder_rows(model.encoder)
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


class SummaryMixin:
    """Gives a model Keras's ``model.summary()``."""

    def summary(self, print_fn=print) -> str:
        """Print (and return) a Keras-style table of layers, output shapes and parameter counts."""
        table = format_summary(self)
        if print_fn is not None:
            print_fn(table)
        return table
