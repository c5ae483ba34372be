"""Classification metrics against a small example worked out by hand."""

import pytest

from nlp_rnn.metrics import classification_report, confusion_matrix

LABEL_NAMES = ["neg", "neu", "pos"]
#                 true: neg neg neg neu neu pos pos pos pos pos
LABELS = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2]
PREDICTIONS = [0, 1, 2, 1, 0, 2, 2, 1, 1, 2]


def test_confusion_matrix_rows_are_true_classes():
    assert confusion_matrix([1], [0], 2) == [[0, 1], [0, 0]]  # true 0 predicted 1: row 0, column 1
    assert confusion_matrix(PREDICTIONS, LABELS, 3) == [
        [1, 1, 1],  # neg: 1 right, 1 called neu, 1 called pos
        [1, 1, 0],  # neu: 1 called neg, 1 right
        [0, 2, 3],  # pos: 2 called neu, 3 right
    ]


def test_report_matches_hand_computation():
    report = classification_report(PREDICTIONS, LABELS, LABEL_NAMES)
    assert report["accuracy"] == pytest.approx(5 / 10)
    assert report["num_examples"] == 10
    assert report["labels"] == LABEL_NAMES
    assert report["confusion_matrix"] == confusion_matrix(PREDICTIONS, LABELS, 3)
    # precision = right / predicted as the class; recall = right / truly the class
    expected = {
        "neg": (1 / 2, 1 / 3, 3),  # predicted neg: 2 (1 right); true neg: 3
        "neu": (1 / 4, 1 / 2, 2),  # predicted neu: 4 (1 right); true neu: 2
        "pos": (3 / 4, 3 / 5, 5),  # predicted pos: 4 (3 right); true pos: 5
    }
    for name, (precision, recall, support) in expected.items():
        scores = report["per_class"][name]
        assert scores["precision"] == pytest.approx(precision)
        assert scores["recall"] == pytest.approx(recall)
        assert scores["f1"] == pytest.approx(2 * precision * recall / (precision + recall))
        assert scores["support"] == support
    assert report["macro_f1"] == pytest.approx((2 / 5 + 1 / 3 + 2 / 3) / 3)  # f1 = 2pr / (p + r) per class


def test_precision_and_recall_differ_when_errors_are_one_sided():
    # every true "b" is called "a": a's precision drops, b's recall is 0 and b is never predicted
    report = classification_report([0, 0, 0, 0], [0, 0, 1, 1], ["a", "b"])
    assert report["per_class"]["a"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 2}
    assert report["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert report["macro_f1"] == pytest.approx(1 / 3)
    assert report["accuracy"] == 0.5


def test_perfect_predictions():
    report = classification_report([1, 0, 1], [1, 0, 1], ["a", "b"])
    assert report["accuracy"] == report["macro_f1"] == 1.0
    assert report["confusion_matrix"] == [[1, 0], [0, 2]]
