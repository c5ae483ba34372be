"""Calibrated class probabilities: temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural
Networks"), expected calibration error over equal-width confidence bins, and a reliability diagram.

One scalar T > 0 divides the logits; it is fitted on held-out (validation) logits by minimising the negative
log-likelihood. Dividing by T never changes which class is the most probable, only how sure the model says it is.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F

BINS = 15  # Guo et al.'s ECE bins


def fit_temperature(logits: Tensor, labels: Tensor, max_iter: int = 200) -> float:
    """The T that minimises NLL(softmax(logits / T), labels): L-BFGS on log T (so T stays positive)."""
    logits, labels = logits.detach().float(), labels.detach().long()
    log_t = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    return temperature if math.isfinite(temperature) and temperature > 0 else 1.0


def nll(logits: Tensor, labels: Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats) of the labels under softmax(logits / T)."""
    return float(F.cross_entropy(logits.float() / temperature, labels.long()))


def reliability(probabilities: Tensor, labels: Tensor, bins: int = BINS) -> list[dict[str, float]]:
    """Per equal-width confidence bin (0, 1/bins], ...: its examples, mean confidence and accuracy."""
    confidence, predicted = probabilities.float().max(-1)
    correct = (predicted == labels.long()).float()
    edges = torch.linspace(0, 1, bins + 1)
    rows = []
    for low, high in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        inside = (confidence > low) & (confidence <= high)
        count = int(inside.sum())
        rows.append({"low": low, "high": high, "count": count,
                     "confidence": float(confidence[inside].mean()) if count else 0.0,
                     "accuracy": float(correct[inside].mean()) if count else 0.0})
    return rows


def expected_calibration_error(probabilities: Tensor, labels: Tensor, bins: int = BINS) -> float:
    """ECE: the examples-weighted mean |accuracy - confidence| over the bins (Naeini et al. 2015)."""
    rows = reliability(probabilities, labels, bins)
    total = sum(r["count"] for r in rows)
    return sum(r["count"] * abs(r["accuracy"] - r["confidence"]) for r in rows) / max(1, total)


def calibration_report(logits: Tensor, labels: Tensor, temperature: float) -> dict:
    """NLL and ECE before (T = 1) and after temperature scaling, and both reliability tables."""
    raw, scaled = logits.float().softmax(-1), (logits.float() / temperature).softmax(-1)
    return {"temperature": temperature,
            "nll_before": nll(logits, labels), "nll_after": nll(logits, labels, temperature),
            "ece_before": expected_calibration_error(raw, labels),
            "ece_after": expected_calibration_error(scaled, labels),
            "reliability_before": reliability(raw, labels), "reliability_after": reliability(scaled, labels)}


def plot_reliability(report: dict, path: str | Path) -> None:
    """The reliability diagram: accuracy against confidence per bin, before and after, with the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 5))
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    for key, name in (("reliability_before", "raw"), ("reliability_after", f"T = {report['temperature']:.2f}")):
        rows = [r for r in report[key] if r["count"]]
        ece = report["ece_before" if key.endswith("before") else "ece_after"]
        axes.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], marker="o",
                  label=f"{name} (ECE {ece:.4f})")
    axes.set_xlabel("confidence (probability of the predicted class)")
    axes.set_ylabel("accuracy")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.legend(loc="upper left")
    axes.set_title(f"Reliability ({BINS} bins)")
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
