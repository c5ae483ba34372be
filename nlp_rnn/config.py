"""Configuration: frozen dataclasses with every default written once, YAML holding only differences.

A YAML file (and ``--set section.key=value`` overrides) is checked against these dataclasses; every unknown
key and bad value is collected and reported together in one :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nlp_rnn.errors import NlpRnnError


class ConfigError(NlpRnnError):
    """All problems found in a configuration, one per line."""


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass


def _choice(default: str, *choices: str) -> Any:
    return field(default=default, metadata={"choices": choices})


def choices(section: type, key: str) -> tuple[str, ...]:
    """The valid values of a choice field, e.g. ``choices(ModelConfig, "pooling")``. These lists are the only
    place the names are written: the modules that implement them key their tables by exactly these names
    (tests compare the two), and an unknown name raises there instead of falling back to a default."""
    return {f.name: f for f in dataclasses.fields(section)}[key].metadata["choices"]


def _bounded(default: Any, low: float | None = None, high: float | None = None) -> Any:
    return field(default=default, metadata={"low": low, "high": high})


@dataclass(frozen=True)
class DataConfig:
    """Where the examples come from and how long they may be."""

    dataset: str = "stanfordnlp/imdb"  # hub id (resolved under $NLP_RNN_DATA_DIR when that mirror has it) or a folder
    config_name: str | None = None
    # Files instead of ``dataset``: split name -> a path, a glob or a list of them (``{train: a.csv, test: b.csv}``);
    # the format follows the extension (csv, tsv, json, jsonl, parquet, txt), as datasets reads a folder.
    data_files: dict[str, str | list[str]] | None = None
    text_column: str = "text"  # classification
    label_column: str = "label"  # classification
    source_column: str = "de"  # translation
    target_column: str = "en"  # translation
    train_split: str = "train"  # several joined by "+", as the hub writes it: "train+unsupervised"
    validation_split: str | None = None  # None: carve validation_fraction of train with split_seed
    test_split: str | None = "test"  # None: carve test_fraction of train with split_seed
    validation_fraction: float = _bounded(0.1, 0.0, 0.5)
    test_fraction: float = _bounded(0.05, 0.0, 0.5)
    split_seed: int = 1234
    # A treebank of phrases (SST: train lists every phrase of its sentences, each labelled): a carved validation
    # (and test) split takes whole sentences, the rows no other row contains, and train leaves out the phrases that
    # occur only inside them, so that no part of a held-out sentence is trained on. The fractions then count
    # sentences. Reads every row's contiguous word spans: for short texts, not for documents.
    carve_whole_sentences: bool = False
    max_length: int = _bounded(400, 1)  # tokens kept per text; translation: longer training pairs are dropped
    truncation: str = _choice("head_tail", "head", "tail", "head_tail")
    head_fraction: float = _bounded(0.25, 0.0, 1.0)  # share of max_length taken from the start (head_tail)
    detokenize_ptb: bool = False  # undo Penn Treebank tokenization ("does n't" -> "doesn't"; SST) to match raw text
    max_train_examples: int | None = _bounded(None, 1)  # for smoke tests and quick experiments
    max_eval_examples: int | None = _bounded(None, 1)
    # Encoded splits (and tokenizers trained on them) are cached as Arrow files here (nlp_rnn.encoded); None:
    # $NLP_RNN_CACHE_DIR, else ~/.cache/nlp_rnn. num_proc: processes that encode a split not yet cached.
    cache_dir: str | None = None
    num_proc: int = _bounded(1, 1)
    # -- unlabelled text for virtual adversarial training and distillation (issue 19; classification) -----------
    # Split(s) read for their text only (IMDB's "unsupervised"; several joined by "+"); null: none. Never the
    # validation or test split. max_unlabelled_examples: a fixed random sample of that many texts.
    unlabelled_split: str | None = None
    max_unlabelled_examples: int | None = _bounded(None, 1)
    # Where that split is read from: a hub id, a folder or one file (read as split "train"), as `dataset`; null:
    # `dataset` itself. unlabelled_column: its text column (null: text_column; a text file's is "text").
    # unlabelled_sentences: each text split into its sentences (a sentence-level task, SST-2, taught on a corpus
    # of whole reviews; nlp_rnn.data.split_sentences), after max_unlabelled_examples' sample.
    unlabelled_dataset: str | None = None
    unlabelled_column: str | None = None
    unlabelled_sentences: bool = False

    @property
    def unlabelled_elsewhere(self) -> bool:
        """Whether the unlabelled text comes from another corpus than the labelled examples (none of whose splits
        is scored)."""
        return self.unlabelled_dataset not in (None, self.dataset)

    @property
    def source(self) -> str:
        """What the examples are read from, for reports: the dataset, or the data files by split."""
        return describe_source(self.dataset, self.data_files)


def describe_source(dataset: str, data_files: dict[str, Any] | None) -> str:
    """``stanfordnlp/imdb``, or ``train: /data/train.csv; test: /data/test.csv`` for ``data.data_files``."""
    if not data_files:
        return dataset
    return "; ".join(f"{split}: {', '.join([paths] if isinstance(paths, str) else paths)}"
                     for split, paths in data_files.items())


@dataclass(frozen=True)
class TokenizerConfig:
    """A Hugging Face ``tokenizers`` model trained on the training split only."""

    type: str = _choice("word", "word", "bpe", "wordpiece", "unigram", "char")  # char: every character a token
    vocab_size: int = _bounded(30000, 8)
    min_frequency: int = _bounded(2, 1)
    lowercase: bool = True
    normalization: str = _choice("nfkc", "nfkc", "nfc", "nfd", "nfkd", "none")
    strip_html: bool = True  # IMDB's "<br />" tags become spaces
    joint: bool = True  # translation: one vocabulary for source and target (else one tokenizer each)
    # BPE-dropout (Provilkov et al. 2020), type bpe only: while encoding training text, each merge is skipped with
    # this probability, a new segmentation every epoch; validation, test and prediction text never (0: off)
    dropout: float = _bounded(0.0, 0.0, 0.9)


@dataclass(frozen=True)
class ModelConfig:
    """Embedding -> stacked recurrent encoder -> pooling -> dropout -> linear head."""

    cell: str = "lstm"  # rnn | lstm | gru | peephole_lstm | any name given to nlp_rnn.cells.register_cell
    embedding_dim: int = _bounded(128, 1)
    hidden_size: int = _bounded(128, 1)
    num_layers: int = _bounded(1, 1)
    bidirectional: bool = True
    dropout: float = _bounded(0.0, 0.0, 0.99)  # between stacked layers
    embedding_dropout: float = _bounded(0.0, 0.0, 0.99)
    pooling: str = _choice("max", "last", "mean", "max", "max_mean", "attention")
    output_dropout: float = _bounded(0.0, 0.0, 0.99)  # on the pooled features, before the head
    head_hidden_size: int = _bounded(0, 0)  # 0: one linear layer; n: ULMFiT's head, batch norm + n ReLU units
    packed: str = _choice("auto", "auto", "always", "never")  # auto: pack on CUDA (cuDNN), not on CPU
    init: str = _choice("torch", "torch", "keras")  # initial weights (nlp_rnn.initialisation)
    # -- AWD-LSTM's regularisers (Merity et al. 2018; nlp_rnn.dropout), all off in evaluation, no weights of their own
    weight_drop: float = _bounded(0.0, 0.0, 0.99)  # DropConnect on the hidden-to-hidden matrices, one mask per pass
    word_type_dropout: float = _bounded(0.0, 0.0, 0.99)  # whole word types (embedding rows) dropped, every occurrence
    locked_dropout: bool = False  # embedding_dropout, dropout and an LM's output_dropout: one mask per sequence


@dataclass(frozen=True)
class TranslatorConfig:
    """Bidirectional recurrent encoder -> bridge -> GRU decoder with attention (Bahdanau et al. 2015;
    Luong et al. 2015). ``bahdanau`` attends with the previous decoder state before the GRU step;
    ``luong_dot`` / ``luong_general`` attend with the new state after it."""

    encoder_cell: str = "gru"  # any cell of the shared recurrent encoder
    embedding_dim: int = _bounded(256, 1)  # source and target embeddings
    hidden_size: int = _bounded(256, 1)  # encoder, per direction
    num_layers: int = _bounded(1, 1)  # encoder layers
    decoder_hidden_size: int = _bounded(512, 1)
    decoder_layers: int = _bounded(1, 1)
    attention: str = _choice("bahdanau", "bahdanau", "luong_dot", "luong_general")
    attention_size: int = _bounded(256, 1)  # Bahdanau's scoring layer
    input_feeding: bool = False  # Luong: feed the previous attentional vector to the GRU
    tie_embeddings: bool = False  # target embedding = output projection (Press & Wolf 2017)
    dropout: float = _bounded(0.3, 0.0, 0.99)  # between stacked layers and before the output layer
    embedding_dropout: float = _bounded(0.3, 0.0, 0.99)
    packed: str = _choice("auto", "auto", "always", "never")


@dataclass(frozen=True)
class SearchConfig:
    """Decoding defaults for translation (evaluation, prediction, the demo); all can be overridden per call."""

    beam_size: int = _bounded(5, 1)
    length_penalty: float = _bounded(1.0, 0.0)  # GNMT alpha: score / ((5 + length) / 6) ** alpha
    max_length_ratio: float = _bounded(1.5, 0.1)  # output tokens at most ratio * source tokens + 5 ...
    max_output_length: int = _bounded(256, 1)  # ... and never more than this
    n_best: int = _bounded(1, 1)


# -- semi-supervised sentiment (issue 19): perturbations of the normalised word embeddings -------------------
# Miyato, Dai & Goodfellow 2017; implemented in nlp_rnn.adversarial, read by tasks whose class sets
# ``adversarial = True`` (classification). Either is on when its epsilon and weight are both > 0; then the model
# reads normalised embeddings (their eq. 1, frequencies from the training split).


@dataclass(frozen=True)
class AdversarialConfig:
    """``train.adversarial``: the loss again on the input moved by epsilon along the loss gradient."""

    epsilon: float = _bounded(0.0, 0.0)  # L2 norm of the perturbation, per example over the whole sequence; 0: off
    weight: float = _bounded(1.0, 0.0)  # the adversarial loss's weight beside the clean cross-entropy

    @property
    def on(self) -> bool:
        return _positive(self.epsilon) and _positive(self.weight)


@dataclass(frozen=True)
class VirtualAdversarialConfig:
    """``train.virtual_adversarial``: KL(p(.|x) || p(.|x + r_vadv)) on labelled and unlabelled batches."""

    epsilon: float = _bounded(0.0, 0.0)  # L2 norm of r_vadv, per example over the whole sequence; 0: off
    xi: float = _bounded(0.1, 0.0)  # norm of the random start of the power iteration (finite difference); > 0
    weight: float = _bounded(1.0, 0.0)  # the KL term's weight
    # rows of the unlabelled batch (data.unlabelled_split) drawn beside each labelled batch; null: train.batch_size
    unlabelled_batch_size: int | None = _bounded(None, 1)

    @property
    def on(self) -> bool:
        return _positive(self.epsilon) and _positive(self.weight)


@dataclass(frozen=True)
class DistillationConfig:
    """``train.distillation``: a trained classifier's calibrated probabilities on the unlabelled texts
    (data.unlabelled_split) as soft labels beside the labelled batches (Hinton et al. 2015; nlp_rnn.distillation)."""

    teacher: str | None = None  # a classifier's run folder or a packed ensemble (of the same labels); null: off
    weight: float = _bounded(1.0, 0.0)  # the soft cross-entropy's weight beside the labelled cross-entropy
    temperature: float = _bounded(1.0, 0.0)  # T: the teacher's probabilities softened (> 1) or sharpened (< 1); > 0
    # rows of the unlabelled batch drawn beside each labelled batch; null: train.batch_size
    unlabelled_batch_size: int | None = _bounded(None, 1)

    @property
    def on(self) -> bool:
        return bool(self.teacher) and _positive(self.weight)


def _positive(value: Any) -> bool:
    """A number > 0 (a value of the wrong type, already reported, is not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, schedule, stopping, logging and checkpoints."""

    seed: int = 0
    epochs: int = _bounded(10, 1)
    batch_size: int = _bounded(64, 1)
    max_tokens: int | None = _bounded(None, 1)  # token budget per batch (padded size); overrides batch_size
    bucket_size: int = _bounded(100, 1)  # batches per length bucket; 1 = no bucketing
    lr: float = _bounded(2e-3, 0.0)
    weight_decay: float = _bounded(0.01, 0.0)
    schedule: str = _choice("linear", "linear", "cosine", "constant", "plateau", "slanted_triangular")
    warmup_ratio: float = _bounded(0.05, 0.0, 1.0)  # share of all steps warming up (linear, cosine, constant)
    plateau_factor: float = _bounded(0.5, 0.0, 1.0)
    plateau_patience: int = _bounded(0, 0)
    clip_norm: float | None = _bounded(1.0, 0.0)
    label_smoothing: float = _bounded(0.0, 0.0, 1.0)
    init_from: str | None = None  # a run folder: start from its weights and reuse its tokenizer (transfer)
    freeze_embeddings: bool = False  # keep every embedding matrix fixed (e.g. pretrained through init_from)
    # -- ULMFiT fine-tuning (Howard & Ruder 2018), for tasks whose model is a stack of layer groups (classification,
    # language_model: embedding, each recurrent layer, the output layers)
    layer_lr_decay: float = _bounded(1.0, 1.0)  # discriminative rates: lr / layer_lr_decay ** depth below the top
    gradual_unfreezing: bool = False  # epoch 1 trains the top group only, each later epoch one more group below
    stlr_cut_frac: float = _bounded(0.1, 0.01, 0.99)  # schedule slanted_triangular: share of the steps rising ...
    stlr_ratio: float = _bounded(32.0, 1.0)  # ... from lr / stlr_ratio to lr, then the rest falling back to it
    # auto: the task's first metric; the valid names are every registered task's (nlp_rnn.tasks), checked per task
    metric: str = field(default="auto", metadata={"registry": "metrics"})
    teacher_forcing: float = _bounded(1.0, 0.0, 1.0)  # translation: chance of feeding the gold token
    teacher_forcing_schedule: str = _choice("constant", "constant", "linear", "inverse_sigmoid")
    teacher_forcing_final: float = _bounded(0.5, 0.0, 1.0)  # linear: ratio reached at the last step
    teacher_forcing_k: float = _bounded(1000.0, 1.0)  # inverse_sigmoid: k / (k + exp(step / k))
    # Language models: the share of each batch's predictions the training loss uses, drawn at random every step
    # (the encoder still reads every token; validation scores all). The softmax dominates a CPU step.
    lm_loss_fraction: float = _bounded(1.0, 0.01, 1.0)
    patience: int | None = _bounded(3, 1)  # epochs without improvement before stopping; null: never
    eval_batch_size: int = _bounded(256, 1)
    log_every: int = _bounded(50, 1)  # steps between log.jsonl records
    log_gradients: bool = False  # step records in log.jsonl also hold per-layer gradient (unclipped) and weight norms
    tensorboard: bool = False  # also write RUN/tensorboard/ event files (nlp_rnn.monitoring)
    tensorboard_every: int = _bounded(500, 1)  # steps between weight and gradient histograms in TensorBoard
    checkpoint_every: int = _bounded(500, 1)  # steps between resumable checkpoints (also every epoch)
    # the weights at the end of each of the last N epochs, in RUN/epochs/ (older ones deleted): what
    # ``nlp-rnn average RUN --last N`` averages; 0 keeps none
    keep_epoch_weights: int = _bounded(0, 0)
    device: str = _choice("auto", "auto", "cpu", "cuda")
    num_threads: int = _bounded(0, 0)  # 0: torch's default
    keep_freed_memory: bool = True  # CPU: malloc reuses freed buffers instead of unmapping them (nlp_rnn.runtime)
    amp: bool = True  # bf16 autocast where computed natively: CUDA; CPUs with AVX-512 BF16 or AMX (training only)
    progress: bool = True
    # semi-supervised sentiment (issue 19): adversarial and virtual adversarial training (sections above)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    virtual_adversarial: VirtualAdversarialConfig = field(default_factory=VirtualAdversarialConfig)
    distillation: DistillationConfig = field(default_factory=DistillationConfig)  # a teacher on unlabelled text

    @property
    def perturbs_embeddings(self) -> bool:
        """Adversarial or virtual adversarial training is on (the model then normalises its embeddings)."""
        return self.adversarial.on or self.virtual_adversarial.on

    @property
    def unlabelled_batch_size(self) -> int:
        """Rows of each unlabelled batch (distillation's setting, else VAT's, else ``batch_size``)."""
        return ((self.distillation.on and self.distillation.unlabelled_batch_size)
                or self.virtual_adversarial.unlabelled_batch_size or self.batch_size)


@dataclass(frozen=True)
class Config:
    """A whole experiment; ``task`` names a registered task (nlp_rnn.tasks), which picks the ``model`` section."""

    task: str = field(default="classification", metadata={"registry": "tasks"})
    plugins: list[str] = field(default_factory=list)  # modules imported first (a user's tasks, cells): nlp_rnn.plugins
    data: DataConfig = field(default_factory=DataConfig)  # a task may use a subclass with its own columns
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig | TranslatorConfig = field(default_factory=ModelConfig)  # the class follows ``task``
    train: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def metric(self) -> str:
        """The validation metric that picks the best checkpoint (``train.metric``, ``auto`` resolved: the task's
        first metric)."""
        if self.train.metric != "auto":
            return self.train.metric
        return TASK_METRICS[self.task][1]


# Filled by each task module (nlp_rnn.tasks.register_task) so this module imports nothing above it: a task's
# ``model:`` section class, its train.metric choices ("auto" first) and its semantic checks.
MODEL_CONFIGS: dict[str, type] = {}
DATA_CONFIGS: dict[str, type] = {}  # a task's ``data:`` section class when it reads columns of its own
TASK_METRICS: dict[str, tuple[str, ...]] = {}
TASK_CHECKS: dict[str, Callable[[Config, list[str]], None]] = {}
LAYERED_TASKS: set[str] = set()  # tasks whose model splits into layer groups: train.layer_lr_decay, gradual_unfreezing
ADVERSARIAL_TASKS: set[str] = set()  # tasks that read train.adversarial / virtual_adversarial (Task.adversarial)


def register_task_config(name: str, model_config: type, metrics: tuple[str, ...],
                         check: Callable[[Config, list[str]], None] | None = None,
                         data_config: type = DataConfig, layered: bool = False) -> None:
    """Make ``task: <name>`` valid: its model section, metrics (the first is what ``auto`` means), checks,
    data section (``DataConfig`` or a subclass adding the task's own keys) and whether its model splits into
    layer groups (ULMFiT's ``train.layer_lr_decay`` and ``train.gradual_unfreezing`` apply)."""
    if not metrics:
        raise ValueError(f"task {name!r} needs at least one metric")
    if not (isinstance(data_config, type) and issubclass(data_config, DataConfig)):
        raise TypeError(f"task {name!r}: data_config must be DataConfig or a subclass, not {data_config!r}")
    MODEL_CONFIGS[name] = model_config
    DATA_CONFIGS[name] = data_config
    TASK_METRICS[name] = ("auto", *metrics)
    if check is not None:
        TASK_CHECKS[name] = check
    if layered:
        LAYERED_TASKS.add(name)
    else:
        LAYERED_TASKS.discard(name)


_IMPORTED_PLUGINS: dict[str, Any] = {}


def import_plugins(names: list[str]) -> None:
    """Import a user's modules (a dotted name found from the current directory or sys.path, or a ``.py`` file)
    so the tasks and cells they register exist before a config naming them is checked."""
    import importlib
    import importlib.util
    import sys

    for name in names:
        if name in _IMPORTED_PLUGINS:
            continue
        try:
            if name.endswith(".py"):
                path = Path(name).expanduser().resolve()
                spec = importlib.util.spec_from_file_location(f"nlp_rnn_plugin_{path.stem}", path)
                if spec is None or not path.is_file():
                    raise FileNotFoundError(f"{path}: no such file")
                module = importlib.util.module_from_spec(spec)
                sys.modules[spec.name] = module
                spec.loader.exec_module(module)
            else:
                if "" not in sys.path and str(Path.cwd()) not in sys.path:
                    sys.path.insert(0, str(Path.cwd()))  # as `python -m` would: a module beside you
                module = importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - whatever the user's module raised, one line says so
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"plugin {name!r}: cannot import it ({type(err).__name__}: {reason})") from None
        _IMPORTED_PLUGINS[name] = module


# ---------------------------------------------------------------------------------------------------------
# Checking and building


def _options(hint: Any) -> tuple[Any, ...]:
    return typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)


def _fits(value: Any, option: Any) -> bool:
    """Whether ``value`` (read from YAML) is an ``option``: a scalar type, ``list[...]`` or ``dict[str, ...]``."""
    origin = typing.get_origin(option)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, o) for o in typing.get_args(option))
    if origin is list:
        (item,) = typing.get_args(option)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if origin is dict:
        key, item = typing.get_args(option)
        return isinstance(value, dict) and bool(value) and all(_fits(k, key) and _fits(v, item)
                                                               for k, v in value.items())
    if option is type(None):
        return value is None
    if option is bool or isinstance(value, bool):
        return option is bool and isinstance(value, bool)
    if option is float:
        return isinstance(value, (int, float))
    return option in (int, str) and isinstance(value, option)


