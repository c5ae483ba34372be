"""Tasks as plugins: the registry, no task switch outside nlp_rnn/tasks/, and a user's own task and cell, each
one file, trained, evaluated, predicted and packed through the ``nlp-rnn`` command line without a package edit.

This file is itself the plugin module of the toy task: ``nlp-rnn --plugin tests/test_tasks.py train ...``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import nlp_rnn
from nlp_rnn.batching import Collator, EncodedDataset
from nlp_rnn.config import ConfigError, config_from_dict
from nlp_rnn.tasks import TASKS, Task, get_task, register_task
from nlp_rnn.tasks.base import has_text
from nlp_rnn.tokenization import PAD_ID, encode_texts, require_tokens, train_tokenizer

PACKAGE = Path(nlp_rnn.__file__).resolve().parent
THIS_FILE = Path(__file__).resolve()


# --- the toy task: how long is a review? (short / medium / long, from its word count) ----------------------


@dataclass(frozen=True)
class BagConfig:
    """The toy task's ``model:`` section."""

    embedding_dim: int = 16


class BagOfWords(nn.Module):
    """Mean of the word embeddings -> linear: enough to count words."""

    def __init__(self, config: BagConfig, vocab_size: int, num_labels: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, config.embedding_dim, padding_idx=PAD_ID)
        self.head = nn.Linear(config.embedding_dim + 2, num_labels)

    def forward(self, batch, targets=None):
        mask = batch.mask.unsqueeze(-1).float()  # (batch, len, 1)
        mean = (self.embedding(batch.input_ids) * mask).sum(1) / mask.sum(1)  # (batch, dim)
        length = batch.lengths.to(mean.device, mean.dtype).unsqueeze(1).log()  # (batch, 1)
        logits = self.head(torch.cat([mean, length, length**2], dim=1))
        loss = None if targets is None else nn.functional.cross_entropy(logits, targets)
        return logits, loss


class BucketPredictor:
    def __init__(self, task: LengthBucketTask, model: nn.Module, run_dir: Path) -> None:
        self.task, self.config, self.model, self.run_dir = task, task.config, model.eval(), run_dir
        self.device = next(model.parameters()).device

    def predict(self, texts: list[str]) -> list[dict]:
        ids = self.task.ids(texts)
        require_tokens(ids)
        batch = self.task.collate([{"input_ids": row} for row in ids]).to(self.device)
        with torch.inference_mode():
            probabilities = self.model(batch)[0].softmax(-1).tolist()
        return [{"bucket": LengthBucketTask.BUCKETS[max(range(3), key=row.__getitem__)], "scores": row}
                for row in probabilities]


@register_task("length_bucket")
class LengthBucketTask(Task):
    BUCKETS = ("short", "medium", "long")
    model_config = BagConfig
    metrics = ("accuracy", "loss")
    logged = ("loss", "accuracy")
    kept = ("loss", "accuracy", "num_examples")

    @classmethod
    def columns(cls, data):
        return (data.text_column,)

    @classmethod
    def keep_row(cls, row, columns):
        return has_text(row[columns[0]])

    @classmethod
    def train_tokenizers(cls, config, train):
        return [train_tokenizer(train[config.data.text_column], config.tokenizer)]

    @classmethod
    def bucket(cls, text: str) -> int:
        words = len(text.split())
        return 0 if words < 12 else 1 if words < 24 else 2

    def ids(self, texts: list[str]) -> list[list[int]]:
        return encode_texts(self.tokenizers[0], [str(t) for t in texts], self.config.data.max_length)

    def encode(self, split):
        texts = split[self.config.data.text_column]
        ids = self.ids(texts)
        keep = [i for i, row in enumerate(ids) if row]
        return EncodedDataset([ids[i] for i in keep], [self.bucket(texts[i]) for i in keep])

    @property
    def collate(self):
        return Collator(PAD_ID)

    def build_model(self):
        return BagOfWords(self.config.model, self.tokenizers[0].get_vocab_size(), len(self.BUCKETS))

    def forward(self, model, batch, step, total_steps):
        logits, loss = model(batch, targets=batch.labels)
        return loss, int((logits.argmax(-1) == batch.labels).sum()), len(batch.labels)

    def evaluate(self, model, data, device, batch_size, beam_size=None):
        model.eval()
        batch = self.collate([data[i] for i in range(len(data))]).to(device)
        with torch.no_grad():
            logits, loss = model(batch, targets=batch.labels)
        model.train()
        accuracy = float((logits.argmax(-1) == batch.labels).float().mean())
        return {"loss": float(loss), "accuracy": accuracy, "num_examples": len(data)}

    def predictor(self, model, run_dir, explain_model=None):
        return BucketPredictor(self, model, run_dir)

    def predict(self, predictor, texts, beam_size=None, n_best=1):
        return predictor.predict(texts)

    def prediction_line(self, result):
        return result["bucket"]


# --- the tests ---------------------------------------------------------------------------------------------


def test_builtin_tasks_are_registered_and_own_their_config_section():
    from nlp_rnn.config import ModelConfig, TranslatorConfig

    assert {"classification", "translation", "language_model"} <= set(TASKS)
    assert get_task("translation").model_config is TranslatorConfig
    assert get_task("language_model").model_config is ModelConfig
    assert isinstance(config_from_dict({"task": "length_bucket"}).model, BagConfig)  # this file registered it
    with pytest.raises(nlp_rnn.NlpRnnError, match="'nope' is not registered"):
        get_task("nope")
    with pytest.raises(ConfigError, match="train.metric: 'bleu' does not apply to length_bucket"):
        config_from_dict({"task": "length_bucket", "train": {"metric": "bleu"}})


