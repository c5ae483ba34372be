"""Checkpoint averaging: one model whose weights are the mean of a run's last N epoch-end weights
(``nlp-rnn average RUN --last N``).

Late in training the weights wander around a minimum; their mean sits nearer its centre and usually scores a
little better than any one of them, at no cost at inference time (Vaswani et al. 2017, section 6.1, average the
last 5 or 20 checkpoints; JoeyNMT, OpenNMT-py and fairseq's ``average_checkpoints.py`` do it the same way). It is
weight-level, so it works for every task: the averaged folder is a run folder like any other, which
``nlp-rnn evaluate`` / ``predict`` and ``nlp_rnn.load`` read. The trainer keeps the epochs' weights when
``train.keep_epoch_weights`` is N or more. What training derives from the best weights after the last epoch (a
classifier's temperature, fitted on the validation split; a translator's attention plots) is derived again from
the averaged ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from nlp_rnn import checkpoint as ckpt
from nlp_rnn.errors import NlpRnnError


def average_weights(states: Sequence[dict[str, Tensor]], names: Sequence[str]) -> dict[str, Tensor]:
    """The elementwise mean of every floating-point tensor across ``states`` (summed in float64, returned in its
    own dtype, so one state comes back unchanged); any other tensor (an integer buffer, a step count) is the last
    state's. ``names`` name the states (their files) in the one error for keys or shapes that differ."""
    if not states:
        raise NlpRnnError("nothing to average")
    first = states[0]
    for state, name in zip(states[1:], names[1:], strict=True):
        missing, extra = sorted(set(first) - set(state)), sorted(set(state) - set(first))
        if missing or extra:
            what = f"missing {', '.join(missing[:3])}" if missing else f"unexpected {', '.join(extra[:3])}"
            raise NlpRnnError(f"{name}: its tensors differ from those of {names[0]} ({what})")
        wrong = next((key for key in first if state[key].shape != first[key].shape), None)
        if wrong is not None:
            raise NlpRnnError(f"{name}: {wrong} has shape {tuple(state[wrong].shape)}, "
                              f"{names[0]} {tuple(first[wrong].shape)}")
    averaged = {}
    for key, tensor in first.items():
        if tensor.is_floating_point():
            total = sum(state[key].double() for state in states)  # float64: N float32 sums lose nothing
            averaged[key] = (total / len(states)).to(tensor.dtype)
        else:
            averaged[key] = states[-1][key].clone()
    return averaged


def average_run(run_dir: str | Path, last: int, out: str | Path | None = None) -> tuple[Path, list[int]]:
    """Average the weights of the last ``last`` epochs kept in ``run_dir/epochs/`` into a new run folder ``out``
    (default ``run_dir/averaged``): the run's config and tokenizers, the averaged ``model.safetensors`` (with the
    last epoch's metadata) and a ``metrics.json`` that says what was averaged. Returns the folder and the epochs."""
    from nlp_rnn.tasks import get_task

    run = ckpt.RunFolder(run_dir)
    if last < 1:
        raise NlpRnnError(f"--last {last}: average at least 1 epoch")
    config = run.read_config()
    if run.ensemble_members() or run.seed_list():
        raise NlpRnnError(f"{run.path}: average takes one run folder (not an ensemble or a folder of seeds)")
    kept = run.kept_epochs()
    if len(kept) < last:
        found = f"epochs {', '.join(str(epoch) for epoch, _ in kept)}" if kept else "none"
        raise NlpRnnError(f"{run.path / run.EPOCHS}: {len(kept)} epoch weights kept ({found}), fewer than --last "
                          f"{last}; train with train.keep_epoch_weights >= {last}")
    chosen = kept[-last:]
    loaded = [ckpt.load_weights(path) for _, path in chosen]
    averaged = average_weights([tensors for tensors, _ in loaded], [str(path) for _, path in chosen])
    metadata = loaded[-1][1]

    target = ckpt.RunFolder(Path(out) if out is not None else run.path / run.AVERAGED)
    if target.path.resolve() == run.path.resolve():
        raise NlpRnnError(f"--out {target}: the run folder itself; choose another folder")
    if target.holds_run():
        raise NlpRnnError(f"{target}: already holds a run; delete it or choose another --out")
    task_class = get_task(config.task)
    names = task_class.tokenizer_files(config)
    tokenizers = ckpt.load_tokenizers(names, run.path)
    task = task_class(config, tokenizers, metadata)
    model = task.build_model()
    ckpt.load_into(model, averaged, chosen[-1][1])  # the config builds these shapes: the folder will load
    target.path.mkdir(parents=True, exist_ok=True)
    target.write_config(config)
    target.write_tokenizers(names, tokenizers)
    target.write_weights(averaged, metadata)
    epochs = [epoch for epoch, _ in chosen]
    target.write_metrics({"averaged_from": str(run.path), "averaged_epochs": epochs,
                          "num_parameters": sum(p.numel() for p in model.parameters()), **metadata})
    # what training derives from its best weights, from these instead (a classifier's calibration on the
    # validation split, a translator's attention plots)
    from nlp_rnn.data import load_eval_split

    validation = task.encode(load_eval_split(config.data, "validation", task_class, label_names=task.labels))
    task.after_training(model.eval(), target, torch.device("cpu"), validation)
    return target.path, epochs
