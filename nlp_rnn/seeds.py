"""Seeds as a first-class option: ``nlp-rnn train CONFIG --seeds 0,1,2`` trains one run per seed into
``OUT/seed-N/`` and writes ``OUT/summary.json`` with the mean and standard deviation of every validation score;
``nlp-rnn evaluate OUT`` scores every seed and reports mean +- std. ``OUT/seeds.json`` lists the seeds and
``OUT/config.yaml`` holds the config they share (but the seed), so ``--resume --out OUT`` finishes them all.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from nlp_rnn import checkpoint as ckpt
from nlp_rnn.config import Config
from nlp_rnn.errors import NlpRnnError


def parse_seeds(value: str) -> list[int]:
    """``0,1,2`` -> [0, 1, 2]: distinct integers, in order."""
    try:
        seeds = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise NlpRnnError(f"--seeds {value!r}: a comma-separated list of integers, e.g. 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise NlpRnnError(f"--seeds {value!r}: give at least one seed, each once")
    return seeds


def summarize(reports: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """For every number the reports share (top level): its values, mean and sample standard deviation."""
    names = [k for k, v in reports[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)
             and all(isinstance(r.get(k), (int, float)) for r in reports)]
    summary = {}
    for name in names:
        values = [float(r[name]) for r in reports]
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
        summary[name] = {"mean": mean, "std": std, "values": values}
    return summary


def train_seeds(config: Config | None, out: Path, seeds: list[int] | None, resume: bool = False,
                overrides: list[str] | None = None, command: str | None = None) -> dict[str, Any]:
    """Train (or, ``resume``, finish) one run per seed in ``out/seed-N``; write and return the summary."""
    from nlp_rnn.training import train

    folder = ckpt.RunFolder(out)
    if resume:
        listed = folder.seed_list()
        if not listed:
            raise NlpRnnError(f"{out}: not a folder of seeds (no {folder.SEEDS_LIST}); resume one run with --out RUN")
        config, seeds = folder.read_config(), listed
    else:
        folder.refuse_if_holds_run()  # else its config.yaml would be replaced while its finished seeds stay as is
        out.mkdir(parents=True, exist_ok=True)
        folder.write_config(config)
        folder.write_seed_list(seeds)
    metrics = []
    for seed in seeds:
        run = folder.seed_run(seed)
        started = ckpt.RunFolder(run).state.exists()
        seeded = replace(config, train=replace(config.train, seed=seed))
        metrics.append(train(None if started else seeded, run, resume=started,
                             overrides=overrides if started else None, command=command))
    summary = {"seeds": seeds, "metric": metrics[0].get("metric"),
               "validation": summarize([m["validation"] for m in metrics]),
               "best_epoch": summarize([{"best_epoch": m["best_epoch"]} for m in metrics])["best_epoch"]}
    ckpt.write_json(folder.summary, summary)
    return summary
