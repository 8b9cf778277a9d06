"""The scan's engine-independent core: file records -> prepared images -> rows, the same on every engine.

`prepare` reads, hashes, decodes and finds faces in one file (I/O and CPU: run it in threads or Ray tasks);
`score_prepared` runs every detector once over all the faces of a batch of prepared files and builds their
rows. A file that cannot be analysed becomes an error row; nothing here raises for a bad file.
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
from udfd.faces import detect_faces, get_face_detector, scale_box
from udfd.media import decode_image, image_limits
from udfd.pipeline import analyze_image, analyze_video, uncertainty
from udfd.scan.rows import ScanRow, error_row, models_key, row_key, verdict_rows
from udfd.types import FaceCrop, FaceVerdict, Image, Overall, Score, Verdict

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
    """A decoded image and its faces, ready for the detectors."""

    record: FileRecord
    image: Image
    faces: tuple[FaceCrop, ...]


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
        image = decode_image(data, name=record.file, **image_limits(settings))
        faces = detect_faces(image.pixels, settings.faces, detector=get_face_detector(settings.faces))
    except Exception as e:  # noqa: BLE001 - a bad file must become an error row, whatever broke on it
        log.debug("%s failed", record.file, exc_info=True)
        return [_error(record, sha, versions, e)]
    return Prepared(record, image, tuple(faces))


def score_prepared(batch: Sequence[Prepared], models: Models) -> list[ScanRow]:
    """Every image detector once over all the faces of `batch` (one forward pass each); the rows of each file.

    Verdicts follow `udfd.pipeline.analyze_image`. With test-time augmentation on (UDFD_TTA) each file goes
    through `analyze_image` itself. If a batch fails, its files are retried one by one so that only the file
    that broke it becomes an error row.
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
    settings = models.settings
    dets = models.image
    if not dets:
        raise UdfdError("no detector configured: set UDFD_DETECTORS (e.g. UDFD_DETECTORS=vit)")
    if settings.tta:
        return [analyze_image(p.image, settings=settings, detectors=dets) for p in batch]
    crops = [f.pixels for p in batch for f in p.faces]
    per_detector = [det.predict(_to_device(det.preprocess(crops), settings.device)) for det in dets]
    verdicts, start = [], 0
    for p in batch:
        h, w = p.image.pixels.shape[:2]
        faces = []
        for i, face in enumerate(p.faces):
            scores = [s[start + i] for s in per_detector]
            faces.append(_face_verdict(face, scores, settings, scale_box(face.box, (w, h), p.image.size)))
        start += len(p.faces)
        worst = max(faces, key=lambda f: f.fake_prob)
        overall = Overall(label=worst.label, fake_prob=worst.fake_prob, uncertain=worst.uncertain,
                          threshold=dets[0].threshold)
        verdicts.append(Verdict(file=p.record.file, kind="image", faces=tuple(faces), overall=overall,
                                model_versions={d.name: d.version for d in dets}, timings_ms={},
                                width=p.image.size[0], height=p.image.size[1]))
    return verdicts


def _face_verdict(face: FaceCrop, scores: list[Score], settings: Settings, box: tuple[int, int, int, int]
                  ) -> FaceVerdict:
    """As `udfd.pipeline` builds a face's verdict (tests/test_scan.py checks the two agree)."""
    reason = uncertainty(scores, band=settings.uncertain_band, disagreement=settings.disagreement)
    return FaceVerdict(box=box, face_found=face.face_found, confidence=round(face.confidence, 4),
                       scores={s.detector: round(s.fake_prob, 6) for s in scores},
                       label="fake" if scores[0].is_fake else "real", fake_prob=round(scores[0].fake_prob, 6),
                       uncertain=bool(reason), uncertain_reason=reason)


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


def _to_device(batch: object, device: str) -> object:
    return batch.to(device) if device != "cpu" and hasattr(batch, "to") else batch


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

