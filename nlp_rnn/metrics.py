"""Classification metrics: accuracy, macro-F1, per-class precision/recall/F1, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def confusion_matrix(predictions: Sequence[int], labels: Sequence[int], num_classes: int) -> list[list[int]]:
    """Rows: true class, columns: predicted class."""
    matrix = torch.zeros(num_classes, num_classes, dtype=torch.long)
    index = torch.as_tensor(labels, dtype=torch.long) * num_classes + torch.as_tensor(predictions, dtype=torch.long)
    matrix.view(-1).index_add_(0, index, torch.ones_like(index))
    return matrix.tolist()


def classification_report(predictions: Sequence[int], labels: Sequence[int], label_names: Sequence[str]) -> dict:
    matrix = confusion_matrix(predictions, labels, len(label_names))
    total = sum(map(sum, matrix))
    correct = sum(matrix[i][i] for i in range(len(label_names)))
    per_class = {}
    for i, name in enumerate(label_names):
        true_positive = matrix[i][i]
        predicted = sum(row[i] for row in matrix)
        actual = sum(matrix[i])
        precision = true_positive / predicted if predicted else 0.0
        recall = true_positive / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
    return {
        "accuracy": correct / total if total else 0.0,
        "macro_f1": sum(c["f1"] for c in per_class.values()) / len(per_class),
        "per_class": per_class,
        "confusion_matrix": matrix,
        "labels": list(label_names),
        "num_examples": total,
    }
