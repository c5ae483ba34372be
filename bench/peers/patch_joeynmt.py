"""Idempotent patch of the JoeyNMT 2.3.0 installed in the running interpreter's environment (the peer venv only).

joeynmt/builders.py builds torch.optim.lr_scheduler.ReduceLROnPlateau with ``"verbose": False``. The ``verbose``
argument was deprecated in torch 2.2 and removed in torch 2.7, where passing it raises ``TypeError`` as soon as a
config uses ``scheduling: plateau``. This drops that one dict entry; running it again finds nothing to do.

Run with the venv's interpreter:  bench/peers/.venv-joeynmt/bin/python bench/peers/patch_joeynmt.py
"""

import importlib.util
import re
import sys
from pathlib import Path

spec = importlib.util.find_spec("joeynmt")
if spec is None or not spec.submodule_search_locations:
    sys.exit("joeynmt is not installed in this interpreter's environment")
path = Path(list(spec.submodule_search_locations)[0]) / "builders.py"
text = path.read_text()
pattern = re.compile(r'^[ \t]*"verbose":\s*False,[ \t]*\n', re.MULTILINE)
new, n = pattern.subn("", text)
if n:
    path.write_text(new)
    print(f"patched {path}: dropped {n} 'verbose' argument(s) to ReduceLROnPlateau")
else:
    print(f"{path}: already patched (no 'verbose' argument left)")
