"""`udfd scan SRC --out results.parquet [--ray [ADDRESS]]` and `udfd scan --summary results.parquet`."""

from __future__ import annotations

import argparse
import json
import logging
import signal
from dataclasses import asdict
from pathlib import Path
from typing import Any

from udfd.config import Settings
from udfd.errors import UdfdError

log = logging.getLogger(__name__)


def add_commands(sub: Any) -> None:
    sc = sub.add_parser("scan", help="scan a folder, list file or dataset into a resumable Parquet table",
                        description="One row per file and one per face. Rerun to resume: files already in --out "
                        "(same sha256 and model versions) are skipped. Put --ray last (or write --ray=ADDRESS).")
    sc.add_argument("src", nargs="?", help="folder (any depth), list file (.txt/.lst/.list, one path per line), "
                    "folder saved by Dataset.save_to_disk, or hf://datasets/ORG/NAME[@REV] (needs network)")
    sc.add_argument("--out", type=Path, help="the Parquet file to write (and resume)")
    sc.add_argument("--summary", type=Path, metavar="RESULTS", help="print counts of a scan's output and exit")
    sc.add_argument("--json", action="store_true", help="with --summary: the counts as JSON")
    sc.add_argument("--detector", action="append", help="short name or ref (repeatable; default: UDFD_DETECTORS)")
    sc.add_argument("--image-column", help="dataset sources: the image column (default: the only Image column)")
    sc.add_argument("--split", help="dataset sources: only this split")
    sc.add_argument("--workers", type=int, default=2, help="local: threads that read, decode and find faces")
    sc.add_argument("--batch-size", type=int, default=16, help="files scored per detector call (per Ray batch)")
    sc.add_argument("--flush-every", type=int, default=256, help="local: files per written part")
    sc.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                    help="run on Ray: a local Ray without ADDRESS, else join the cluster at ADDRESS (e.g. auto)")
    sc.add_argument("--actors", type=int, default=1, help="ray: scan actors (each loads the models once)")
    sc.add_argument("--cpus-per-actor", type=float, default=1.0)
    sc.add_argument("--gpus-per-actor", type=float, default=0.0, help="ray: > 0 for GPU actors (models on cuda)")
    sc.add_argument("--ray-cpus", type=int, default=None, help="ray: CPUs of the local Ray started without ADDRESS")
    sc.add_argument("--retry-errors", action="store_true",
                    help="scan the files that failed last time again (their new rows replace the error rows)")
    sc.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    sc.set_defaults(func=cmd_scan)


def cmd_scan(args: argparse.Namespace, settings: Settings) -> int:
    if args.summary:
        if args.src:
            raise UdfdError("give either SRC --out OUT (scan) or --summary RESULTS, not both")
        return _print_summary(args.summary, as_json=args.json)
    if not args.src or not args.out:
        raise UdfdError("udfd scan needs SRC and --out OUT (or --summary RESULTS)")
    if args.workers < 1 or args.batch_size < 1 or args.actors < 1:
        raise UdfdError("--workers, --batch-size and --actors must be at least 1")
    from udfd.scan.sources import records_for
    from udfd.scan.store import ScanStore

    if args.ray is not None:
        from udfd.scan.ray_engine import require_ray

        require_ray()  # before listing a large archive
    records = records_for(args.src, image_column=args.image_column, split=args.split)
    if not records:
        raise UdfdError(f"{args.src}: no image or video files found")
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a `kill` flushes what is scored, like Ctrl-C
    try:
        with ScanStore(args.out) as store:
            stats = _scan(args, settings, records, store)
    except KeyboardInterrupt:
        log.error("interrupted: the files scored so far are in %s; rerun the same command to resume", args.out)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(json.dumps({"out": str(args.out), **asdict(stats), "files_per_s": round(stats.files_per_s, 3)}))
    return 0


def _scan(args: argparse.Namespace, settings: Settings, records: list, store: Any) -> Any:
    if args.ray is not None:
        from udfd.scan.ray_engine import scan_ray

        return scan_ray(records, settings, store, address=args.ray or None, actors=args.actors,
                        cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor,
                        num_cpus=args.ray_cpus, batch_size=args.batch_size, retry_errors=args.retry_errors,
                        progress=not args.no_progress)
    from udfd.scan.core import load_models
    from udfd.scan.local import scan_local

    kinds = {r.kind for r in records}
    models = load_models(settings, images="image" in kinds, videos="video" in kinds)
    return scan_local(records, models, store, workers=args.workers, batch_size=args.batch_size,
                      flush_every=args.flush_every, retry_errors=args.retry_errors, progress=not args.no_progress)


def _print_summary(path: Path, *, as_json: bool) -> int:
    from udfd.scan.store import read_results
    from udfd.scan.summary import format_summary, summarize

    summary = summarize(read_results(path, with_parts=True))  # a killed scan's rows too
    print(json.dumps(summary, indent=1) if as_json else format_summary(summary))
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