def _hint_name(option: Any) -> str:
    origin = typing.get_origin(option)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_hint_name(o) for o in typing.get_args(option))
    if origin is list:
        return f"a list of {_hint_name(typing.get_args(option)[0])}"
    if origin is dict:
        key, item = typing.get_args(option)
        item_name = _hint_name(item)
        if typing.get_origin(item) in (typing.Union, types.UnionType):
            item_name = f"({item_name})"
        return f"a non-empty mapping of {_hint_name(key)} to {item_name}"
    return "null" if option is type(None) else option.__name__


def _type_error(value: Any, hint: Any) -> str | None:
    """Why ``value`` does not fit the annotation ``hint``, or None when it fits."""
    options = _options(hint)
    if value is None:
        return None if type(None) in options else "must not be null"
    if any(_fits(value, option) for option in options):
        return None
    return f"must be {' or '.join(_hint_name(o) for o in options)}"


def _check_field(f: dataclasses.Field, hint: Any, value: Any, key: str, errors: list[str]) -> Any:
    problem = _type_error(value, hint)
    if problem:
        errors.append(f"{key}: {value!r} {problem}")
        return value
    if isinstance(value, int) and not isinstance(value, bool) and float in (*typing.get_args(hint), hint):
        value = float(value)
    registry = f.metadata.get("registry")
    choices = f.metadata.get("choices") or (tuple(MODEL_CONFIGS) if registry == "tasks" else None)
    if registry == "metrics":
        choices = tuple(dict.fromkeys(name for names in TASK_METRICS.values() for name in names))
    if choices and value not in choices:
        hint = " (a task of your own: nlp-rnn --plugin MODULE that registers it)" if registry == "tasks" else ""
        errors.append(f"{key}: {value!r} is not one of {', '.join(choices)}{hint}")
    low, high = f.metadata.get("low"), f.metadata.get("high")
    if value is not None and not isinstance(value, bool) and isinstance(value, (int, float)):
        if low is not None and value < low:
            errors.append(f"{key}: {value!r} must be >= {low}")
        if high is not None and value > high:
            errors.append(f"{key}: {value!r} must be <= {high}")
    return value


