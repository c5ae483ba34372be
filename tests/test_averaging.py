"""Checkpoint averaging (nlp_rnn.averaging, ``nlp-rnn average``): the mean of known weights, and a tiny run whose
last epochs' weights average into a run folder that loads and evaluates."""

import json

import pytest
import torch
from safetensors.torch import load_file

import nlp_rnn
from nlp_rnn.averaging import average_weights
from nlp_rnn.checkpoint import RunFolder
from nlp_rnn.cli import main
from nlp_rnn.errors import NlpRnnError
from nlp_rnn.training import train
from tests.tiny import reversal_config


def test_the_average_of_two_state_dicts_is_their_mean_tensor_by_tensor():
    generator = torch.Generator().manual_seed(0)
    states = [{"weight": torch.randn(3, 4, generator=generator), "bias": torch.randn(4, generator=generator),
               "steps": torch.tensor([step])} for step in (5, 7)]
    averaged = average_weights(states, ["a", "b"])
    for key in ("weight", "bias"):
        torch.testing.assert_close(averaged[key], torch.stack([s[key] for s in states]).mean(0), rtol=0, atol=1e-7)
        assert averaged[key].dtype == torch.float32
    assert torch.equal(averaged["steps"], torch.tensor([7]))  # an integer buffer: the last state's


def test_states_that_differ_are_named():
    a = {"weight": torch.zeros(2, 3)}
    with pytest.raises(NlpRnnError, match=r"b: weight has shape \(3, 2\), a \(2, 3\)"):
        average_weights([a, {"weight": torch.zeros(3, 2)}], ["a", "b"])
    with pytest.raises(NlpRnnError, match="b: its tensors differ from those of a .missing weight"):
        average_weights([a, {"other": torch.zeros(2, 3)}], ["a", "b"])


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory, reversal_data):
    """Three epochs of the tiny reversal translator, keeping the last two epochs' weights."""
    run_dir = tmp_path_factory.mktemp("averaging") / "run"
    train(reversal_config(reversal_data, train={"epochs": 3, "keep_epoch_weights": 2, "patience": None}), run_dir)
    return run_dir


def test_the_trainer_keeps_the_last_epochs_weights(kept_run, reversal_run):
    assert [epoch for epoch, _ in RunFolder(kept_run).kept_epochs()] == [2, 3]  # epoch 1 was pruned
    assert RunFolder(reversal_run).kept_epochs() == []  # none by default


def test_averaged_run_loads_and_evaluates(kept_run, tmp_path, capsys):
    out = tmp_path / "averaged"
    assert main(["average", str(kept_run), "--last", "2", "--out", str(out)]) == 0
    assert "epochs 2, 3" in capsys.readouterr().out
    epochs = [load_file(path) for _, path in RunFolder(kept_run).kept_epochs()]
    averaged = load_file(out / "model.safetensors")
    for key, tensor in averaged.items():
        torch.testing.assert_close(tensor, (epochs[0][key] + epochs[1][key]) / 2, rtol=0, atol=1e-6)
    assert json.loads((out / "metrics.json").read_text())["averaged_epochs"] == [2, 3]
    translation = nlp_rnn.load(out).translate(["1 2 3"], beam_size=1)[0]["translation"]
    assert translation.split()  # the averaged weights of a near-perfect model still translate
    assert main(["evaluate", str(out), "--split", "test", "--beam", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["bleu"] > 0


def test_the_average_of_the_last_epoch_is_its_weights(kept_run):
    assert main(["average", str(kept_run), "--last", "1"]) == 0  # into RUN/averaged
    last = load_file(RunFolder(kept_run).epoch_weights(3))
    averaged = load_file(kept_run / "averaged" / "model.safetensors")
    assert last.keys() == averaged.keys() and all(torch.equal(last[k], averaged[k]) for k in last)


@pytest.mark.parametrize(("last", "fragment"), [(3, "2 epoch weights kept (epochs 2, 3), fewer than --last 3"),
                                                (0, "--last 0: average at least 1 epoch")])
def test_bad_requests_are_one_line(kept_run, tmp_path, capsys, last, fragment):
    assert main(["average", str(kept_run), "--last", str(last), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert fragment in error and len(error.strip().splitlines()) == 1


def test_a_run_without_kept_weights_and_a_taken_folder_are_one_line(reversal_run, kept_run, tmp_path, capsys):
    assert main(["average", str(reversal_run), "--last", "1", "--out", str(tmp_path / "a")]) == 2
    assert "0 epoch weights kept (none)" in capsys.readouterr().err
    assert main(["average", str(kept_run), "--last", "1", "--out", str(reversal_run)]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_a_resumed_run_may_start_keeping_epochs(tmp_path, reversal_data):
    """A run started without train.keep_epoch_weights keeps the epochs after --resume --set adds it."""
    from nlp_rnn.training import TrainingInterrupted

    def stop_after_first_epoch(epoch, value):
        if epoch == 1:
            raise KeyboardInterrupt

    run_dir = tmp_path / "run"
    with pytest.raises(TrainingInterrupted):
        train(reversal_config(reversal_data, train={"epochs": 3, "patience": None}), run_dir,
              on_epoch=stop_after_first_epoch)
    assert RunFolder(run_dir).kept_epochs() == []
    assert main(["train", "--resume", "--out", str(run_dir), "--set", "train.keep_epoch_weights=2",
                 "--set", "train.progress=false"]) == 0
    assert [epoch for epoch, _ in RunFolder(run_dir).kept_epochs()] == [2, 3]


def test_an_averaged_classifier_is_calibrated_anew(tmp_path):
    from nlp_rnn.averaging import average_run
    from tests.tiny import tiny_config

    run_dir = tmp_path / "run"
    train(tiny_config(train={"epochs": 2, "keep_epoch_weights": 2}), run_dir)
    out, epochs = average_run(run_dir, 2, tmp_path / "averaged")
    fitted = json.loads((out / "calibration.json").read_text())
    trained = json.loads((run_dir / "calibration.json").read_text())
    assert epochs == [1, 2] and fitted["examples"] > 0  # the whole validation split, as nlp-rnn calibrate reads
    assert fitted["temperature"] != trained["temperature"]  # fitted to the averaged weights, not copied
    assert nlp_rnn.load(out).temperature == fitted["temperature"]
