"""Knowledge distillation on unlabelled text (Hinton et al. 2015): the soft cross-entropy against torch's own
cross-entropy with probability targets, its gradient, the cache of a teacher's probabilities, the config checks,
soft labels through the collator and the task's loss, and a tiny real IMDB student of the shipped classifier that
trains, resumes exactly and says on its card what it learnt from."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nlp_rnn
from nlp_rnn import checkpoint as ckpt
from nlp_rnn.batching import Collator, EncodedDataset
from nlp_rnn.config import ConfigError
from nlp_rnn.data import load_unlabelled
from nlp_rnn.distillation import cached_probabilities, soft_cross_entropy, teacher_fingerprint
from nlp_rnn.errors import NlpRnnError
from tests.tiny import assert_resumed_run_matches, tiny_config

SHIPPED = Path(__file__).resolve().parents[1] / "demo" / "models" / "sentiment-imdb"
DISTIL = {"distillation": {"teacher": str(SHIPPED), "unlabelled_batch_size": 16}, "epochs": 1, "batch_size": 16}
UNLABELLED = {"unlabelled_split": "unsupervised", "max_unlabelled_examples": 64, "max_train_examples": 128}


@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
def test_the_soft_cross_entropy_is_torchs_cross_entropy_with_probability_targets(temperature):
    torch.manual_seed(0)
    logits, teacher = torch.randn(5, 3), torch.softmax(torch.randn(5, 3), -1)
    targets = torch.softmax(teacher.log() / temperature, -1)  # the teacher at temperature T
    expected = F.cross_entropy(logits / temperature, targets) * temperature ** 2
    torch.testing.assert_close(soft_cross_entropy(logits, teacher, temperature), expected)
    one_hot = F.one_hot(torch.tensor([0, 2, 1, 1, 0]), 3).float()
    torch.testing.assert_close(soft_cross_entropy(logits, one_hot), F.cross_entropy(logits, one_hot.argmax(-1)))


def test_its_gradient_moves_the_students_probabilities_toward_the_teachers():
    torch.manual_seed(1)
    logits, teacher = torch.randn(4, 2, requires_grad=True), torch.softmax(torch.randn(4, 2), -1)
    soft_cross_entropy(logits, teacher).backward()
    torch.testing.assert_close(logits.grad, (torch.softmax(logits.detach(), -1) - teacher) / 4)  # (p - q) / batch
    student = logits.detach().clone().requires_grad_()
    with torch.no_grad():
        before = soft_cross_entropy(student, teacher)
    soft_cross_entropy(student, teacher).backward()
    with torch.no_grad():
        assert soft_cross_entropy(student - 0.1 * student.grad, teacher) < before


def test_a_teachers_probabilities_are_computed_once_per_key_and_written_whole(tmp_path):
    calls = []

    def compute(value: float):
        def run():
            calls.append(value)
            return np.full((3, 2), value)
        return run

    first = cached_probabilities(tmp_path, ("a", 1), compute(0.25))
    again = cached_probabilities(tmp_path, ("a", 1), compute(0.75))  # read back, not computed
    other = cached_probabilities(tmp_path, ("a", 2), compute(0.75))
    assert calls == [0.25, 0.75] and first.dtype == np.float32
    assert np.array_equal(first, again) and float(other[0, 0]) == 0.75
    assert not [p for p in (tmp_path / "teacher").iterdir() if p.name.endswith(".tmp")]

    def fails():
        raise RuntimeError("killed while scoring")

    with pytest.raises(RuntimeError):
        cached_probabilities(tmp_path, ("b",), fails)
    assert len(list((tmp_path / "teacher").iterdir())) == 2  # nothing left that a later run would trust
    assert cached_probabilities(None, ("a", 1), compute(0.5))[0, 0] == 0.5  # no cache: computed


def test_a_recalibrated_teacher_is_another_teacher(tmp_path):
    for name in ("model.safetensors", "config.yaml", "calibration.json"):
        (tmp_path / name).write_bytes((SHIPPED / name).read_bytes())
    before = teacher_fingerprint([tmp_path])
    assert before == teacher_fingerprint([SHIPPED])
    (tmp_path / "calibration.json").write_text(json.dumps({"temperature": 2.0}))
    assert teacher_fingerprint([tmp_path]) != before


def test_soft_labels_collate_to_a_float_matrix_and_class_ids_to_integers():
    soft = Collator(0)([{"input_ids": [1, 2], "label": [0.25, 0.75]}, {"input_ids": [3], "label": [1.0, 0.0]}])
    assert soft.labels.dtype == torch.float32 and soft.labels.tolist() == [[0.25, 0.75], [1.0, 0.0]]
    hard = Collator(0)([{"input_ids": [1], "label": 1}])
    assert hard.labels.dtype == torch.long


@pytest.mark.parametrize(("data", "train", "message"), [
    ({}, {"distillation": {"teacher": "runs/t"}}, "train.distillation.teacher: the teacher labels the texts"),
    ({"unlabelled_split": "unsupervised"}, {"distillation": {"teacher": "runs/t", "temperature": 0.0}},
     "train.distillation.temperature: must be > 0"),
    ({"unlabelled_split": "test"}, {"distillation": {"teacher": "runs/t"}}, "'test' is a split the model is scored"),
    ({"unlabelled_split": "unsupervised"}, {}, "read only by virtual adversarial training or distillation"),
    ({"unlabelled_split": "unsupervised"}, {"distillation": {"teacher": "runs/t", "unlabelled_batch_size": 8},
                                            "virtual_adversarial": {"epsilon": 1.0, "unlabelled_batch_size": 4}},
     "both read the same unlabelled batch"),
    ({"unlabelled_sentences": True}, {}, "data.unlabelled_sentences: describes data.unlabelled_split, which is not"),
    ({"unlabelled_dataset": "my/corpus"}, {}, "data.unlabelled_dataset: describes data.unlabelled_split"),
])
def test_bad_distillation_settings_are_one_clear_error(data, train, message):
    with pytest.raises(ConfigError, match=message):
        tiny_config(data=data, train=train)


def test_distillation_is_read_by_classifiers_only():
    from nlp_rnn.config import config_from_dict

    with pytest.raises(ConfigError, match="train.distillation: the language_model task does not read it"):
        config_from_dict({"task": "language_model", "data": {"dataset": "stanfordnlp/imdb"},
                          "train": {"distillation": {"teacher": "runs/t"}}})


def test_the_loss_is_the_labelled_cross_entropy_plus_the_weighted_soft_cross_entropy():
    from nlp_rnn.tasks import ClassificationTask

    config = tiny_config(data=UNLABELLED, train={**DISTIL, "distillation": {**DISTIL["distillation"], "weight": 0.5}})
    task, data = ClassificationTask.for_training(config)
    model = task.build_model().eval()  # no dropout: both sides see the same logits
    collate = task.collate
    batch = collate([data.train[i] for i in range(8)])
    unlabelled = task.unlabelled.batch(3, torch.device("cpu"))
    assert unlabelled.labels.shape == (16, 2) and torch.allclose(unlabelled.labels.sum(-1), torch.ones(16))
    loss, correct, count = task.forward(model, batch, step=3, total_steps=10)
    logits, plain = model(batch, targets=batch.labels)
    expected = plain + 0.5 * soft_cross_entropy(model(unlabelled)[0], unlabelled.labels)
    torch.testing.assert_close(loss, expected)
    assert count == 8 and correct == int((logits.argmax(-1) == batch.labels).sum())


def test_the_teachers_soft_labels_are_its_calibrated_probabilities_in_row_order():
    from nlp_rnn.tasks import ClassificationTask
    from nlp_rnn.tasks.classification import teacher_probabilities

    config = tiny_config(data=UNLABELLED, train=DISTIL)
    split = load_unlabelled(config.data, "text")
    probabilities = teacher_probabilities(str(SHIPPED), split, config, ["neg", "pos"])
    texts = split["text"]
    shipped = nlp_rnn.load(SHIPPED).predict([texts[0], texts[17]])
    for row, prediction in zip((0, 17), shipped, strict=True):
        np.testing.assert_allclose(probabilities[row], [prediction["scores"]["neg"], prediction["scores"]["pos"]],
                                   atol=1e-5)
    with pytest.raises(NlpRnnError, match="teacher's labels"):
        teacher_probabilities(str(SHIPPED), split.select(range(4)), config, ["bad", "good"])
    with pytest.raises(NlpRnnError, match="is not a run folder"):
        teacher_probabilities("no/such/run", split, config, ["neg", "pos"])
    task, _ = ClassificationTask.for_training(config)
    kept = task.unlabelled.dataset
    assert len(kept) == len(split) and kept[17]["label"] == pytest.approx(probabilities[17].tolist())


def test_a_tiny_imdb_student_trains_resumes_exactly_and_names_its_teacher(tmp_path):
    from nlp_rnn.tasks import ClassificationTask

    config = tiny_config(data=UNLABELLED, train=DISTIL)
    assert_resumed_run_matches(config, tmp_path, stop_at=3)  # the unlabelled batch and its soft labels alike
    run = tmp_path / "whole"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["best_epoch"] == 1 and 0 <= metrics["validation"]["accuracy"] <= 1
    losses = [record["loss"] for record in map(json.loads, (run / "log.jsonl").read_text().splitlines())
              if record["kind"] == "step"]
    assert losses and all(loss == loss and loss > 0 for loss in losses)
    predictions = nlp_rnn.load(run).predict(["A wonderful, moving film.", "Dull."])
    assert [sorted(p["scores"]) for p in predictions] == [["neg", "pos"]] * 2
    task, _ = ClassificationTask.for_training(config, ckpt.load_tokenizers([ckpt.TOKENIZER_FILE], run))
    card = "\n".join(task.card(ckpt.RunFolder(run), json.loads(json.dumps(config.to_dict())), metrics))
    assert "Distilled from the teacher `sentiment-imdb` on the unlabelled split `unsupervised`" in card


def test_an_unlabelled_batch_without_distillation_carries_no_labels():
    from nlp_rnn.tasks import ClassificationTask

    config = tiny_config(data=UNLABELLED, train={"virtual_adversarial": {"epsilon": 1.0}})
    task, _ = ClassificationTask.for_training(config)
    assert isinstance(task.unlabelled.dataset, EncodedDataset) and task.unlabelled.dataset.labels is None


def test_a_student_learns_from_the_sentences_of_a_users_own_corpus(tmp_path):
    from nlp_rnn.tasks import ClassificationTask
    from nlp_rnn.tasks.classification import _perturbation_note

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("What a film. I wept twice!\nDull and long. Skip it.\n", encoding="utf-8")
    data = {**UNLABELLED, "unlabelled_dataset": str(corpus), "unlabelled_split": "train", "unlabelled_sentences": True}
    config = tiny_config(data=data, train=DISTIL)
    task, _ = ClassificationTask.for_training(config)
    kept = task.unlabelled.dataset
    shipped = nlp_rnn.load(SHIPPED).predict(["What a film.", "I wept twice!", "Dull and long.", "Skip it."])
    assert len(kept) == 4  # four sentences, each with the teacher's probabilities as its label
    for row, prediction in enumerate(shipped):
        assert kept[row]["label"] == pytest.approx([prediction["scores"]["neg"], prediction["scores"]["pos"]], abs=1e-5)
    assert (f"on the unlabelled split `train` of `{corpus}`, split into sentences (its calibrated probabilities"
            in _perturbation_note(config))
    # another corpus's splits are not the ones the model is scored on: its "test" may be read
    assert tiny_config(data={**data, "unlabelled_split": "test"}, train=DISTIL).data.unlabelled_split == "test"