def _build(cls: type, values: Any, prefix: str, errors: list[str]) -> Any:
    if values is None:
        values = {}
    if not isinstance(values, dict):
        errors.append(f"{prefix or 'config'}: expected a mapping, got {values!r}")
        return cls()
    hints = typing.get_type_hints(cls)
    if cls is Config:  # the model section's class follows the task
        if isinstance(values.get("plugins"), list):
            import_plugins([str(name) for name in values["plugins"]])  # they may register the task and cells
        task = values.get("task", Config.task)
        hints["model"] = MODEL_CONFIGS.get(task if isinstance(task, str) else Config.task, ModelConfig)
        hints["data"] = DATA_CONFIGS.get(task if isinstance(task, str) else Config.task, DataConfig)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in known:
            errors.append(f"{dotted}: unknown key (valid: {', '.join(known)})")
            continue
        f = known[key]
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, dotted, errors)
        else:
            kwargs[key] = _check_field(f, hint, value, dotted, errors)
    if cls is Config:
        for section in ("model", "data"):
            if section not in kwargs:
                kwargs[section] = hints[section]()
    return cls(**kwargs)


def _semantic_checks(config: Config, errors: list[str]) -> None:
    # Runs even when other fields are bad, so it must not trip on them (a wrong type is already reported).
    if config.data.validation_split is None and config.data.validation_fraction == 0:  # < 0: already reported
        errors.append("data.validation_fraction: must be > 0 when data.validation_split is null")
    if config.data.test_split is None and config.data.test_fraction == 0:
        errors.append("data.test_fraction: must be > 0 when data.test_split is null")
    dropout, kind = config.tokenizer.dropout, config.tokenizer.type
    if isinstance(dropout, (int, float)) and dropout > 0 and kind in choices(TokenizerConfig, "type") and kind != "bpe":
        errors.append(f"tokenizer.dropout: BPE-dropout needs tokenizer.type bpe (not {kind})")
    task = config.task if isinstance(config.task, str) else None
    metrics = TASK_METRICS.get(task, ())
    if metrics and isinstance(config.train.metric, str) and config.train.metric not in metrics:
        errors.append(f"train.metric: {config.train.metric!r} does not apply to {config.task} "
                      f"(valid: {', '.join(metrics)})")
    if task in MODEL_CONFIGS and task not in LAYERED_TASKS:
        for key, off in (("layer_lr_decay", 1.0), ("gradual_unfreezing", False)):
            if getattr(config.train, key) != off:
                errors.append(f"train.{key}: the {task} model has no layer groups (it applies to "
                              f"{', '.join(sorted(LAYERED_TASKS))})")
    if task in TASK_CHECKS and isinstance(config.model, MODEL_CONFIGS[task]):
        TASK_CHECKS[task](config, errors)
    _check_perturbations(config, task, errors)


