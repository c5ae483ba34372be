"""CI: the installed nlp-rnn serves the demo. Run with the python of a clean venv that installed the wheel, from a
directory outside the checkout:

    VENV/bin/python CHECKOUT/.ci/installed_demo.py CHECKOUT

Checks that nlp_rnn is imported from the venv (not the checkout), that ``nlp-rnn demo`` without run folders is one
clear error line, then serves CHECKOUT's shipped models on a free port, waits until the page answers, calls the
classify, translate, entities and write endpoints once each, and stops the server. Any failure exits 1 with one
``error:`` line.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

STARTUP_TIMEOUT_S = 300  # importing gradio and torch and loading the five models on a busy 2-core machine
OPTIONS = "--sentiment RUN_DIR, --translation RUN_DIR, --entities RUN_DIR and --generate RUN_DIR"


def fail(message: str, log: Path | None = None) -> None:
    if log is not None and log.is_file():
        print("".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:]), file=sys.stderr)
    raise SystemExit(f"error: installed demo: {message}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    checkout = Path(sys.argv[1]).resolve()
    nlp_rnn_command = str(Path(sys.executable).parent / "nlp-rnn")

    import nlp_rnn

    where = Path(nlp_rnn.__file__).resolve()
    if checkout in where.parents or Path(sys.prefix).resolve() not in where.parents:
        fail(f"nlp_rnn was imported from {where}, not from the clean venv {sys.prefix}")

    missing = subprocess.run([nlp_rnn_command, "demo"], capture_output=True, text=True, check=False)
    errors = [line for line in missing.stderr.splitlines() if line.startswith("error:")]
    if missing.returncode != 2 or len(errors) != 1 or OPTIONS not in errors[0]:
        fail(f"'nlp-rnn demo' without run folders should be one error line naming every option (exit status "
             f"{missing.returncode}; stderr: {missing.stderr.strip()[-500:]!r})")

    models = checkout / "demo" / "models"
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = Path("demo.log").resolve()
    with log.open("w") as log_file:
        server = subprocess.Popen([nlp_rnn_command, "demo", "--sentiment", str(models / "sentiment-imdb"),
                                   "--translation", str(models / "translate-de-en"),
                                   "--entities", str(models / "ner-conll2003"),
                                   "--generate", f"{models / 'shakespeare-char'},{models / 'reviews-imdb'}",
                                   "--port", str(port),
                                   "--device", "cpu"], stdout=log_file, stderr=subprocess.STDOUT)
    try:
        started, deadline = time.monotonic(), time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if server.poll() is not None:
                fail(f"'nlp-rnn demo' exited with status {server.returncode} before serving", log)
            try:
                with urllib.request.urlopen(url, timeout=5) as page:
                    if page.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                fail(f"the demo did not answer on {url} within {STARTUP_TIMEOUT_S} s", log)
            time.sleep(1)
        print(f"installed demo: {url} answered after {time.monotonic() - started:.0f} s", flush=True)

        from gradio_client import Client

        client = Client(url, verbose=False)
        scores, _, _ = client.predict("A gorgeous, moving film. I loved it.", api_name="/classify")
        if scores.get("label") != "positive":
            fail(f"/classify on a glowing review returned {scores!r}", log)
        english, _, _, _ = client.predict("Ein Mann fährt Fahrrad.", 5, 3, api_name="/translate")
        if "man" not in english.lower():
            fail(f"/translate of 'Ein Mann fährt Fahrrad.' returned {english!r}", log)
        _, table, _ = client.predict("Emmanuel Macron arrived in Paris .", api_name="/entities")
        entities = [row[:2] for row in table["data"]]
        if ["LOC", "Paris"] not in entities:
            fail(f"/entities of 'Emmanuel Macron arrived in Paris .' returned {table!r}", log)
        written, _ = client.predict("shakespeare-char", "ROMEO:\n", None, 0.8, 0, 0.95, 40, 0, 0.0, api_name="/write")
        if not written.startswith("ROMEO:\n") or len(written) < 20:
            fail(f"/write after 'ROMEO:' returned {written!r}", log)
        print(f"installed demo: /classify -> {scores['label']}, /translate -> {english!r}, /entities -> {entities}, "
              f"/write -> {written[:40]!r}", flush=True)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
