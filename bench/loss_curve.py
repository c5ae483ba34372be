"""Validation loss against training time for generation runs, from their log.jsonl: the figure at given times
(the last validation at or before each) and a plot, with reference points to beat.

    python bench/loss_curve.py runs/shakespeare_fast runs/shakespeare_char [--at 100 600 1800 3600]
        [--reference "nanoGPT CPU recipe (99 s)=99:1.886"] [--reference "nanoGPT GPU recipe=1.47"]
        [--plot docs/shakespeare-loss.png] [--json OUT]

Time is the run's training seconds (``seconds`` in each epoch record: the optimizer steps, not validation or
data loading); loss is the validation split's, in nats per token, after each epoch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def epochs(run: Path) -> list[tuple[float, float]]:
    """(training seconds, validation loss) after each epoch."""
    records = [json.loads(line) for line in (run / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    return [(r["seconds"], r["val_loss"]) for r in records if r.get("kind") == "epoch"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--at", type=float, nargs="+", default=[100, 600, 1800, 3600], help="seconds")
    parser.add_argument("--reference", action="append", default=[], metavar="NAME=SECONDS:LOSS")
    parser.add_argument("--plot", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    result = {}
    figure, axes = plt.subplots(figsize=(7, 4.2))
    for run in map(Path, args.runs):
        points = epochs(run)
        at = {}
        for limit in args.at:
            before = [loss for seconds, loss in points if seconds <= limit]
            at[str(int(limit))] = min(before) if before else None
        result[run.name] = {"epochs": points, "best_at_or_before": at}
        print(f"{run.name}: " + ", ".join(f"<= {k} s: {v:.4f}" if v is not None else f"<= {k} s: (no epoch yet)"
                                         for k, v in at.items()))
        axes.plot([s for s, _ in points], [loss for _, loss in points], marker="o", label=run.name)
    for reference in args.reference:  # NAME=SECONDS:LOSS a point; NAME=LOSS a level whose time is not comparable
        name, point = reference.rsplit("=", 1)
        if ":" in point:
            seconds, loss = map(float, point.split(":"))
            axes.scatter([seconds], [loss], marker="x", s=80, color="black", zorder=5)
            axes.annotate(name, (seconds, loss), textcoords="offset points", xytext=(6, 6), fontsize=8)
        else:
            seconds, loss = None, float(point)
            axes.axhline(loss, color="grey", linestyle=":", linewidth=1)
            axes.annotate(name, (0.01, loss), xycoords=("axes fraction", "data"), textcoords="offset points",
                          xytext=(0, 4), fontsize=8, color="grey")
        result.setdefault("references", {})[name] = [seconds, loss]
    axes.set_xscale("log")
    axes.set_xlabel("training seconds (log scale)")
    axes.set_ylabel("validation loss (nats per character)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    if args.plot:
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.plot, dpi=120)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
