"""Configuration: every problem in one error, dotted overrides, the shipped configs, save -> load."""

from pathlib import Path

import pytest

from nlp_rnn.config import (
    DATA_CONFIGS,
    MODEL_CONFIGS,
    Config,
    ConfigError,
    ModelConfig,
    TrainConfig,
    config_from_dict,
    load_config,
    parse_overrides,
    read_yaml,
    save_config,
)

CONFIGS = sorted(path for path in (Path(__file__).resolve().parents[1] / "configs").glob("**/*.yaml")
                 if path.parent.name != "tuning")  # search spaces, not configs: tests/test_tuning.py
BENCH_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "bench" / "configs").glob("*.yaml"))


def error_of(values) -> str:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(values)
    return str(caught.value)


def test_defaults_are_valid():
    assert config_from_dict({}) == Config()


def test_every_problem_is_reported_in_one_error():
    message = error_of({
        "nonsense": 1,  # unknown section
        "model": {
            "hidden_size": "big",  # wrong type
            "pooling": "avg",  # not one of the choices
            "dropout": 1.5,  # above the range
            "hiden_size": 64,  # typo
            "cell": "lstmm",  # not a registered cell
        },
        "train": {"lr": -1.0, "batch_size": None, "epochs": True},  # below range, null, bool for int
        "data": {"validation_fraction": 0.0},  # no validation split and nothing carved
    })
    lines = message.splitlines()[1:]
    expected = {
        "nonsense": ["unknown key", "task", "model", "train"],
        "model.hidden_size": ["'big'", "must be int"],
        "model.pooling": ["'avg'", "last, mean, max, max_mean, attention"],
        "model.dropout": ["1.5", "<= 0.99"],
        "model.hiden_size": ["unknown key", "hidden_size"],
        "model.cell": ["'lstmm'", "lstm", "gru", "peephole_lstm"],
        "train.lr": ["-1.0", ">= 0.0"],
        "train.batch_size": ["None", "must not be null"],
        "train.epochs": ["True", "must be int"],
        "data.validation_fraction": ["must be > 0"],
    }
    assert len(lines) == len(expected), message
    for key, fragments in expected.items():
        [line] = [line for line in lines if line.strip().startswith(f"{key}:")]
        for fragment in fragments:
            assert fragment in line, (key, fragment, line)


@pytest.mark.parametrize("values, fragment", [
    ({"model": "lstm"}, "model: expected a mapping"),
    ({"train": {"max_tokens": 0}}, "train.max_tokens: 0 must be >= 1"),
    ({"train": {"clip_norm": "1.0"}}, "train.clip_norm: '1.0' must be float or null"),
    ({"tokenizer": {"type": "sentencepiece"}}, "word, bpe, wordpiece, unigram"),
    ({"task": "summarization"}, "task: 'summarization' is not one of classification, translation"),
    ({"task": ["translation"]}, "task: ['translation'] must be str"),
    ({"task": "translation", "model": {"pooling": "max"}}, "model.pooling: unknown key (valid: encoder_cell"),
    ({"task": "translation", "train": {"metric": "accuracy"}}, "'accuracy' does not apply to translation"),
    ({"task": "translation", "model": {"attention": "luong_dot", "hidden_size": 100}}, "luong_dot needs"),
    ({"task": "translation", "model": {"input_feeding": True}}, "model.input_feeding: applies to luong"),
    ({"task": "translation", "data": {"test_split": None, "test_fraction": 0.0}}, "data.test_fraction: must be > 0"),
    ({"task": "translation", "tokenizer": {"dropout": 0.1}}, "tokenizer.dropout: BPE-dropout needs tokenizer.type "
                                                            "bpe (not word)"),
    ({"tokenizer": {"type": "bpe", "dropout": 0.1}}, "tokenizer.dropout: the classification task does not train "
                                                     "with BPE-dropout"),
    ({"tokenizer": {"type": "bpe", "dropout": 1.0}}, "tokenizer.dropout: 1.0 must be <= 0.9"),
    ({"task": "translation", "train": {"layer_lr_decay": 2.6}},
     "train.layer_lr_decay: the translation model has no layer groups (it applies to classification, language_model"),
    ({"task": "tagging", "train": {"gradual_unfreezing": True}}, "train.gradual_unfreezing: the tagging model has no"),
    ({"train": {"layer_lr_decay": 0.5}}, "train.layer_lr_decay: 0.5 must be >= 1.0"),
    ({"train": {"schedule": "stlr"}}, "plateau, slanted_triangular"),
    ({"model": {"weight_drop": 1.0}}, "model.weight_drop: 1.0 must be <= 0.99"),
])
def test_single_problems_are_named(values, fragment):
    assert fragment in error_of(values)


