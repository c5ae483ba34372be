"""Peer benchmark: a Keras 3 (TensorFlow backend) BiLSTM sentiment classifier on IMDB, for speed comparisons.

Model (as in the Keras IMDB examples, sized like ours):
    Embedding(20000, 128) -> Bidirectional(LSTM(128)) -> Dense(1, sigmoid)
Data: the IMDB parquet mirror ($NLP_RNN_DATA_DIR/stanfordnlp/imdb/{train,test}.parquet, default
/work/shared/data/hf), tokenized with keras.layers.TextVectorization (max_tokens 20000, lowercase, `<br />` and
punctuation stripped), post-truncated/padded to 256 ids. Training: batch 64, Adam(1e-3), binary cross-entropy,
the full 25,000-review training split; the full 25,000-review test split is evaluated after every epoch.

Measured per epoch: training wall seconds (tokenization and evaluation excluded), reviews/s, non-pad tokens/s
(real tokens of each trained review, capped at 256), test accuracy; plus the training seconds until the test
accuracy first reaches --target (0.86). Results are printed and written as JSON to --out.

Run with the peer venv (see bench/peers/README.md):
    bench/peers/.venv-keras/bin/python bench/peers/keras_imdb.py --epochs 2
    bench/peers/.venv-keras/bin/python bench/peers/keras_imdb.py --epochs 1 --max-steps 50 --max-test 2000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported: hide its info chatter

HERE = Path(__file__).resolve().parent
MAXLEN = 256
VOCAB = 20000
BATCH = 64


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--max-train", type=int, default=None,
                   help="use a random subset of N training reviews (the vocabulary is adapted on them)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="train each epoch on the same random N*64 reviews (N batches; vocabulary from all)")
    p.add_argument("--max-test", type=int, default=None, help="evaluate on N test reviews (a fixed random subset)")
    p.add_argument("--threads", type=int, default=2, help="TensorFlow intra- and inter-op threads")
    p.add_argument("--target", type=float, default=0.86, help="test accuracy whose first reaching is timed")
    p.add_argument("--mask-zero", action="store_true",
                   help="Embedding(mask_zero=True): the LSTM skips padding (off by default, as in the Keras example)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--data-dir", default=os.environ.get("NLP_RNN_DATA_DIR", "/work/shared/data/hf"))
    p.add_argument("--out", default=str(HERE / "work" / "keras_imdb.json"), help="JSON result file")
    p.add_argument("--verbose", type=int, default=2, help="Keras fit/evaluate verbosity (0, 1 or 2)")
    return p.parse_args(argv)


def read_split(data_dir: str, split: str):
    import pyarrow.parquet as pq

    table = pq.read_table(Path(data_dir) / "stanfordnlp" / "imdb" / f"{split}.parquet", columns=["text", "label"])
    return table.column("text").to_pylist(), table.column("label").to_pylist()


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)

    import numpy as np
    import tensorflow as tf

    # Thread pools must be sized before TensorFlow's runtime starts.
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    import keras
    from keras import layers

    keras.utils.set_random_seed(args.seed)
    versions = {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "numpy": np.__version__,
    }
    print("versions:", " ".join(f"{k}={v}" for k, v in versions.items()), flush=True)

    # ---- data -------------------------------------------------------------------------------------------------
    t0 = time.perf_counter()
    train_text, train_y = read_split(args.data_dir, "train")
    test_text, test_y = read_split(args.data_dir, "test")
    rng = np.random.default_rng(args.seed)
    if args.max_train is not None:  # the mirror's train split is sorted by label: subset after a shuffle
        keep = rng.permutation(len(train_text))[: args.max_train]
        train_text, train_y = [train_text[i] for i in keep], [train_y[i] for i in keep]
    if args.max_test is not None:
        keep = rng.permutation(len(test_text))[: args.max_test]
        test_text, test_y = [test_text[i] for i in keep], [test_y[i] for i in keep]

    def standardize(text):
        text = tf.strings.lower(text)
        text = tf.strings.regex_replace(text, "<br />", " ")
        return tf.strings.regex_replace(text, r"[!\"#$%&()*+,\-./:;<=>?@\[\\\]^_`{|}~']", " ")

    vectorizer = layers.TextVectorization(
        max_tokens=VOCAB, standardize=standardize, output_mode="int", output_sequence_length=MAXLEN
    )  # output_sequence_length pads and truncates at the end (post)
    vectorizer.adapt(tf.data.Dataset.from_tensor_slices(train_text).batch(1024))

    def vectorize(texts):
        ds = tf.data.Dataset.from_tensor_slices(texts).batch(1024).map(vectorizer)
        return np.concatenate([b.numpy() for b in ds]).astype("int32")

    x_train, x_test = vectorize(train_text), vectorize(test_text)
    y_train = np.asarray(train_y, dtype="float32")
    y_test = np.asarray(test_y, dtype="float32")
    tokenize_s = time.perf_counter() - t0
    print(f"data: {len(x_train)} train / {len(x_test)} test reviews, vocab {len(vectorizer.get_vocabulary())}, "
          f"read+tokenized in {tokenize_s:.1f} s; mean non-pad tokens/review (train) "
          f"{np.count_nonzero(x_train, axis=1).mean():.1f}", flush=True)

    # ---- model ------------------------------------------------------------------------------------------------
    model = keras.Sequential([
        keras.Input(shape=(MAXLEN,), dtype="int32"),
        layers.Embedding(VOCAB, 128, mask_zero=args.mask_zero),
        layers.Bidirectional(layers.LSTM(128)),
        layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss="binary_crossentropy",
                  metrics=["accuracy"])
    n_params = model.count_params()
    model.summary(print_fn=lambda s, **_: print(s))

    # ---- train / evaluate --------------------------------------------------------------------------------------
    if args.max_steps is not None:  # a fixed random subset of max_steps batches, trained each epoch
        keep = rng.permutation(len(x_train))[: args.max_steps * BATCH]
        x_train, y_train = x_train[keep], y_train[keep]
    real_tokens = int(np.count_nonzero(x_train))  # per epoch; id 0 is padding, OOV (id 1) counts as a real token
    steps = -(-len(x_train) // BATCH)

    def cpu_seconds() -> float:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime

    class EpochClock(keras.callbacks.Callback):
        """Training time of an epoch = its start (for epoch 1: the fit() call) to the start of its test evaluation.

        One fit() call runs every epoch and evaluates the test split as validation data after each, the usual
        Keras way."""

        def __init__(self, t_fit: float, c_fit: float):
            super().__init__()
            self.t_start, self.c_start, self.rows = t_fit, c_fit, []

        def on_epoch_begin(self, epoch, logs=None):
            if epoch > 0:
                self.t_start, self.c_start = time.perf_counter(), cpu_seconds()

        def on_test_begin(self, logs=None):
            self.t_test, self.c_test = time.perf_counter(), cpu_seconds()

        def on_test_end(self, logs=None):
            self.t_test_end = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.rows.append({
                "train_seconds": self.t_test - self.t_start,
                "train_cpu_seconds": self.c_test - self.c_start,
                "eval_seconds": self.t_test_end - self.t_test,
                "logs": dict(logs or {}),
            })
            r = self.rows[-1]
            print(f"epoch {epoch + 1}: {len(x_train)} reviews in {r['train_seconds']:.1f} s -> "
                  f"{len(x_train) / r['train_seconds']:.2f} reviews/s, {real_tokens / r['train_seconds']:.1f} "
                  f"non-pad tokens/s (process CPU {r['train_cpu_seconds']:.1f} s); test acc "
                  f"{r['logs'].get('val_accuracy', float('nan')):.4f} on {len(x_test)} reviews "
                  f"(eval {r['eval_seconds']:.1f} s)", flush=True)

    # In-memory tf.data pipelines with tf.data autotuning off: with it on (as in the pipeline Keras builds for
    # NumPy input), destroying an iterator at the end of an epoch or fit() blocks, idle, for up to tens of
    # seconds while tf.data's autotuning thread finishes its sleep. A fixed prefetch of 2 batches keeps the
    # next batch ready; reshuffled every epoch.
    opts = tf.data.Options()
    opts.autotune.enabled = False
    train_ds = (tf.data.Dataset.from_tensor_slices((x_train, y_train))
                .shuffle(len(x_train), seed=args.seed, reshuffle_each_iteration=True)
                .batch(BATCH).prefetch(2).with_options(opts))
    test_ds = tf.data.Dataset.from_tensor_slices((x_test, y_test)).batch(256).prefetch(2).with_options(opts)

    t_fit, c_fit = time.perf_counter(), cpu_seconds()
    clock = EpochClock(t_fit, c_fit)
    model.fit(train_ds, epochs=args.epochs, validation_data=test_ds, verbose=args.verbose, callbacks=[clock])
    fit_total = time.perf_counter() - t_fit

    epochs, train_total, reached = [], 0.0, None
    for i, r in enumerate(clock.rows, start=1):
        train_total += r["train_seconds"]
        lg = r["logs"]
        epochs.append({
            "epoch": i,
            "steps": steps,
            "reviews": len(x_train),
            "non_pad_tokens": real_tokens,
            "train_seconds": round(r["train_seconds"], 2),
            "train_cpu_seconds": round(r["train_cpu_seconds"], 2),
            "reviews_per_s": round(len(x_train) / r["train_seconds"], 2),
            "non_pad_tokens_per_s": round(real_tokens / r["train_seconds"], 1),
            "train_loss": round(float(lg["loss"]), 4),
            "train_accuracy": round(float(lg["accuracy"]), 4),
            "test_loss": round(float(lg["val_loss"]), 4),
            "test_accuracy": round(float(lg["val_accuracy"]), 4),
            "test_reviews": len(x_test),
            "eval_seconds": round(r["eval_seconds"], 2),
            "cumulative_train_seconds": round(train_total, 2),
        })
        if reached is None and lg["val_accuracy"] >= args.target:
            reached = {"epoch": i, "train_seconds": round(train_total, 2)}

    result = {
        "toolkit": "keras",
        "task": "imdb-sentiment",
        "versions": versions,
        "config": {
            "model": f"Embedding({VOCAB},128) -> Bidirectional(LSTM(128)) -> Dense(1,sigmoid)",
            "mask_zero": args.mask_zero, "maxlen": MAXLEN, "padding": "post", "batch_size": BATCH,
            "optimizer": "Adam(lr=1e-3)", "epochs": args.epochs, "max_train": args.max_train,
            "max_steps": args.max_steps, "max_test": args.max_test, "threads": args.threads, "seed": args.seed,
            "jit_compile": bool(model.jit_compile), "input": "tf.data, in memory, prefetch 2, autotune off",
            "shuffle": "every epoch", "eval_batch_size": 256,
        },
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "parameters": int(n_params),
        "tokenize_seconds": round(tokenize_s, 2),
        "fit_total_seconds": round(fit_total, 2),
        "epochs": epochs,
        "target_accuracy": args.target,
        "time_to_target": reached,
        "final_test_accuracy": epochs[-1]["test_accuracy"] if epochs else None,
    }
    print(f"parameters: {n_params:,}; time to {args.target:.0%} test accuracy: "
          + (f"{reached['train_seconds']} s of training (epoch {reached['epoch']})" if reached else "not reached"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
    sys.exit(0)
