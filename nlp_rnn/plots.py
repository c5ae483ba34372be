"""PNG plots for run folders: learning curves, confusion matrices, attention heatmaps (matplotlib, no display)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from nlp_rnn.io import atomic_write  # noqa: E402
from nlp_rnn.tokenization import subword_words  # noqa: E402


def save_figure(figure: Figure, path: str | Path) -> None:
    atomic_write(path, lambda temp: figure.savefig(temp, format="png", dpi=120, bbox_inches="tight"))
    plt.close(figure)


def plot_learning_curve(records: Sequence[dict], path: str | Path, metric: str = "accuracy") -> None:
    """Training loss per logging step and per epoch, validation loss and metric per epoch."""
    steps = [r for r in records if r.get("kind") == "step"]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    if steps:
        loss_axis.plot([r["step"] for r in steps], [r["loss"] for r in steps], alpha=0.4, label="train (steps)")
    if epochs:
        loss_axis.plot([r["step"] for r in epochs], [r["train_loss"] for r in epochs], "o-", label="train (epoch)")
        loss_axis.plot([r["step"] for r in epochs], [r["val_loss"] for r in epochs], "s-", label="validation")
        if metric == "accuracy":  # the same quantity on the training batches
            metric_axis.plot([r["epoch"] for r in epochs], [r["train_accuracy"] for r in epochs], "o-", label="train")
        metric_axis.plot([r["epoch"] for r in epochs], [r[f"val_{metric}"] for r in epochs], "s-",
                         label="validation")
    loss_axis.set(xlabel="step", ylabel="loss", title="loss")
    metric_axis.set(xlabel="epoch", ylabel=metric, title=metric)
    for axis in (loss_axis, metric_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    save_figure(figure, path)


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], label_names: Sequence[str], path: str | Path) -> None:
    size = max(3.0, 0.9 * len(label_names) + 1.5)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    peak = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            axis.text(j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black")
    axis.set_xticks(range(len(label_names)), label_names, rotation=45, ha="right")
    axis.set_yticks(range(len(label_names)), label_names)
    axis.set(xlabel="predicted", ylabel="true", title="confusion matrix")
    save_figure(figure, path)


def plot_class_scores(scores: dict[str, dict[str, float]], path: str | Path) -> None:
    """Precision, recall and F1 per class or entity type as grouped bars, with each class's support."""
    names = list(scores)
    figure, axis = plt.subplots(figsize=(max(4.0, 1.1 * len(names) + 2), 3.6))
    width = 0.27
    for offset, key in enumerate(("precision", "recall", "f1")):
        positions = [i + (offset - 1) * width for i in range(len(names))]
        bars = axis.bar(positions, [scores[n][key] for n in names], width, label=key)
        axis.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
    axis.set_xticks(range(len(names)), [f"{n}\n({scores[n].get('support', '')})" for n in names])
    axis.set(ylim=(0, 1.08), ylabel="score", title="scores per type (support)")
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize=8)
    axis.grid(axis="y", alpha=0.3)
    save_figure(figure, path)


ATTENTION_FONT_PT = 11  # the heatmap's word labels: at least 10 px high where the demo shows it, on a phone too