def _check_perturbations(config: Config, task: str | None, errors: list[str]) -> None:
    """Adversarial and virtual adversarial training and distillation (issue 19): only where the task reads them, the
    unlabelled split only for VAT or distillation and never one that is scored."""
    train, data = config.train, config.data
    virtual, distillation = train.virtual_adversarial, train.distillation
    if isinstance(virtual.xi, float) and virtual.xi == 0:  # < 0: already reported
        errors.append("train.virtual_adversarial.xi: must be > 0 (the power iteration's finite-difference step)")
    if isinstance(distillation.temperature, float) and distillation.temperature == 0:
        errors.append("train.distillation.temperature: must be > 0 (1: the teacher's probabilities as they are)")
    unlabelled = data.unlabelled_split if isinstance(data.unlabelled_split, str) else None
    if task is not None and task not in ADVERSARIAL_TASKS:
        for key, on in (("train.adversarial", train.adversarial.on), ("train.virtual_adversarial", virtual.on),
                        ("train.distillation", distillation.on), ("data.unlabelled_split", unlabelled)):
            if on:
                errors.append(f"{key}: the {task} task does not read it (only: {', '.join(sorted(ADVERSARIAL_TASKS))})")
        return
    if distillation.on and unlabelled is None:
        errors.append("train.distillation.teacher: the teacher labels the texts of data.unlabelled_split; set it "
                      "(IMDB: unsupervised)")
    if (distillation.on and virtual.on and distillation.unlabelled_batch_size and virtual.unlabelled_batch_size
            and distillation.unlabelled_batch_size != virtual.unlabelled_batch_size):
        errors.append("train.distillation.unlabelled_batch_size and train.virtual_adversarial.unlabelled_batch_size "
                      "differ: both read the same unlabelled batch; set one")
    if unlabelled is None:
        for key in ("unlabelled_dataset", "unlabelled_column", "unlabelled_sentences"):
            if getattr(data, key):
                errors.append(f"data.{key}: describes data.unlabelled_split, which is not set (the split to read, "
                              "e.g. unsupervised; a file is read as split 'train')")
        return
    if not virtual.on and not distillation.on:
        errors.append(f"data.unlabelled_split: {unlabelled!r} is read only by virtual adversarial training or "
                      "distillation: set train.virtual_adversarial.epsilon and .weight > 0 or "
                      "train.distillation.teacher, or leave it null")
    if data.unlabelled_elsewhere:
        return  # another corpus: none of its splits is scored
    scored = {name for split in (data.validation_split, data.test_split) if isinstance(split, str)
              for name in split.split("+")}
    for name in sorted(scored & set(unlabelled.split("+"))):
        errors.append(f"data.unlabelled_split: {name!r} is a split the model is scored on (validation or test)")


