"""Give memory back to the operating system after large requests (glibc malloc; elsewhere these do nothing).

glibc raises its mmap threshold after a large buffer is freed (up to 32 MB on 64-bit), so the next decoded
photo, annotated copy or report buffer comes from the heap and its pages stay with the process after the
request: the server's RSS then creeps up with every large image. A fixed threshold keeps such buffers in their own
mappings (returned on free), and a few arenas instead of eight per core bound the fragmentation of many threads;
what still fragments the heap is handed back by a periodic `malloc_trim` (`trim_periodically`). Measured in
benchmarks/results/memory_requests.json (with) and memory_requests_before.json (without). `keep_out` stops a
dependency from importing an optional package the process never uses (the app: Triton, PyArrow).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
import threading
import time

log = logging.getLogger(__name__)

# mallopt(3) parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

MMAP_THRESHOLD = 1 << 20  # bytes: buffers from 1 MiB up get their own mapping (a 4096² RGB image is 48 MiB)
TRIM_THRESHOLD = 16 << 20  # bytes of free heap top kept before it is given back
ARENA_MAX = 2


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018  (musl and other libcs lack it)
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def tune_malloc(*, mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD,
                arena_max: int = ARENA_MAX) -> bool:
    """Fix glibc's mmap and trim thresholds and its arena count for this process. True when applied."""
    libc = _libc()
    if libc is None:
        log.debug("not glibc: malloc left as it is")
        return False
    ok = all(libc.mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, mmap_threshold), (_M_TRIM_THRESHOLD, trim_threshold), (_M_ARENA_MAX, arena_max)))
    log.info("malloc: mmap threshold %d B, trim threshold %d B, at most %d arenas%s", mmap_threshold,
             trim_threshold, arena_max, "" if ok else " (some settings refused)")
    return ok


def release_memory() -> None:
    """Hand free heap pages back to the operating system (glibc `malloc_trim`); a no-op elsewhere."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def trim_periodically(interval_s: float = 10.0) -> threading.Thread | None:
    """A daemon thread that calls `release_memory` every `interval_s` seconds (a few ms each on a server's heap),
    so that the pages freed after a large request go back while the server waits. None where it would do nothing."""
    if _libc() is None or interval_s <= 0:
        return None

    def loop() -> None:
        while True:
            time.sleep(interval_s)
            release_memory()

    thread = threading.Thread(target=loop, name="udfd-malloc-trim", daemon=True)
    thread.start()
    return thread


def keep_out(*packages: str) -> list[str]:
    """Make `import <package>` raise ModuleNotFoundError in this process (Python's rule for a None entry in
    `sys.modules`), for an optional package that a dependency imports whenever it is installed although this
    process never uses it. Returns the packages kept out; one already imported stays as it is (logged)."""
    kept = []
    for name in packages:
        if sys.modules.get(name) is not None:
            log.warning("%s is already imported: it stays loaded", name)
            continue
        sys.modules[name] = None  # type: ignore[assignment]
        kept.append(name)
    return kept
