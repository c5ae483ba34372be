#!/usr/bin/env bash
# Create the two peer-toolkit virtual environments used by bench/peers/ and install everything they need.
# Idempotent: re-running it reuses the venvs, lets pip skip what is already installed, and re-applies the
# JoeyNMT patch only where it is still needed.
#
#   bash bench/peers/setup.sh            # both venvs
#   bash bench/peers/setup.sh keras      # only .venv-keras
#   bash bench/peers/setup.sh joeynmt    # only .venv-joeynmt
#
# PYTHON picks the interpreter (default python3.11; TensorFlow 2.21 and JoeyNMT 2.3 both install on 3.11).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3.11}"
TF_VERSION="${TF_VERSION:-2.21.0}"
TORCH_VERSION="2.13.0"   # always install this pin first: an unpinned torch would pull a multi-GB CUDA build
WHAT="${1:-all}"

make_venv() {  # make_venv DIR
    if [[ ! -x "$1/bin/python" ]]; then
        echo "== creating $1 with $PYTHON"
        "$PYTHON" -m venv "$1"
    fi
    "$1/bin/python" -m pip install --quiet --upgrade pip
}

setup_keras() {
    local V="$HERE/.venv-keras"
    make_venv "$V"
    echo "== installing tensorflow-cpu==$TF_VERSION (brings Keras 3) + pyarrow into $V"
    # tensorflow-cpu >= 2.16 depends on keras>=3, so `import keras` is Keras 3 on the TensorFlow backend.
    "$V/bin/pip" install --quiet "tensorflow-cpu==$TF_VERSION" pyarrow
    "$V/bin/python" - <<'PY'
import sys, tensorflow as tf, keras, pyarrow
print(f"keras venv ok: python {sys.version.split()[0]}, tensorflow {tf.__version__}, keras {keras.__version__}, "
      f"backend {keras.backend.backend()}, pyarrow {pyarrow.__version__}")
PY
}

setup_joeynmt() {
    local V="$HERE/.venv-joeynmt"
    make_venv "$V"
    echo "== installing torch==$TORCH_VERSION first into $V"
    "$V/bin/pip" install --quiet "torch==$TORCH_VERSION"
    echo "== installing joeynmt==2.3.0 and its missing/broken pins"
    # JoeyNMT 2.3.0 rot:
    #  * helpers.py imports importlib_metadata, which is not in its declared requirements;
    #  * it needs sentencepiece==0.2.0 (pinned here explicitly);
    # torch is repeated so the resolver keeps the CPU wheel installed above.
    "$V/bin/pip" install --quiet "torch==$TORCH_VERSION" "joeynmt==2.3.0" importlib_metadata \
        "sentencepiece==0.2.0" sacrebleu pyarrow
    echo "== patching JoeyNMT's builders.py (ReduceLROnPlateau no longer accepts verbose= in torch >= 2.7)"
    "$V/bin/python" "$HERE/patch_joeynmt.py"
    "$V/bin/python" - <<'PY'
import sys, torch, joeynmt, sentencepiece, sacrebleu
from importlib.metadata import version
print(f"joeynmt venv ok: python {sys.version.split()[0]}, torch {torch.__version__}, joeynmt {version('joeynmt')}, "
      f"sentencepiece {sentencepiece.__version__}, sacrebleu {sacrebleu.__version__}")
PY
}

case "$WHAT" in
    all) setup_keras; setup_joeynmt ;;
    keras) setup_keras ;;
    joeynmt) setup_joeynmt ;;
    *) echo "usage: $0 [all|keras|joeynmt]" >&2; exit 2 ;;
esac