def test_ulmfit_and_awd_lstm_options_apply_to_the_classifier_and_the_language_model():
    for task in ("classification", "language_model"):
        config = config_from_dict({"task": task, "model": {"weight_drop": 0.5, "word_type_dropout": 0.1,
                                                           "locked_dropout": True},
                                   "train": {"layer_lr_decay": 2.6, "gradual_unfreezing": True,
                                             "schedule": "slanted_triangular"}})
        assert config.train.layer_lr_decay == 2.6 and config.model.weight_drop == 0.5


def test_values_of_the_wrong_type_are_reported_once_and_never_crash_the_checks():
    message = error_of({"model": {"cell": 5}, "data": {"validation_fraction": "x", "validation_split": None}})
    lines = message.splitlines()[1:]
    assert len(lines) == 2, message
    assert "model.cell: 5 must be str" in message
    assert "data.validation_fraction: 'x' must be float" in message


def test_ints_are_accepted_for_floats_and_become_floats():
    config = config_from_dict({"train": {"lr": 1, "clip_norm": None}, "model": {"dropout": 0}})
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)
    assert config.train.clip_norm is None
    assert isinstance(config.model.dropout, float)


def test_parse_overrides_builds_nested_values_read_as_yaml():
    overrides = parse_overrides([
        "model.hidden_size=256", "train.lr=0.001", "model.bidirectional=false", "data.validation_split=",
        "data.dataset=org/name=with=equals", "task=classification", "train.max_tokens=null",
    ])
    assert overrides == {
        "model": {"hidden_size": 256, "bidirectional": False},
        "train": {"lr": 0.001, "max_tokens": None},
        "data": {"validation_split": None, "dataset": "org/name=with=equals"},
        "task": "classification",
    }


def test_parse_overrides_reports_every_malformed_item():
    with pytest.raises(ConfigError) as caught:
        parse_overrides(["model.hidden_size", "=3", "task=classification", "task.x=1"])
    message = str(caught.value)
    assert "'model.hidden_size'" in message and "'=3'" in message
    assert "task is not a section" in message
    assert len(message.splitlines()) == 4


