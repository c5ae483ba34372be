"""Tasks as plugins: ``config.task`` names a registered :class:`Task`, which owns everything that differs.

Built in: ``classification`` (the sentiment classifier), ``translation`` (the GRU encoder-decoder) and
``language_model`` (pretraining the classifier's encoder). A user's task is one module::

    from nlp_rnn.tasks import register_task
    from nlp_rnn.tasks.classification import ClassificationTask

    @register_task("my_task")
    class MyTask(ClassificationTask):
        ...

imported with ``nlp-rnn --plugin my_module train ...`` (or ``import my_module`` before ``nlp_rnn.load``).
"""

from __future__ import annotations

import importlib
import pkgutil

from nlp_rnn.config import ADVERSARIAL_TASKS, register_task_config
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.tasks.base import Task, TrainingData

TASKS: dict[str, type[Task]] = {}


def register_task(name: str):
    """Class decorator: make ``task: <name>`` in a config mean this :class:`Task` subclass."""

    def register(cls: type[Task]) -> type[Task]:
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise TypeError(f"register_task({name!r}) decorates a Task subclass, not {cls!r}")
        cls.name = name
        TASKS[name] = cls
        register_task_config(name, cls.model_config, cls.metrics, _checks(cls), cls.data_config,
                             layered=cls.layered)
        (ADVERSARIAL_TASKS.add if cls.adversarial else ADVERSARIAL_TASKS.discard)(name)
        return cls

    return register


def _checks(cls: type[Task]):
    """The task's own config checks, then what every task must check alike."""

    def check(config, errors: list[str]) -> None:
        cls.check_config(config, errors)
        dropout = config.tokenizer.dropout
        if isinstance(dropout, (int, float)) and dropout > 0 and not cls.subword_dropout:
            errors.append(f"tokenizer.dropout: the {cls.name} task does not train with BPE-dropout")

    return check


def get_task(name: str) -> type[Task]:
    if name not in TASKS:
        raise NlpRnnError(f"task {name!r} is not registered (known: {', '.join(TASKS)}); a plugin task needs its "
                          "module imported: nlp-rnn --plugin MODULE ...")
    return TASKS[name]


def make_task(config, tokenizers=None):
    """The task of ``config`` with its training data loaded (kept for code written against the old module)."""
    task, data = get_task(config.task).for_training(config, tokenizers)
    task.train, task.validation = data.train, data.validation
    return task


def require(predictor, name: str, what: str) -> None:
    """One clear error when ``predictor`` (from ``nlp_rnn.load``) is not a ``name`` model, for ``what`` needs one."""
    if not isinstance(predictor.task, get_task(name)):  # a subclass of the task (a plugin's variant) will do
        raise NlpRnnError(f"{predictor.run_dir}: not a {name} run folder ({what} needs one; this is "
                          f"{predictor.task.name})")


# Every module of this package registers its task on import (as fairseq's tasks/ does): a new built-in task is
# one file here. The first three keep their order in the config's list of choices.
_FIRST = ("classification", "translation", "language_model")
for _module in [*_FIRST, *sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in (*_FIRST, "base"))]:
    importlib.import_module(f"{__name__}.{_module}")

from nlp_rnn.tasks import classification, language_model, translation  # noqa: E402
from nlp_rnn.tasks.classification import ClassificationTask, encode_classification  # noqa: E402
from nlp_rnn.tasks.language_model import LanguageModelTask  # noqa: E402
from nlp_rnn.tasks.translation import (  # noqa: E402
    TEACHER_FORCING_SCHEDULES,
    TranslationTask,
    encode_pairs,
    teacher_forcing_ratio,
)

__all__ = ["TASKS", "TEACHER_FORCING_SCHEDULES", "Task", "TrainingData", "ClassificationTask", "LanguageModelTask",
           "TranslationTask", "encode_classification", "encode_pairs", "get_task", "make_task", "register_task",
           "require", "teacher_forcing_ratio", "classification", "language_model", "translation"]
