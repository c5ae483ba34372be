"""A Keras-style ``model.summary()`` table: layer, output shape, parameters, totals.

PyTorch's LSTM counts 512 more parameters than Keras's for Embedding(1000, 64) -> LSTM(128): Keras
keeps one bias vector per gate (4 * 128), torch keeps two (``bias_ih`` and ``bias_hh``, cuDNN's layout),
so torch has 4 * (64 * 128 + 128 * 128 + 2 * 128) = 99,328 where Keras has 98,816. The two biases are
always added together, so the models compute the same functions.
"""

from __future__ import annotations

from torch import nn

Row = tuple[str, str, int]  # (layer name, output shape, parameters)


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(all, trainable) parameters of ``module``."""
    params = list(module.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def encoder_rows(encoder: nn.Module, prefix: str = "") -> list[Row]:
    """The rows of a :class:`~nlp_rnn.encoder.RecurrentEncoder`: its embedding, then one row per layer."""
    rows = [(f"{prefix}embedding (Embedding {encoder.embedding.num_embeddings}x{encoder.embedding.embedding_dim})",
             f"(batch, seq, {encoder.embedding.embedding_dim})", count_parameters(encoder.embedding)[0])]
    directions = "bidirectional " if encoder.num_directions == 2 else ""
    for index, layer in enumerate(encoder.layers):
        rows.append((f"{prefix}rnn_{index} ({directions}{encoder.cell} {encoder.hidden_size})",
                     f"(batch, seq, {encoder.output_size})", count_parameters(layer)[0]))
    return rows


def format_summary(model: nn.Module) -> str:
    """The table for any model that lists its own rows (``model.summary_rows()``)."""
    rows = model.summary_rows()
    total, trainable = count_parameters(model)
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
    """Gives a model Keras's ``model.summary()``; the model describes its layers in ``summary_rows()``."""

    def summary_rows(self) -> list[Row]:
        """(layer name, output shape, parameters), one per layer, in order; each model class writes its own."""
        raise NotImplementedError(f"{type(self).__name__} does not list its summary rows")

    def summary(self, print_fn=print) -> str:
        """Print (and return) a Keras-style table of layers, output shapes and parameter counts."""
        table = format_summary(self)
        if print_fn is not None:
            print_fn(table)
        return table
