"""``nlp-rnn train | tune | diagnose | evaluate | predict | pack | average | export | demo``.

Errors the user can fix print one line, never a traceback."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from nlp_rnn.errors import NlpRnnError

# What --resume may change: how the run is executed and which epochs' weights it keeps beside the best
# (for `nlp-rnn average`), never what it computes on a CPU. They hold for that invocation only.
RESUME_OVERRIDES = {"train.num_threads", "train.progress", "train.device", "train.keep_epoch_weights",
                    "train.keep_freed_memory"}
PLUGIN_HELP = ("import a module first (a dotted name, found from the current directory, or a .py file) that "
               "registers tasks or cells (repeatable); train records it in the run's config.yaml, so evaluate, "
               "predict and nlp_rnn.load import it again")
ENSEMBLE_HELP = ("more run folders of the same task (comma-separated) that predict together with RUN_DIR: the "
                 "mean of their calibrated class probabilities (classification: each reads with its own tokenizer), "
                 "of their tag probabilities (tagging), or of their next-token probabilities at every greedy or "
                 "beam search step (translation: the same tokenizers)")
DEVICE_HELP = "where the model runs: auto (a CUDA GPU when there is one, else the CPU), cpu, cuda, cuda:N, mps"


def _train(args: argparse.Namespace) -> int:
    from nlp_rnn import checkpoint as ckpt
    from nlp_rnn.config import load_config
    from nlp_rnn.distributed import context_from_env
    from nlp_rnn.tasks import get_task
    from nlp_rnn.training import train

    if args.resume:
        if args.out is None:
            raise NlpRnnError("--resume needs --out RUN_DIR (the run folder to continue)")
        config = None
        changed = sorted({item.partition("=")[0].strip() for item in args.set} - RESUME_OVERRIDES)
        if changed:
            raise NlpRnnError(f"--resume continues the saved config; --set may only change "
                              f"{', '.join(sorted(RESUME_OVERRIDES))} (not {', '.join(changed)})")
    else:
        if args.config is None:
            raise NlpRnnError("train needs a CONFIG.yaml (or --resume --out RUN_DIR)")
        config = load_config(args.config, args.set)
        recorded = [str(Path(name).resolve()) if name.endswith(".py") else name for name in args.plugins]
        config = replace(config, plugins=list(dict.fromkeys([*config.plugins, *recorded])))
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    out.mkdir(parents=True, exist_ok=True)
    process = context_from_env()  # under torchrun only rank 0 writes and reports
    launcher = ["torchrun", f"--nproc_per_node={process.world_size}", "-m", "nlp_rnn"] if process.enabled \
        else ["nlp-rnn"]
    command = shlex.join([*launcher, *(args.argv if args.argv is not None else sys.argv[1:])])
    if args.seeds or (args.resume and ckpt.RunFolder(out).seed_list()):
        from nlp_rnn.seeds import parse_seeds, train_seeds

        summary = train_seeds(config, out, parse_seeds(args.seeds) if args.seeds else None, resume=args.resume,
                              overrides=args.set if args.resume else None, command=command)
        if process.is_main:
            names = get_task(ckpt.RunFolder(out).read_config().task).metrics
            validation = summary["validation"]
            scores = ", ".join(f"{name} {validation[name]['mean']:.4f} +- {validation[name]['std']:.4f}"
                               for name in names if name in validation)
            print(f"{len(summary['seeds'])} seeds {summary['seeds']}: validation {scores} (mean +- std); "
                  f"summary in {ckpt.RunFolder(out).summary}")
        return 0
    metrics = train(config, out, resume=args.resume, overrides=args.set if args.resume else None, command=command)
    if not process.is_main:
        return 0
    validation = metrics["validation"]
    # the task's headline scores: its metrics (train.metric's choices), in its own order
    names = get_task(metrics.get("task") or config.task).metrics
    scores = ", ".join(f"{name} {validation[name]:.4f}" for name in names if name in validation)
    print(f"best epoch {metrics['best_epoch']}: validation {scores}; run folder {out}")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from nlp_rnn.tuning import tune

    out = Path(args.out) if args.out else Path("runs") / f"tune-{Path(args.config).stem}"
    summary = tune(args.config, args.space, args.trials, out, overrides=args.set, timeout=args.timeout,
                   sampler=args.sampler, pruner=args.pruner, storage=args.storage, study_name=args.study,
                   seed=args.seed, heartbeat=args.heartbeat, startup_trials=args.startup_trials)
    if args.json:
        print(json.dumps(summary))
        return 0
    counts = ", ".join(f"{count} {state}" for state, count in summary["trials"].items())
    print(f"study {summary['study']!r}: {counts}; table in {out / 'trials.csv'}")
    if "best_trial" not in summary:
        print("no trial has finished yet")
        return 0
    params = ", ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                       for key, value in summary["best_params"].items())
    print(f"best trial {summary['best_trial']}: validation {summary['metric']} {summary['best_value']:.4f} "
          f"({params}); run folder {summary['best_run']}")
    print(f"best config: {summary['best_config']} (nlp-rnn train {summary['best_config']})")
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from nlp_rnn.diagnostics import FLOW_PLOT, NORMS_PLOT, RESULTS, diagnose_gradients, parse_cells

    out = Path(args.out) if args.out else Path("runs") / f"diagnose-{Path(args.source).stem}"
    results = diagnose_gradients(args.source, out, parse_cells(args.cells), length=args.length, batches=args.batches,
                                 batch_size=args.batch_size, steps=args.steps, overrides=args.set)
    far = args.length - 1
    print(f"mean ||dLoss/dh_t|| at the loss -> {far} steps before it, and the distance where it falls below a "
          f"millionth ({results['dataset']}, {args.batches} x {args.batch_size} texts of {args.length} tokens):")

    def flow(norms: list[float], millionth: int | None) -> str:
        below = f"a millionth at {millionth} steps" if millionth is not None else f"above a millionth for {far} steps"
        return f"{norms[0]:.3g} -> {norms[far]:.3g} ({below})"

    for cell, entry in results["cells"].items():
        line = f"  {cell:<14} init {flow(entry['init'], entry['millionth']['init'])}"
        if "trained" in entry:
            line += f"; after {args.steps} steps {flow(entry['trained'], entry['millionth']['trained'])}"
        print(line)
        clipped, unclipped = entry.get("grad_norms_clipped"), entry.get("grad_norms_unclipped")
        if clipped and unclipped:
            share = sum(norm > results["clip_norm"] for norm in clipped) / len(clipped)
            print(f"  {'':<14} gradient norm over {len(clipped)} steps: median {statistics.median(clipped):.3g}, max "
                  f"{max(clipped):.3g} ({share:.0%} of steps clipped at {results['clip_norm']:g}); without clipping: "
                  f"median {statistics.median(unclipped):.3g}, max {max(unclipped):.3g}")
    written = [FLOW_PLOT, *([NORMS_PLOT] if args.steps else []), RESULTS]
    print(f"written to {out}: {', '.join(written)}")
    return 0


def _pack(args: argparse.Namespace) -> int:
    from nlp_rnn.packaging import pack_run, write_model_card

    if args.card_only:
        print(f"wrote {write_model_card(args.run_dir)}")
        return 0
    if args.out is None:
        raise NlpRnnError("pack needs OUT (or --card-only to rewrite RUN_DIR/README.md)")
    out = pack_run(args.run_dir, args.out, fp16=args.fp16, force=args.force, ensemble=args.ensemble or [])
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    what = f"{args.run_dir} and {', '.join(args.ensemble)} as an ensemble" if args.ensemble else args.run_dir
    print(f"packed {what} into {out} ({size / 1e6:.1f} MB)")
    return 0


def _average(args: argparse.Namespace) -> int:
    from nlp_rnn.averaging import average_run

    out, epochs = average_run(args.run_dir, args.last, args.out)
    print(f"averaged the weights of epochs {', '.join(map(str, epochs))} of {args.run_dir} into {out}")
    return 0


def _scored(count: int, unit: str, max_examples: int | None) -> str:
    """``25,000 examples`` (the whole split), or ``200 examples (--max-examples 200)`` for a sample."""
    return f"{count:,} {unit}" + (f" (--max-examples {max_examples})" if max_examples is not None else "")


def _load(args: argparse.Namespace):
    """``nlp_rnn.load`` on ``--device`` (with ``--ensemble``), a bad device named as the option the user typed."""
    from nlp_rnn.predictor import load
    from nlp_rnn.runtime import select_device

    return load(args.run_dir, device=select_device(args.device), ensemble=args.ensemble or [])


def _evaluate(args: argparse.Namespace) -> int:
    """Score a split with the run's task: the same evaluation its validation ran during training. A folder of
    seeds: every seed, then the mean and standard deviation."""
    from nlp_rnn import checkpoint as ckpt
    from nlp_rnn.checkpoint import RunFolder

    seeds = RunFolder(args.run_dir).seed_list()
    if not seeds:
        _evaluate_run(args, Path(args.run_dir), Path(args.out) if args.out else None)
        return 0
    from nlp_rnn.seeds import summarize

    reports = [_evaluate_run(args, RunFolder(args.run_dir).seed_run(seed), Path(args.out) / f"seed-{seed}"
                             if args.out else None, quiet=True) for seed in seeds]
    summary = {"seeds": seeds, "split": args.split, "run_dir": str(args.run_dir), **summarize(reports)}
    out = Path(args.out) if args.out else RunFolder(args.run_dir).evaluation(args.split)
    ckpt.write_json(out / ckpt.METRICS_FILE, summary)
    if args.json:
        print(json.dumps(summary))
        return 0
    shown = [f"{name} {v['mean']:.4f} +- {v['std']:.4f}" for name, v in summary.items()
             if isinstance(v, dict) and name not in ("num_examples",) and not name.endswith("per_second")]
    print(f"[{args.split}] {len(seeds)} seeds {seeds}, mean +- std: {', '.join(shown)}")
    print(f"written to {out} (and each seed's evaluation/)")
    return 0


def _evaluate_run(args: argparse.Namespace, run_dir: Path, out: Path | None, quiet: bool = False) -> dict:
    from nlp_rnn.checkpoint import RunFolder
    from nlp_rnn.data import load_eval_split
    from nlp_rnn.predictor import load_model
    from nlp_rnn.runtime import select_device

    task, model = load_model(run_dir, select_device(args.device), args.ensemble or [])
    config, device = task.config, next(model.parameters()).device
    out = out or RunFolder(run_dir).evaluation(args.split)
    split = load_eval_split(config.data, args.split, type(task), args.max_examples, label_names=task.labels)
    data = task.encode(split)
    report = task.evaluate(model, data, device, args.batch_size, beam_size=args.beam)
    report.update(split=args.split, dataset=config.data.source, run_dir=str(run_dir),
                  max_examples=args.max_examples, device=str(device))
    if args.ensemble:
        report.update(ensemble=args.ensemble)
    first, *lines = task.write_evaluation(report, data, out)
    if quiet:
        return report
    if args.json:
        print(json.dumps(report))
        return report
    print(f"{config.data.source} [{args.split}] {_scored(len(data), task.unit, args.max_examples)}: {first} "
          f"on {device}")
    for line in lines:
        print(line)
    print(f"written to {out}")
    return report


def _read_stdin_lines() -> list[str]:
    data = sys.stdin.buffer.read()
    return data.decode("utf-8", errors="replace").splitlines()


def _predict(args: argparse.Namespace) -> int:
    predictor = _load(args)
    task = predictor.task
    texts = args.text if args.text else _read_stdin_lines()

    def run(chunk):
        return task.predict(predictor, chunk, beam_size=args.beam, n_best=args.nbest)

    line = task.prediction_line
    failures = 0
    for start in range(0, len(texts), 256):
        chunk = texts[start : start + 256]
        usable = [i for i, text in enumerate(chunk) if text.strip()]
        results = dict(zip(usable, run([chunk[i] for i in usable]), strict=True))
        for i in range(len(chunk)):  # exactly one output line per input, in order
            result = results.get(i)
            if result is None:
                failures += 1
                print(json.dumps({"error": "empty text"}) if args.json else "error: empty text")
            else:
                print(json.dumps(result) if args.json else line(result), flush=not args.text)
    return 1 if failures else 0


def _export(args: argparse.Namespace) -> int:
    from nlp_rnn.export import export_run

    written = export_run(args.run_dir, args.out, args.format, args.opset, args.force, args.int8)
    size = sum(p.stat().st_size for p in written)
    print(f"exported {args.run_dir} to {written[0].parent} ({size / 1e6:.1f} MB): "
          + ", ".join(p.name for p in written))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from nlp_rnn import demo
    from nlp_rnn.runtime import select_device

    device = "cpu" if args.quantize and args.device == "auto" else str(select_device(args.device))
    try:
        demo.main(host=args.host, port=args.port, quantize=args.quantize, device=device, sentiment=args.sentiment,
                  translation=args.translation, entities=args.entities, generate=args.generate)
    except OSError as err:  # e.g. the port is taken
        raise NlpRnnError(f"cannot serve the demo on {args.host}:{args.port}: {err}") from None
    return 0


class _IntermixedParser(argparse.ArgumentParser):
    """A subcommand parser that takes options anywhere among its positionals, so free texts and options mix:
    ``nlp-rnn predict RUN --json "A triumph." "Dull."`` (argparse's own parser stops the texts at the first
    option). A text that starts with ``-`` goes after ``--``."""

    _parsing = False  # parse_known_intermixed_args calls parse_known_args itself (Python < 3.12)

    def parse_known_args(self, args=None, namespace=None):
        if self._parsing or self._subparsers is not None:  # a command with commands of its own (diagnose)
            return super().parse_known_args(args, namespace)
        self._parsing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._parsing = False


def _runs(value: str) -> list[str]:
    """``--ensemble RUN2,RUN3``: the folders, each of which must exist."""
    folders = [part.strip() for part in value.split(",") if part.strip()]
    missing = [folder for folder in folders if not Path(folder).is_dir()]
    if not folders or missing:
        raise argparse.ArgumentTypeError(f"no run folder {', '.join(missing) or value!r}")
    return folders


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nlp-rnn", description="Recurrent-network NLP: train, evaluate, serve.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--plugin", action="append", default=[], metavar="MODULE", help=PLUGIN_HELP)
    verbose = argparse.ArgumentParser(add_help=False)  # -v and --plugin after the command too
    verbose.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging")
    verbose.add_argument("--plugin", action="append", default=[], dest="plugins_after", metavar="MODULE",
                         help=PLUGIN_HELP)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_IntermixedParser)

    train = commands.add_parser("train", parents=[verbose], help="train a model from a YAML config")
    train.add_argument("config", nargs="?", help="YAML config (configs/...)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set model.hidden_size=256 (repeatable)")
    train.add_argument("--out", help="run folder (default: runs/<config name>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    train.add_argument("--seeds", default=None, metavar="0,1,2", help="one run per seed in OUT/seed-N, and "
                       "OUT/summary.json with the mean and standard deviation of the validation scores")
    train.set_defaults(run=_train)

    from nlp_rnn.tuning import PRUNERS, SAMPLERS

    tune = commands.add_parser("tune", parents=[verbose], help="search hyperparameters with Optuna (validation only)")
    tune.add_argument("config", help="YAML config the trials start from")
    tune.add_argument("--space", required=True, metavar="SPACE.yaml",
                      help="search space over dotted config keys, e.g. train.lr: {float: [1.0e-4, 1.0e-2], log: true}")
    tune.add_argument("--trials", type=int, required=True, metavar="N",
                      help="finished (complete or pruned) trials the study should hold, counting earlier runs")
    tune.add_argument("--timeout", type=float, default=None, metavar="S", help="stop starting trials after S seconds")
    tune.add_argument("--sampler", choices=SAMPLERS, default="tpe")
    tune.add_argument("--pruner", choices=PRUNERS, default="median",
                      help="stop poor trials early on their per-epoch validation score")
    tune.add_argument("--startup-trials", type=int, default=3, metavar="N",
                      help="median pruner: trials that finish before it stops any (default 3)")
    tune.add_argument("--storage", default=None, metavar="URL",
                      help="Optuna storage (default: sqlite:///OUT/study.db); a PostgreSQL or MySQL URL lets workers "
                      "on several machines share the study")
    tune.add_argument("--study", default=None, metavar="NAME", help="study name (default: the config's file name)")
    tune.add_argument("--out", help="folder for the trials' run folders and the results (default: runs/tune-CONFIG)")
    tune.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="override a config value for every trial (repeatable)")
    tune.add_argument("--seed", type=int, default=None, help="the sampler's seed (several workers: leave it unset)")
    tune.add_argument("--heartbeat", type=int, default=30, metavar="S", help="seconds between a worker's heartbeats; "
                      "a trial whose worker is silent for 3 of them is queued again")
    tune.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    tune.set_defaults(run=_tune)

    diagnose = commands.add_parser("diagnose", help="training diagnostics (gradients)")
    what = diagnose.add_subparsers(dest="what", required=True, parser_class=_IntermixedParser)
    gradients = what.add_parser("gradients", parents=[verbose], help="vanishing and exploding gradients, measured "
                                "per time step and per cell type, at initialisation and after training")
    gradients.add_argument("source", help="a classification CONFIG.yaml, or a run folder (its config)")
    gradients.add_argument("--cells", default="rnn,lstm,gru,peephole_lstm", help="cell types, comma-separated")
    gradients.add_argument("--length", type=int, default=200, metavar="L", help="time steps: texts of at least L "
                           "tokens cut to L")
    gradients.add_argument("--batches", type=int, default=4, metavar="B", help="batches averaged")
    gradients.add_argument("--batch-size", type=int, default=32)
    gradients.add_argument("--steps", type=int, default=200, metavar="N", help="training steps per cell for "
                           "'after training' and the gradient-norm distributions (0: initialisation only)")
    gradients.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    gradients.add_argument("--out", help="output folder (default: runs/diagnose-SOURCE)")
    gradients.set_defaults(run=_diagnose)

    evaluate = commands.add_parser("evaluate", parents=[verbose], help="score a run folder on a dataset split")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--split", default="test", help="train, validation, test, or a split name of the dataset")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    evaluate.add_argument("--batch-size", type=int, default=256)
    evaluate.add_argument("--beam", type=int, default=None, help="translation: beam size (1 = greedy; "
                                                                   "default: the config's search.beam_size)")
    evaluate.add_argument("--out", help="where to write metrics.json and plots or hypotheses "
                                        "(default: RUN_DIR/evaluation/SPLIT)")
    evaluate.add_argument("--max-examples", type=int, default=None, metavar="N",
                          help="score a fixed random sample of N examples (default: the whole split, whatever "
                               "data.max_eval_examples limited during training)")
    evaluate.add_argument("--device", default="auto", help=DEVICE_HELP)
    evaluate.add_argument("--ensemble", type=_runs, metavar="RUN2,RUN3", help=ENSEMBLE_HELP)
    evaluate.set_defaults(run=_evaluate)

    predict = commands.add_parser("predict", parents=[verbose], help="label texts (arguments, or stdin lines)")
    predict.add_argument("run_dir")
    predict.add_argument("text", nargs="*", help="texts to label; none: read lines from stdin")
    predict.add_argument("--json", action="store_true", help="one JSON object per input")
    predict.add_argument("--beam", type=int, default=None, help="translation: beam size (1 = greedy)")
    predict.add_argument("--nbest", type=int, default=1, help="translation: hypotheses per input, tab-separated")
    predict.add_argument("--device", default="auto", help=DEVICE_HELP)
    predict.add_argument("--ensemble", type=_runs, metavar="RUN2,RUN3", help=ENSEMBLE_HELP)
    predict.set_defaults(run=_predict)

    pack = commands.add_parser("pack", parents=[verbose],
                               help="copy a run folder for shipping: no training state, a model card")
    pack.add_argument("run_dir")
    pack.add_argument("out", nargs="?", help="the folder to write (not with --card-only)")
    pack.add_argument("--card-only", action="store_true",
                      help="write no copy: only rewrite RUN_DIR/README.md, e.g. after evaluate added scores")
    pack.add_argument("--fp16", action="store_true", help="store weights as float16 (half the size)")
    pack.add_argument("--force", action="store_true", help="replace OUT if it exists (it is deleted first)")
    pack.add_argument("--ensemble", type=_runs, metavar="RUN2,RUN3",
                      help="ship these runs too, as one ensemble folder that loads them all (classification, "
                           "tagging, translation)")
    pack.set_defaults(run=_pack)

    average = commands.add_parser("average", parents=[verbose],
                                  help="average the weights of a run's last N epochs into a run folder of their own")
    average.add_argument("run_dir")
    average.add_argument("--last", type=int, required=True, metavar="N",
                         help="how many of the last epochs (the run kept them with train.keep_epoch_weights >= N)")
    average.add_argument("--out", help="the run folder to write (default: RUN_DIR/averaged)")
    average.set_defaults(run=_average)

    export = commands.add_parser("export", parents=[verbose],
                                 help="export a run folder's model for other runtimes (ONNX)")
    export.add_argument("run_dir")
    export.add_argument("--format", default="onnx", help="onnx (the only format so far)")
    export.add_argument("--out", help="folder for the graphs, config and tokenizer (default: RUN_DIR/onnx)")
    export.add_argument("--opset", type=int, default=17, help="ONNX opset version")
    export.add_argument("--force", action="store_true", help="overwrite files in a non-empty --out")
    export.add_argument("--int8", action="store_true",
                        help="dynamic int8 weights (LSTM and Linear layers; onnxruntime's VNNI kernels where present)")
    export.set_defaults(run=_export)

    demo = commands.add_parser("demo", parents=[verbose], help="serve the Gradio web demo")
    demo.add_argument("--sentiment", default=None, help="sentiment run folder (default in a source checkout: "
                      "demo/models/sentiment-imdb; required when nlp-rnn is installed without one)")
    demo.add_argument("--translation", default=None, help="translation run folder (default in a source checkout: "
                      "demo/models/translate-de-en; required when nlp-rnn is installed without one)")
    demo.add_argument("--entities", default=None, help="tagging (named-entity) run folder (default in a source "
                      "checkout: demo/models/ner-conll2003; required when nlp-rnn is installed without one)")
    demo.add_argument("--generate", default=None, metavar="DIR[,DIR]", help="generation run folders, comma-separated "
                      "(default in a source checkout: demo/models/shakespeare-char,demo/models/reviews-imdb; "
                      "required when nlp-rnn is installed without them)")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=7860)
    demo.add_argument("--quantize", action="store_true", help="run every model with dynamic int8 quantization (CPU)")
    demo.add_argument("--device", default="auto", help=DEVICE_HELP + "; --quantize runs on the CPU")
    demo.set_defaults(run=_demo)

    from nlp_rnn.tasks import TASKS

    for task_class in TASKS.values():  # commands a task brings (generation: generate)
        task_class.add_commands(commands, [verbose])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = argv  # what command.txt records (sys.argv when None)
    args.plugins = [*args.plugin, *getattr(args, "plugins_after", [])]
    quiet = os.environ.get("RANK", "0") != "0"  # torchrun's other ranks: warnings only
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING if quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    try:
        from nlp_rnn.config import import_plugins

        import_plugins(args.plugins)
        return args.run(args)
    except NlpRnnError as err:
        interrupted = type(err).__name__ == "TrainingInterrupted"
        rank = os.environ.get("RANK", "0")
        if rank == "0":
            print(f"error: {err}", file=sys.stderr)
        elif not interrupted:  # torchrun: every rank stops alike, so rank 0 says it once; other errors are its own
            print(f"error (rank {rank}): {err}", file=sys.stderr)
        return 130 if interrupted else 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    finally:
        logging.getLogger(__name__).debug("done in %.1fs", time.perf_counter() - started)
