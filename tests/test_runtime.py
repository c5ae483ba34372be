"""keep_freed_memory: after it, a freed large buffer is reused instead of faulted in again from the kernel."""

import subprocess
import sys

import pytest

from nlp_rnn import runtime

# Allocate, touch and free a 64 MiB tensor twice; print the page faults the second allocation cost.
PROBE = """
import resource, sys, torch
from nlp_rnn import runtime
if sys.argv[1] == "keep":
    assert runtime.keep_freed_memory()
def touch():
    torch.empty(16 * 1024 * 1024).fill_(1.0)  # 64 MiB, freed on return
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
touch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults_of_second_allocation(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_freed_memory_is_reused_instead_of_faulted_in_again():
    pages = 64 * 1024 * 1024 // 4096
    assert faults_of_second_allocation("default") > pages // 2  # mmap'ed afresh: every page faults again
    assert faults_of_second_allocation("keep") < pages // 20  # the same heap pages, already mapped


def test_it_is_a_no_op_answer_off_linux(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert runtime.keep_freed_memory() is False
