"""udfd.memory: glibc malloc tuning and trimming give freed heap pages back to the operating system."""

from __future__ import annotations

import subprocess
import sys

import pytest

from udfd.memory import _libc, release_memory, trim_periodically, tune_malloc

needs_glibc = pytest.mark.skipif(_libc() is None, reason="glibc malloc only")

# Fragment the heap: 300 buffers of 900 KB (under the 1 MiB mmap threshold: on the heap), keep every tenth.
_CHILD = """
import psutil, sys
from udfd.memory import release_memory, tune_malloc
tune_malloc()
p = psutil.Process()
bufs = [bytearray(900_000) for _ in range(300)]
kept = bufs[::10]
del bufs
before = p.memory_info().rss
release_memory()
print(before - p.memory_info().rss)
"""


@needs_glibc
def test_release_memory_hands_back_a_fragmented_heap():
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=60, check=True)
    freed = int(out.stdout.split()[-1])
    assert freed > 100 * 1024 * 1024, f"only {freed} bytes given back"


@needs_glibc
def test_tune_malloc_applies_and_the_trimmer_runs_in_the_background():
    assert tune_malloc() is True
    thread = trim_periodically(3600)
    assert thread is not None and thread.daemon and thread.is_alive()
    release_memory()  # callable at any time
    assert trim_periodically(0) is None


_KEEP_OUT = """
import json, sys
from udfd.memory import keep_out
import json as already
kept = keep_out("colorsys", "json")  # colorsys: not imported yet; json: already imported, stays
try:
    import colorsys
    refused = False
except ModuleNotFoundError:
    refused = True
import json
print(json.dumps({"kept": kept, "refused": refused, "json_works": json.loads("[1]") == [1]}))
"""


def test_keep_out_refuses_a_later_import_and_leaves_an_imported_module():
    out = subprocess.run([sys.executable, "-c", _KEEP_OUT], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip().splitlines()[-1] == '{"kept": ["colorsys"], "refused": true, "json_works": true}'
