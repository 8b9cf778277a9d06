"""The Ray engine: the same scan as `udfd.scan.local`, on a local Ray or a cluster (optional: requirements-scale.txt).

Records go into a Ray dataset; `map_batches` runs `ScanActor` in a fixed actor pool, so each actor loads the
detectors once and then scans batch after batch with `udfd.scan.core.scan_records` (the same rows as the local
engine); the driver streams the results into the same store, so the resume rule is the same too.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from udfd.config import Settings
from udfd.errors import UdfdError
from udfd.scan.core import FileRecord, load_models, scan_records
from udfd.scan.local import ScanStats
from udfd.scan.rows import ScanRow, to_table
from udfd.scan.store import ScanStore

log = logging.getLogger(__name__)
SKIPPED = "skipped"  # row_type of the marker an actor returns for a file already in the output (never written)


def require_ray() -> Any:
    """The `ray` module, or a clear error when Ray (an optional extra) is not installed."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data ships in the ray[data] extra
    except ImportError as e:
        raise UdfdError("--ray needs Ray Data, an optional extra: pip install -r requirements-scale.txt") from e
    return ray


class ScanActor:
    """One Ray actor: loads the detectors once, then turns batches of records into rows."""

    def __init__(self, settings: Settings, done: Collection[str], images: bool, videos: bool, gpu: bool) -> None:
        if gpu:
            settings = replace(settings, device="cuda")
        self.models = load_models(settings, images=images, videos=videos)
        self.done = frozenset(done)

    def __call__(self, batch: pa.Table) -> pa.Table:
        records = [FileRecord(**r) for r in batch.to_pylist()]
        rows = scan_records(records, self.models, done=self.done)
        seen = {r.file for r in rows}
        rows += [ScanRow(row_type=SKIPPED, file=r.file, source=r.source, sha256="", kind=r.kind, models_key="")
                 for r in records if r.file not in seen]
        return to_table(rows)


def scan_ray(records: Sequence[FileRecord], settings: Settings, store: ScanStore, *, address: str | None = None,
             actors: int = 1, cpus_per_actor: float = 1.0, gpus_per_actor: float = 0.0, num_cpus: int | None = None,
             batch_size: int = 16, retry_errors: bool = False, progress: bool = True) -> ScanStats:
    """Scan `records` on Ray into `store`. Without `address` a local Ray is started (with `num_cpus`) and shut
    down afterwards; with one ("auto", "ray://host:10001", "host:6379") the scan joins that cluster."""
    ray = require_ray()
    started = not ray.is_initialized()
    if started:
        try:
            # "local": always a new local Ray, never a cluster that `ray start` left on this machine
            ray.init(address=address or "local", num_cpus=num_cpus if address is None else None,
                     include_dashboard=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise UdfdError(f"cannot start or join {where}: {e} (a cluster with token authentication needs its "
                            "token on this machine: https://docs.ray.io/en/latest/ray-security/token-auth.html)"
                            ) from e
    try:
        return _run(ray, records, settings, store, actors=actors, cpus_per_actor=cpus_per_actor,
                    gpus_per_actor=gpus_per_actor, batch_size=batch_size, retry_errors=retry_errors,
                    progress=progress)
    finally:
        if started:
            ray.shutdown()


def _run(ray: Any, records: Sequence[FileRecord], settings: Settings, store: ScanStore, *, actors: int,
         cpus_per_actor: float, gpus_per_actor: float, batch_size: int, retry_errors: bool, progress: bool
         ) -> ScanStats:
    t0 = time.perf_counter()
    stats = {"skipped": 0, "analysed": 0, "failed": 0, "rows": 0}
    if not records:
        return ScanStats(files=0, seconds=0.0, **stats)
    ray.data.DataContext.get_current().enable_progress_bars = False  # one bar: ours, below
    items = [{"file": r.file, "source": r.source, "kind": r.kind, "data": r.data} for r in records]
    ds = ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(items) / batch_size)))
    kinds = {r.kind for r in records}
    ds = ds.map_batches(
        ScanActor, batch_size=batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus_per_actor, num_gpus=gpus_per_actor or None,
        fn_constructor_kwargs={"settings": settings, "done": store.done_keys(retry_errors=retry_errors), "images": "image" in kinds,
                               "videos": "video" in kinds, "gpu": gpus_per_actor > 0},
    )
    first: float | None = None
    with tqdm(total=len(records), unit="file", desc="scan (ray)", disable=not progress, dynamic_ncols=True) as bar:
        for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            if first is None:
                first = time.perf_counter() - t0
                log.info("ray: first rows after %.1f s (actors started, models loaded)", first)
            kind = table.column("row_type")
            skipped = pc.sum(pc.equal(kind, SKIPPED)).as_py() or 0
            files = table.filter(pc.equal(kind, "file"))
            failed = pc.sum(pc.not_equal(files.column("error"), "")).as_py() or 0
            written = store.write_table(table.filter(pc.not_equal(kind, SKIPPED)))
            stats["skipped"] += skipped
            stats["failed"] += failed
            stats["analysed"] += files.num_rows - failed
            stats["rows"] += written
            bar.update(skipped + files.num_rows)
    result = ScanStats(files=len(records), seconds=time.perf_counter() - t0, **stats)
    log.info("ray: scanned %d files (%d skipped, %d failed) in %.1f s: %.2f files/s", result.files, result.skipped,
             result.failed, result.seconds, result.files_per_s)
    return result