def config_from_dict(values: dict[str, Any]) -> Config:
    """Build and check a :class:`Config`; raise one ConfigError listing every problem."""
    errors: list[str] = []
    config = _build(Config, values, "", errors)
    _semantic_checks(config, errors)
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    return config


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["model.hidden_size=256", ...]`` -> nested dict; values are read as YAML scalars."""
    nested: dict[str, Any] = {}
    errors = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            errors.append(f"--set {item!r}: expected section.key=value")
            continue
        node = nested
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                errors.append(f"--set {item!r}: {part} is not a section")
                break
        else:
            node[leaf] = _load_yaml(raw) if raw.strip() else None
    if errors:
        raise ConfigError("invalid overrides:\n  " + "\n  ".join(errors))
    return nested


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read config ({err})") from None
    try:
        values = _load_yaml(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return values


def _resolve_dataset_path(values: dict[str, Any], base: Path) -> None:
    """Make a ``data.dataset`` given as a relative path absolute, relative to ``base``: the folder of the YAML
    file that names it (``--set`` values: the current directory). So a config that names
    ``../../data/reviews`` works from any directory, and the run's ``config.yaml`` records where the data was.
    A hub id (``owner/name``) is left alone unless ``base`` holds a folder of that name. Every relative path
    (or glob) in ``data.data_files`` is made absolute the same way; URLs are left alone."""
    data = values.get("data")
    if not isinstance(data, dict):
        return
    if isinstance(data.get("data_files"), dict):
        data["data_files"] = {split: _resolve_file(paths, base) if isinstance(paths, str)
                              else [_resolve_file(p, base) for p in paths] if isinstance(paths, list) else paths
                              for split, paths in data["data_files"].items()}
    if not isinstance(data.get("dataset"), str) or not data["dataset"].strip():
        return
    name = data["dataset"]
    path = Path(name).expanduser()
    if path.is_absolute():
        resolved = path
    elif name in (".", "..") or name.startswith(("./", "../", ".\\", "..\\")):
        resolved = (base / path).resolve()
        if not resolved.exists() and path.resolve().exists():
            resolved = path.resolve()  # a run folder written before paths were resolved: from the current directory
    elif (base / path).is_dir() and not path.is_dir():  # a folder beside the config, not a hub id
        resolved = (base / path).resolve()
    else:
        return
    data["dataset"] = str(resolved)


def _resolve_file(name: Any, base: Path) -> Any:
    """A data file (or glob) relative to ``base``, made absolute; anything else (a URL, a bad value) unchanged."""
    if not isinstance(name, str) or not name.strip() or "://" in name:
        return name
    return str((base / Path(name).expanduser()).resolve())


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config, apply ``--set`` overrides, check everything at once. A dataset named by a relative
    path is found from the YAML file's folder (:func:`_resolve_dataset_path`)."""
    values = read_yaml(path)
    _resolve_dataset_path(values, Path(path).parent)
    extra = parse_overrides(overrides or [])
    _resolve_dataset_path(extra, Path.cwd())
    values = _merge(values, extra)
    try:
        return config_from_dict(values)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def save_config(config: Config, path: str | Path) -> None:
    """Write the fully resolved config (every key, defaults included)."""
    from nlp_rnn.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
