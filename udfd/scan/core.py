"""The scan's engine-independent core: file records -> prepared images -> rows, the same on every engine.

`prepare` reads, hashes, decodes, reads provenance and finds faces in one file (I/O and CPU: run it in threads or
Ray tasks); `score_prepared` runs every detector once over all the faces of a batch of prepared files and builds
their rows. Both are `udfd.pipeline`'s own steps (`prepare_image`, `score_faces`, `image_verdict`), so a scanned
file gets the verdict `analyze_image` gives it, uncertain reasons and provenance evidence included. A file that
cannot be analysed becomes an error row; nothing here raises for a bad file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from udfd.config import Settings
from udfd.detectors.base import Detector
from udfd.errors import UdfdError
from udfd.pipeline import PreparedImage, analyze_video, image_verdict, prepare_image, score_faces
from udfd.scan.rows import ScanRow, error_row, models_key, row_key, verdict_rows
from udfd.types import Image, Verdict

log = logging.getLogger(__name__)

Kind = Literal["image", "video"]


@dataclass(frozen=True)
class FileRecord:
    """One thing to scan: a file path, or image bytes from a dataset (`data`), and the source it belongs to."""

    file: str
    source: str
    kind: Kind = "image"
    data: bytes | None = None


@dataclass(frozen=True)
class Prepared:
    """A file's decoded image, provenance and faces (`udfd.pipeline.PreparedImage`), ready for the detectors."""

    record: FileRecord
    prepared: PreparedImage

    @property
    def image(self) -> Image:
        return self.prepared.image


@dataclass(frozen=True)
class Models:
    """What a scan scores with: image and video detectors (already loaded) and the settings."""

    settings: Settings
    image: tuple[Detector, ...]
    video: tuple[Detector, ...] = ()

    def versions(self, kind: Kind) -> dict[str, str]:
        return {d.name: d.version for d in (self.video if kind == "video" else self.image)}

    def thresholds(self, kind: Kind) -> dict[str, float]:
        return {d.name: float(d.threshold) for d in (self.video if kind == "video" else self.image)}


def prepare(record: FileRecord, models: Models, *, done: Collection[str] = ()) -> Prepared | list[ScanRow]:
    """Read, hash, decode and find faces: a `Prepared` image, the finished rows of a video or a bad file, or
    no rows at all when the output already holds this file (its key is in `done`)."""
    versions = models.versions(record.kind)
    settings = models.settings
    try:
        data, sha = _content(record, settings)
    except UdfdError as e:
        key = row_key(record.file, "", models_key(versions))
        return [] if key in done else [_error(record, "", versions, e)]
    if row_key(record.file, sha, models_key(versions)) in done:
        return []
    try:
        if record.kind == "video":
            verdict = analyze_video(record.file, settings=settings, detectors=models.video)
            return verdict_rows(verdict, file=record.file, source=record.source, sha256=sha,
                                thresholds=models.thresholds("video"))
        prepared = prepare_image(data, settings=settings, name=record.file)
    except Exception as e:  # noqa: BLE001 - a bad file must become an error row, whatever broke on it
        log.debug("%s failed", record.file, exc_info=True)
        return [_error(record, sha, versions, e)]
    return Prepared(record, prepared)


def score_prepared(batch: Sequence[Prepared], models: Models) -> list[ScanRow]:
    """Every image detector once over all the faces of `batch` (one forward pass each); the rows of each file.

    Verdicts are `udfd.pipeline.image_verdict`'s, as `analyze_image` gives them. If a batch fails, its files are
    retried one by one so that only the file that broke it becomes an error row.
    """
    if not batch:
        return []
    try:
        verdicts = _verdicts(batch, models)
    except Exception as e:  # noqa: BLE001 - isolate the file that broke the batch
        if len(batch) == 1:
            log.debug("%s failed", batch[0].record.file, exc_info=True)
            p = batch[0]
            return [_error(p.record, p.image.sha256, models.versions("image"), e)]
        return [row for p in batch for row in score_prepared([p], models)]
    thresholds = models.thresholds("image")
    return [row for p, v in zip(batch, verdicts, strict=True)
            for row in verdict_rows(v, file=p.record.file, source=p.record.source, sha256=p.image.sha256,
                                    thresholds=thresholds)]


def scan_records(records: Sequence[FileRecord], models: Models, *, done: Collection[str] = ()) -> list[ScanRow]:
    """`prepare` then `score_prepared`, in this thread: what one Ray actor does with one batch."""
    prepared: list[Prepared] = []
    rows: list[ScanRow] = []
    for record in records:
        out = prepare(record, models, done=done)
        if isinstance(out, Prepared):
            prepared.append(out)
        else:
            rows += out
    return rows + score_prepared(prepared, models)


def _verdicts(batch: Sequence[Prepared], models: Models) -> list[Verdict]:
    dets = models.image
    crops = [f.pixels for p in batch for f in p.prepared.faces]
    scores = score_faces(dets, crops, tta=models.settings.tta, device=models.settings.device)  # raises without dets
    verdicts, start = [], 0
    for p in batch:
        stop = start + len(p.prepared.faces)
        verdicts.append(image_verdict(p.prepared, dets, scores.take(start, stop, share=(stop - start) / len(crops)),
                                      settings=models.settings))
        start = stop
    return verdicts


def load_models(settings: Settings, *, images: bool = True, videos: bool = False) -> Models:
    """Load the image detectors (`settings.detectors`) and, with `videos`, the video detectors, on
    `settings.device`."""
    from udfd.pipeline import load_detectors

    image = tuple(load_detectors(settings)) if images else ()
    video = tuple(load_detectors(settings, settings.video_detectors)) if videos else ()
    place([*image, *video], settings.device)
    return Models(settings, image, video)


def place(detectors: Sequence[Detector], device: str) -> None:
    """Move the detectors' modules to `device` (e.g. "cuda" in a GPU actor); "cpu" leaves them as they are."""
    if device != "cpu":
        for det in detectors:
            det.module().to(device)


def _content(record: FileRecord, settings: Settings) -> tuple[bytes, str]:
    """(bytes, sha256) of an image; (b"", sha256) of a video, hashed in blocks (the video reader opens it)."""
    if record.data is not None:
        return record.data, hashlib.sha256(record.data).hexdigest()
    video = record.kind == "video"
    limit = settings.video.max_file_bytes if video else settings.max_file_bytes
    try:
        st = os.stat(record.file)
        if not stat.S_ISREG(st.st_mode):
            raise UdfdError(f"{record.file}: not a regular file")
        if st.st_size > limit:
            what = "UDFD_MAX_VIDEO_BYTES" if video else "UDFD_MAX_FILE_BYTES"
            raise UdfdError(f"{record.file}: file is {st.st_size} bytes, more than the limit of {limit} ({what})")
        if not video:
            data = Path(record.file).read_bytes()
            return data, hashlib.sha256(data).hexdigest()
        digest = hashlib.sha256()
        with open(record.file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return b"", digest.hexdigest()
    except FileNotFoundError as e:
        raise UdfdError(f"{record.file}: file not found") from e
    except OSError as e:
        raise UdfdError(f"{record.file}: cannot read file: {e.strerror or e}") from e


def _error(record: FileRecord, sha: str, versions: Mapping[str, str], e: BaseException) -> ScanRow:
    message = str(e) if isinstance(e, UdfdError) else f"{type(e).__name__}: {e}"
    return error_row(file=record.file, source=record.source, kind=record.kind, sha256=sha, versions=versions,
                     error=message)

