"""The local engine: a bounded thread pool prepares files (read, hash, decode, faces) while this thread scores
them in batches, and a store writes the rows as they come."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from tqdm import tqdm

from udfd.scan.core import FileRecord, Models, Prepared, prepare, score_prepared
from udfd.scan.rows import ScanRow
from udfd.scan.store import ScanStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScanStats:
    """What one scan did: files listed, skipped (already in the output), analysed, failed; rows; seconds."""

    files: int
    skipped: int
    analysed: int
    failed: int
    rows: int
    seconds: float

    @property
    def files_per_s(self) -> float:
        return (self.analysed + self.failed) / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Tally:
    skipped: int = 0
    analysed: int = 0
    failed: int = 0
    rows: int = 0

    def count(self, rows: Sequence[ScanRow]) -> None:
        for r in rows:
            if r.row_type == "file":
                self.failed += bool(r.error)
                self.analysed += not r.error
        self.rows += len(rows)


def scan_local(records: Sequence[FileRecord], models: Models, store: ScanStore, *, workers: int = 2,
               batch_size: int = 16, flush_every: int = 256, progress: bool = True,
               retry_errors: bool = False, on_batch: Callable[[int], None] | None = None) -> ScanStats:
    """Scan `records` into `store`, skipping files already there (and, unless `retry_errors`, files that failed).

    At most `2 * workers * batch_size` files are in flight; rows are flushed to a new part every `flush_every`
    files and whatever is pending when the scan stops (also on an exception or Ctrl-C). `on_batch(n)` is called
    after each scored batch with the number of files finished so far (tests interrupt a scan through it).
    """
    done = store.done_keys(retry_errors=retry_errors)
    t0 = time.perf_counter()
    tally, pending_rows, ready = _Tally(), [], []
    finished = 0
    bar = tqdm(total=len(records), unit="file", desc="scan", disable=not progress, dynamic_ncols=True)

    pending_files = 0

    def finish(rows: list[ScanRow], n_files: int, *, force: bool = False) -> None:
        nonlocal finished, pending_files
        pending_rows.extend(rows)
        pending_files += sum(r.row_type == "file" for r in rows)
        finished += n_files
        bar.update(n_files)
        if pending_rows and (force or pending_files >= flush_every):
            store.write(pending_rows)
            tally.count(pending_rows)
            pending_rows.clear()
            pending_files = 0

    def score(force: bool = False) -> None:
        while len(ready) >= batch_size or (force and ready):
            batch, ready[:] = ready[:batch_size], ready[batch_size:]
            finish(score_prepared(batch, models), len(batch))
            if on_batch:
                on_batch(finished)

    window = max(1, 2 * workers * batch_size)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="udfd-scan")
    try:
        todo = iter(records)
        running: set[Future] = set()
        while True:
            for record in todo:
                running.add(pool.submit(prepare, record, models, done=done))
                if len(running) >= window:
                    break
            if not running:
                break
            finished_now, running = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished_now:
                out = fut.result()
                if isinstance(out, Prepared):
                    ready.append(out)
                else:
                    tally.skipped += not out
                    finish(out, 1)
            score()
        score(force=True)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # on Ctrl-C, do not wait for the files in flight
        finish([], 0, force=True)  # on an interruption too: what was scored is kept
        bar.close()
    stats = ScanStats(files=len(records), skipped=tally.skipped, analysed=tally.analysed, failed=tally.failed,
                      rows=tally.rows, seconds=time.perf_counter() - t0)
    log.info("scanned %d files (%d skipped, %d failed) in %.1f s: %.2f files/s", stats.files, stats.skipped,
             stats.failed, stats.seconds, stats.files_per_s)
    return stats