def attention_figure(src_tokens: Sequence[str], tgt_tokens: Sequence[str], weights) -> Figure:
    """A heatmap of attention weights: output words (rows) x source words (columns), with a colour scale.

    ``weights`` is (len(tgt_tokens), len(src_tokens)), a tensor, an array or nested lists. Subword pieces are
    merged into the words they spell (``subword_words``): a source word's column is the sum of its pieces' weights
    (the attention it received), an output word's row the mean of its pieces' rows (still a distribution). Up to
    20 source words the figure is 4.2 inches wide, so a phone (about 310 px for it) shows its labels at least 10 px
    high; longer sentences widen it. Evaluation saves it as PNG; the demo shows the same figure. The figure is not
    registered with pyplot, so threads can draw their own at the same time.
    """
    import numpy as np

    matrix = np.asarray(weights.tolist() if hasattr(weights, "tolist") else weights, dtype=float)
    if matrix.shape != (len(tgt_tokens), len(src_tokens)):
        raise ValueError(f"weights of shape {matrix.shape} for {len(tgt_tokens)} x {len(src_tokens)} tokens")
    src_words, src_groups = subword_words(src_tokens)
    tgt_words, tgt_groups = subword_words(tgt_tokens)
    columns = np.stack([matrix[:, group].sum(axis=1) for group in src_groups], axis=1)  # (tgt tokens, src words)
    words = np.stack([columns[group].mean(axis=0) for group in tgt_groups])  # (tgt words, src words)
    width = 4.2 + 0.2 * max(0, len(src_words) - 20)
    height = 2.2 + 0.22 * len(tgt_words)
    figure = Figure(figsize=(width, height), layout="constrained")
    axis = figure.subplots()
    image = axis.imshow(words, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    axis.set_xticks(range(len(src_words)), src_words, rotation=90, fontsize=ATTENTION_FONT_PT)
    axis.set_yticks(range(len(tgt_words)), tgt_words, fontsize=ATTENTION_FONT_PT)
    colours = figure.colorbar(image, ax=axis, location="top", fraction=0.04, pad=0.02, aspect=30)
    colours.set_label("attention weight (rows: output words; columns: source words)", fontsize=8)
    colours.ax.tick_params(labelsize=8)
    return figure


def plot_attention(src_tokens: Sequence[str], tgt_tokens: Sequence[str], weights, path: str | Path) -> None:
    save_figure(attention_figure(src_tokens, tgt_tokens, weights), path)


def plot_gradient_flow(results: dict, path: str | Path) -> None:
    """||dLoss/dh_t|| against the distance from the loss, log scale: one colour per cell, dashed at
    initialisation, solid after training (nlp_rnn.diagnostics)."""
    figure, axis = plt.subplots(figsize=(7, 4.2))
    distance = results["distance"]
    for index, (cell, entry) in enumerate(results["cells"].items()):
        colour = f"C{index}"
        axis.plot(distance, entry["init"], "--", color=colour, label=f"{cell}, initialisation")
        if "trained" in entry:
            axis.plot(distance, entry["trained"], "-", color=colour, label=f"{cell}, after {results['steps']} steps")
    axis.set_yscale("log")
    axis.set(xlabel="distance from the loss (time steps); a line that drops off the bottom underflowed float32",
             ylabel="mean ||dLoss/dh_t||",
             title=f"gradient flow: {results['dataset']}, {results['length']} tokens, loss on the last state")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8)
    save_figure(figure, path)


def plot_gradient_norms(results: dict, path: str | Path) -> None:
    """Histograms (log-spaced bins) of every step's global gradient norm before clipping, per cell: the run
    trained with clipping and the one trained without."""
    import numpy as np
    from matplotlib.ticker import NullFormatter

    cells = [(cell, entry) for cell, entry in results["cells"].items() if entry.get("grad_norms_clipped")]
    figure, axes = plt.subplots(1, max(1, len(cells)), figsize=(3.6 * max(1, len(cells)), 3.4), squeeze=False)
    for axis, (cell, entry) in zip(axes[0], cells, strict=False):
        values = entry["grad_norms_clipped"] + entry["grad_norms_unclipped"]
        positive = [v for v in values if v > 0] or [1.0]
        bins = np.geomspace(min(positive), max(positive) * 1.0001, 30)
        axis.hist(entry["grad_norms_unclipped"], bins=bins, alpha=0.6, label="no clipping")
        axis.hist(entry["grad_norms_clipped"], bins=bins, alpha=0.6, label=f"clip at {results['clip_norm']:g}")
        axis.axvline(results["clip_norm"], color="k", linewidth=0.8)
        axis.set_xscale("log")
        axis.xaxis.set_minor_formatter(NullFormatter())  # the minor labels overlap
        axis.set(title=cell, xlabel="global gradient norm (before clipping)", ylabel="steps")
        axis.legend(fontsize=7)
    save_figure(figure, path)
