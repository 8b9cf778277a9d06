"""Many images at once: decode and find faces in a bounded thread pool, run each detector once per batch of faces.

`analyze_many` gives the same verdicts as `udfd.pipeline.analyze_image` called file by file (the same three
steps: `prepare_image`, `score_faces`, `image_verdict`), in input order. A file that cannot be analysed comes back
with its error and never holds up the others. At most `workers + 2 * batch_size` files are decoded or waiting at
any time, so memory stays bounded however long the input is.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

from udfd.config import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS, Settings
from udfd.detectors.base import Detector
from udfd.errors import UdfdError
from udfd.pipeline import FaceScores, PreparedImage, image_verdict, score_faces
from udfd.types import Verdict

log = logging.getLogger(__name__)

T = TypeVar("T")



@dataclass(frozen=True)
class BatchResult(Generic[T]):
    """What became of one input item: its verdicts (one per prepared image, usually one) or its error."""

    item: T
    verdicts: tuple[Verdict, ...] = ()
    prepared: tuple[PreparedImage, ...] = ()  # the decoded images behind the verdicts (e.g. for explanations)
    error: UdfdError | None = None


def analyze_many(
    items: Iterable[T],
    prepare: Callable[[T], Sequence[PreparedImage]],
    *,
    detectors: Sequence[Detector],
    settings: Settings,
    workers: int = DEFAULT_WORKERS,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[BatchResult[T]]:
    """Verdicts for every item, in input order.

    `prepare` (run in `workers` threads) turns an item into prepared images, e.g.
    `lambda path: [prepare_image(path, settings=settings)]`; a `UdfdError` it raises becomes that item's error.
    The faces of consecutive items are gathered until there are `batch_size` of them, then every detector scores
    them in one call per `batch_size` faces. A verdict's detector timings are its share of its batch's time.
    """
    if workers < 1 or batch_size < 1:
        raise UdfdError(f"workers and batch size must be at least 1 (got {workers} and {batch_size})")
    dets = list(detectors)
    lookahead = workers + 2 * batch_size
    source = iter(items)
    pending: deque[tuple[T, Future[Sequence[PreparedImage]]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="udfd-prepare") as pool:

        def fill() -> None:
            while len(pending) < lookahead:
                try:
                    item = next(source)
                except StopIteration:
                    return
                pending.append((item, pool.submit(prepare, item)))

        group: list[tuple[T, Sequence[PreparedImage] | UdfdError]] = []
        n_faces = 0
        fill()
        try:
            while pending:
                item, future = pending.popleft()
                fill()
                try:
                    prepared = list(future.result())
                except UdfdError as e:
                    log.debug("%s: %s", item, e)
                    group.append((item, e))
                else:
                    group.append((item, prepared))
                    n_faces += sum(len(p.faces) for p in prepared)
                if n_faces >= batch_size or not pending:
                    yield from _score_group(group, dets, settings=settings, batch_size=batch_size)
                    group, n_faces = [], 0
        finally:  # a consumer that stops early: drop what was not started yet
            for _, future in pending:
                future.cancel()


def _score_group(group: list[tuple[T, Sequence[PreparedImage] | UdfdError]], dets: list[Detector], *,
                 settings: Settings, batch_size: int) -> Iterator[BatchResult[T]]:
    images = [p for _, out in group if not isinstance(out, UdfdError) for p in out]
    crops = [f.pixels for p in images for f in p.faces]
    scores = [score_faces(dets, crops[i:i + batch_size], tta=settings.tta) for i in range(0, len(crops), batch_size)]
    merged = _merge(scores) if scores else None
    start = 0
    for item, out in group:
        if isinstance(out, UdfdError):
            yield BatchResult(item, error=out)
            continue
        verdicts = []
        for p in out:
            stop = start + len(p.faces)
            verdicts.append(image_verdict(p, dets, merged.take(start, stop, share=len(p.faces) / len(crops)),
                                          settings=settings))
            start = stop
        yield BatchResult(item, verdicts=tuple(verdicts), prepared=tuple(out))


def _merge(parts: list[FaceScores]) -> FaceScores:
    """One FaceScores from consecutive chunks (scores concatenated, timings summed)."""
    first = parts[0]
    return FaceScores(
        per_detector={k: [s for p in parts for s in p.per_detector[k]] for k in first.per_detector},
        spreads=[s for p in parts for s in p.spreads],
        members=[m for p in parts for m in p.members],
        timings_ms={k: sum(p.timings_ms[k] for p in parts) for k in first.timings_ms},
    )