def test_load_config_applies_overrides_over_the_file(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text("model:\n  hidden_size: 32\n  cell: gru\ntrain:\n  epochs: 2\n")
    config = load_config(path, ["model.hidden_size=16", "model.pooling=attention", "train.lr=0.01"])
    assert config.model == ModelConfig(hidden_size=16, cell="gru", pooling="attention")
    assert config.train == TrainConfig(epochs=2, lr=0.01)
    assert load_config(path).model.hidden_size == 32


def test_load_config_errors_name_the_file_and_the_key(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text("model:\n  hidden_size: 32\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, ["model.hidden=16", "train.epochs=0"])
    message = str(caught.value)
    assert str(path) in message and "model.hidden: unknown key" in message and "train.epochs: 0" in message


@pytest.mark.parametrize("text, fragment", [
    (None, "not found"),
    ("model: [unclosed", "not valid YAML"),
    ("- a\n- b\n", "expected a mapping"),
])
def test_read_yaml_errors(tmp_path, text, fragment):
    path = tmp_path / "config.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        read_yaml(path)


def test_empty_yaml_is_all_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path) == Config()


def test_configs_folder_is_not_empty():
    assert CONFIGS


@pytest.mark.parametrize("path", CONFIGS + BENCH_CONFIGS, ids=lambda p: p.name)
def test_shipped_config_loads(path):
    assert isinstance(load_config(path), Config)


def test_bench_configs_are_found():
    assert {p.name for p in BENCH_CONFIGS} >= {"imdb_keras_size.yaml", "multi30k_joeynmt_size.yaml"}


@pytest.mark.parametrize("path", [None, *CONFIGS], ids=lambda p: "defaults" if p is None else p.name)
def test_save_then_load_round_trips(tmp_path, path):
    overrides = ["train.lr=1.0e-5", "train.max_tokens=4096", "data.validation_split=null", "train.clip_norm=null"]
    task = read_yaml(path).get("task", "classification") if path is not None else "classification"
    overrides += {"translation": ["model.encoder_cell=peephole_lstm", "model.input_feeding=true",
                                  "model.attention=luong_dot", "model.decoder_hidden_size=24", "model.hidden_size=12"],
                  "generation": ["model.cell=peephole_lstm", "model.tie_weights=true"]}.get(
        task, ["model.cell=peephole_lstm", "model.bidirectional=false"])
    if path is None:
        config = config_from_dict(parse_overrides(overrides))
    else:
        config = load_config(path, overrides)
    saved = tmp_path / "config.yaml"
    save_config(config, saved)
    values = read_yaml(saved)
    defaults = Config(task=task, model=MODEL_CONFIGS[task](), data=DATA_CONFIGS[task]()).to_dict()
    assert set(values) == set(defaults)
    assert all(set(values[section]) == set(defaults[section]) for section in ("data", "model", "train", "search"))
    assert config_from_dict(values) == config


def test_scientific_notation_is_a_float():
    from nlp_rnn.config import parse_overrides

    parsed = parse_overrides(["train.lr=1e-3", "train.weight_decay=5E-2"])
    assert parsed == {"train": {"lr": 1e-3, "weight_decay": 0.05}}


def test_a_relative_dataset_path_is_found_from_the_config_folder(tmp_path, monkeypatch):
    """configs/translation/eng_fra_gru.yaml names its mirror folder relative to itself: any directory works."""
    path = next(p for p in CONFIGS if p.name == "eng_fra_gru.yaml")
    monkeypatch.chdir(tmp_path)  # not the checkout
    dataset = Path(load_config(path).data.dataset)
    assert dataset.is_absolute() and (dataset / "train.parquet").is_file()


def test_relative_dataset_paths_resolve_against_the_file_and_set_against_the_cwd(tmp_path, monkeypatch):
    (tmp_path / "data" / "mine").mkdir(parents=True)
    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "mine.yaml"
    config.write_text("data:\n  dataset: ../data/mine\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert load_config(config).data.dataset == str(tmp_path / "data" / "mine")
    assert load_config(config, ["data.dataset=./local"]).data.dataset == str(elsewhere / "local")
    config.write_text("data:\n  dataset: stanfordnlp/imdb\n")  # a hub id stays a hub id
    assert load_config(config).data.dataset == "stanfordnlp/imdb"


def test_adversarial_options_are_checked_with_everything_else():
    """Issue 19's sections: nested keys, off by default, and every misuse in the one error."""
    config = config_from_dict({"train": {"adversarial": {"epsilon": 5}, "virtual_adversarial": {"epsilon": 5}},
                               "data": {"unlabelled_split": "unsupervised"}})
    assert config.train.adversarial.epsilon == 5.0 and config.train.perturbs_embeddings
    assert not Config().train.perturbs_embeddings
    assert load_config_values(config) == config  # saved nested, read back
    overridden = config_from_dict(parse_overrides(["train.virtual_adversarial.xi=0.5"]))
    assert overridden.train.virtual_adversarial.xi == 0.5 and not overridden.train.perturbs_embeddings
    message = error_of({"train": {"adversarial": {"eps": 1, "weight": -1}, "virtual_adversarial": {"xi": 0}},
                        "data": {"unlabelled_split": "unsupervised+test"}})
    for line in ("train.adversarial.eps: unknown key (valid: epsilon, weight)",
                 "train.adversarial.weight: -1.0 must be >= 0.0",
                 "train.virtual_adversarial.xi: must be > 0",
                 "data.unlabelled_split: 'unsupervised+test' is read only by virtual adversarial training",
                 "data.unlabelled_split: 'test' is a split the model is scored on"):
        assert line in message, message
    message = error_of({"task": "language_model", "train": {"adversarial": {"epsilon": 1}}})
    assert "train.adversarial: the language_model task does not read it (only: classification)" in message


def load_config_values(config: Config) -> Config:
    import yaml

    return config_from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict())))
