"""keep_freed_memory: after it, a training-sized buffer freed and allocated again is reused, not page-faulted back."""

from __future__ import annotations

import subprocess
import sys

import pytest

from recsys.training.cpu_memory import keep_freed_memory

_PROBE = """
import ctypes, resource, sys, torch
from recsys.training.cpu_memory import keep_freed_memory
if sys.argv[1] == "keep":
    kept = keep_freed_memory()
else:  # control: glibc maps every block above 128 KiB afresh (its default before the dynamic threshold grows)
    kept = not ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)
def step():  # a step's activations and gradients: six 4 MiB blocks ((4096, 256) float32) alive, then freed
    blocks = [torch.ones(2**20) for _ in range(6)]
    return sum(float(b[0]) for b in blocks)
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[bool, int]:
    """Minor page faults of ten steps after three warm-up steps, with ``mode`` "keep" or "return" (control)."""
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
@pytest.mark.slow
def test_kept_memory_is_reused_instead_of_page_faulted_back():
    kept, with_keep = _faults("keep")
    _, returned = _faults("return")
    assert kept and keep_freed_memory()
    assert returned > 10 * 1024  # memory given back is faulted back: ~1,000 faults per 4 MiB block and step
    assert with_keep < returned / 20
