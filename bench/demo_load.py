"""Load test of the web demo: concurrent clients over loopback, mixed tabs, latency percentiles and errors.

    python bench/demo_load.py [--clients 50] [--requests 500] [--translate-share 0.5] [--port 7870]

Starts the demo on the shipped models in its own process (``demo/app.py``), then ``--clients`` threads,
each with its own ``gradio_client.Client``, send ``--requests`` requests in all through Gradio's queue:
IMDB test reviews to the Sentiment endpoint and Multi30k test sentences to the Translate endpoint (beam 5,
3-best, the page's defaults), read from the mirror when NLP_RNN_DATA_DIR is set, else the demo's examples.
Latency is per request, seen by the client (queueing included). Exit status 1 when any request failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from machine import cpu  # bench/machine.py (bench/ is the script's folder)

ROOT = Path(__file__).resolve().parent.parent


def inputs(seed: int) -> tuple[list[str], list[str]]:
    """Reviews and German sentences: real test-split text from the mirror, or the demo's examples."""
    mirror = os.environ.get("NLP_RNN_DATA_DIR")
    if mirror and Path(mirror, "stanfordnlp/imdb/test.parquet").is_file():
        import pandas as pd

        reviews = pd.read_parquet(Path(mirror, "stanfordnlp/imdb/test.parquet"))["text"].sample(500, random_state=seed)
        german = pd.read_parquet(Path(mirror, "bentrevett/multi30k/test.parquet"))["de"].sample(500, random_state=seed)
        return list(reviews), list(german)
    from nlp_rnn.demo import SENTIMENT_EXAMPLES, TRANSLATION_EXAMPLES

    return SENTIMENT_EXAMPLES, TRANSLATION_EXAMPLES


def wait_until_up(url: str, server: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"error: the demo exited with status {server.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"error: the demo did not answer on {url} within {timeout:.0f} s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--translate-share", type=float, default=0.5, help="fraction of requests to Translate")
    parser.add_argument("--port", type=int, default=7870)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    print(f"CPU: {cpu()}", flush=True)

    from gradio_client import Client

    reviews, german = inputs(args.seed)
    rng = random.Random(args.seed)
    plan = [("translate", rng.choice(german)) if rng.random() < args.translate_share
            else ("classify", rng.choice(reviews)) for _ in range(args.requests)]
    url = f"http://127.0.0.1:{args.port}/"
    server = subprocess.Popen([sys.executable, str(ROOT / "demo" / "app.py"), "--port", str(args.port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_up(url, server)
        clients = [Client(url, verbose=False) for _ in range(args.clients)]
        lock, position = threading.Lock(), iter(range(len(plan)))
        results: list[tuple[str, float, str | None]] = []

        def worker(client: Client) -> None:
            while True:
                with lock:
                    index = next(position, None)
                if index is None:
                    return
                endpoint, text = plan[index]
                started = time.perf_counter()
                error = None
                try:
                    if endpoint == "classify":
                        client.predict(text, api_name="/classify")
                    else:
                        client.predict(text, 5, 3, api_name="/translate")
                except Exception as err:  # noqa: BLE001 - every failure is counted and shown, whatever its kind
                    error = f"{type(err).__name__}: {err}"
                with lock:
                    results.append((endpoint, time.perf_counter() - started, error))

        wall = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(worker, clients))
        wall = time.perf_counter() - wall
    finally:
        server.terminate()
        server.wait(30)

    clients_cpu = resource.getrusage(resource.RUSAGE_SELF)
    server_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = {"clients": args.clients, "requests": len(results), "wall_s": round(wall, 1),
              "requests_per_s": round(len(results) / wall, 2), "cpu": platform.processor() or platform.machine(),
              "cores": os.cpu_count(), "errors": sum(1 for *_, e in results if e),
              "server_cpu_s": round(server_cpu.ru_utime + server_cpu.ru_stime, 1),
              "clients_cpu_s": round(clients_cpu.ru_utime + clients_cpu.ru_stime, 1)}
    print(f"{len(results)} requests from {args.clients} clients in {wall:.1f} s "
          f"({report['requests_per_s']} requests/s), {os.cpu_count()} cores; CPU time: server (with its start-up) "
          f"{report['server_cpu_s']} s, the load-test clients {report['clients_cpu_s']} s")
    print(f"{'endpoint':<10} {'requests':>8} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} {'errors':>6}")
    for endpoint in ("classify", "translate", "all"):
        rows = [r for r in results if endpoint in ("all", r[0])]
        latencies = [seconds for _, seconds, error in rows if error is None]
        stats = {f"p{q}": round(percentile(latencies, q), 3) for q in (50, 95, 99)}
        errors = sum(1 for *_, error in rows if error)
        report[endpoint] = {"requests": len(rows), "errors": errors, **stats}
        print(f"{endpoint:<10} {len(rows):>8} {stats['p50']:>7.2f} {stats['p95']:>7.2f} {stats['p99']:>7.2f} "
              f"{errors:>6}")
    for message in sorted({e for *_, e in results if e})[:5]:
        print("error:", message)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