# A task switch: comparing a task name, or telling models / predictors apart by their type or attributes.
SWITCHES = [
    re.compile(r"\.task\s*(==|!=|in\b)"),
    re.compile(r"[\"'](classification|translation|language_model)[\"']\s*(==|!=)"),
    re.compile(r"(==|!=|in \(?)\s*[\"'](classification|translation|language_model)[\"']"),
    re.compile(r"isinstance\(\s*(predictor|model|self\.model)\b"),
    re.compile(r"isinstance\([^)]*(Predictor|Classifier|Translator|BidirectionalLM)\b"),
    re.compile(r"hasattr\(\s*(model|predictor)\b"),
]


def test_no_code_outside_the_tasks_package_branches_on_the_task():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if PACKAGE / "tasks" in path.parents:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if any(pattern.search(line) for pattern in SWITCHES):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert not found, "task switches outside nlp_rnn/tasks/:\n" + "\n".join(found)


def test_the_switch_patterns_find_what_they_look_for():
    samples = ['if config.task == "translation":', 'if isinstance(predictor, TranslationPredictor):',
               'if hasattr(model, "decoder"):', 'kind = "classification" if x else y == "translation"']
    assert all(any(p.search(line) for p in SWITCHES) for line in samples)


def cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(THIS_FILE.parents[1])}
    return subprocess.run([sys.executable, "-m", "nlp_rnn", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, check=False)


@pytest.mark.slow
def test_a_users_task_in_one_file_trains_evaluates_predicts_and_packs(tmp_path):
    config = tmp_path / "buckets.yaml"
    config.write_text(yaml.safe_dump({
        "task": "length_bucket",
        "data": {"dataset": "cornell-movie-review-data/rotten_tomatoes", "validation_split": "validation",
                 "max_length": 128, "max_train_examples": 1500, "max_eval_examples": 200},
        "tokenizer": {"vocab_size": 2000},
        "train": {"epochs": 8, "batch_size": 32, "lr": 0.05, "progress": False, "num_threads": 1},
    }))
    run = tmp_path / "run"
    trained = cli("--plugin", str(THIS_FILE), "train", str(config), "--out", str(run))
    assert trained.returncode == 0, trained.stderr
    assert str(THIS_FILE) in yaml.safe_load((run / "config.yaml").read_text())["plugins"]  # recorded
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["metric"] == "accuracy" and metrics["validation"]["accuracy"] > 0.5  # 3 buckets: chance 1/3

    # evaluate and predict in new processes, without --plugin: the run's config names it
    evaluated = cli("evaluate", str(run), "--split", "test", "--json", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["num_examples"] == 1066 and report["accuracy"] > 0.5
    predicted = cli("predict", str(run), "Bad.", " ".join(["a long review that goes on and on"] * 8), cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.split() == ["short", "long"]

    packed = cli("pack", str(run), str(tmp_path / "shipped"), cwd=tmp_path)
    assert packed.returncode == 0, packed.stderr
    card = (tmp_path / "shipped" / "README.md").read_text()
    assert "length_bucket" in card and "--plugin" in card  # the command that trained it
    assert cli("predict", str(tmp_path / "shipped"), "Bad.").stdout.split() == ["short"]


MY_CELLS = '''
import torch
from torch import nn
from nlp_rnn.cells import RecurrentCell, register_cell


@register_cell("user_tanh")
class UserTanhCell(RecurrentCell):
    def __init__(self, input_size, hidden_size):
        super().__init__(input_size, hidden_size)
        self.input_proj = nn.Linear(input_size, hidden_size)
        self.hidden_proj = nn.Linear(hidden_size, hidden_size, bias=False)

    def project_input(self, inputs):
        return self.input_proj(inputs)

    def forward(self, projected_t, state):
        (h,) = state
        h = torch.tanh(projected_t + self.hidden_proj(h))
        return h, (h,)
'''


@pytest.mark.slow
def test_a_users_cell_module_trains_and_loads(tmp_path):
    (tmp_path / "my_cells.py").write_text(MY_CELLS)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"dataset": "cornell-movie-review-data/rotten_tomatoes", "max_length": 32,
                 "max_train_examples": 64, "max_eval_examples": 16},
        "tokenizer": {"vocab_size": 300}, "model": {"cell": "user_tanh", "embedding_dim": 8, "hidden_size": 8},
        "train": {"epochs": 1, "batch_size": 16, "progress": False, "num_threads": 1}}))
    without = cli("train", str(config), "--out", str(tmp_path / "refused"), cwd=tmp_path)
    assert without.returncode == 2 and "'user_tanh' is not one of" in without.stderr  # one line, no traceback
    trained = cli("train", str(config), "--plugin", "my_cells", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    # a new process, in the run's folder: nlp_rnn.load imports my_cells from the config it recorded
    code = ("import nlp_rnn, sys; p = nlp_rnn.load('.'); print(p.predict(['A fine film.'])[0]['label'], "
            "type(p.model.encoder.layers[0][0].cell).__module__)")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path / "run",
                            env=env, check=False)
    assert loaded.returncode == 0, loaded.stderr
    label, module = loaded.stdout.split()
    assert label in ("neg", "pos") and module == "my_cells"


def test_a_plugin_that_cannot_be_imported_is_one_line(tmp_path):
    result = cli("--plugin", "no_such_module_here", "predict", str(tmp_path), "hi")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "plugin 'no_such_module_here': cannot import it" in result.stderr
