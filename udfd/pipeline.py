"""media -> faces -> detectors -> Verdict. The only orchestration in the library."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence

from udfd.compare import Comparison, agreement, compare_rows
from udfd.config import Settings
from udfd.detectors.base import Detector
from udfd.errors import UdfdError
from udfd.explain import explain_methods, explain_verdict
from udfd.faces import detect_faces, get_face_detector
from udfd.loader import load_detector
from udfd.media import decode_image, read_image
from udfd.types import FaceCrop, FaceVerdict, Image, Overall, Score, Verdict

log = logging.getLogger(__name__)


def load_detectors(settings: Settings, names: Sequence[str] | None = None) -> list[Detector]:
    return [load_detector(n, settings=settings) for n in (names or settings.detectors)]


def analyze_image(
    source: str | os.PathLike | bytes | Image,
    *,
    settings: Settings | None = None,
    detectors: Sequence[Detector] | None = None,
    name: str | None = None,
) -> Verdict:
    """Analyse one image: every face found is scored by every detector; the first detector decides.

    `source` is a path, raw bytes or an already decoded `Image`. Raises `MediaError` for bad files and
    `ModelUnavailableError` when a configured model cannot be loaded.
    """
    settings = settings or Settings()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    image = _decode(source, settings=settings, name=name)
    timings["decode"] = (time.perf_counter() - t0) * 1000

    t0 = time.perf_counter()
    faces = detect_faces(image.pixels, settings.faces, detector=get_face_detector(settings.faces))
    timings["faces"] = (time.perf_counter() - t0) * 1000

    dets = list(detectors) if detectors is not None else load_detectors(settings)
    if not dets:
        raise UdfdError("no detector configured: set UDFD_DETECTORS (e.g. UDFD_DETECTORS=vit)")
    per_detector: dict[str, list[Score]] = {}
    for det in dets:
        t0 = time.perf_counter()
        per_detector[det.name] = det.predict(det.preprocess([f.pixels for f in faces]))
        timings[det.name] = (time.perf_counter() - t0) * 1000

    face_verdicts = tuple(
        _face_verdict(face, [scores[i] for scores in per_detector.values()], band=settings.uncertain_band)
        for i, face in enumerate(faces)
    )
    notes: list[str] = []
    if not faces[0].face_found:
        notes.append("no face found: the whole image was scored as one face")
    elif len(faces) > 1:
        notes.append(f"{len(faces)} faces found: the overall verdict is the most-fake face")
    timings["total"] = sum(timings.values())
    h, w = image.pixels.shape[:2]
    return Verdict(
        file=image.source,
        kind="image",
        faces=face_verdicts,
        overall=_overall(face_verdicts, dets[0].threshold),
        model_versions={d.name: d.version for d in dets},
        timings_ms=timings,
        width=w,
        height=h,
        notes=tuple(notes),
    )


def compare_image(
    source: str | os.PathLike | bytes | Image,
    *,
    detectors: Sequence[Detector],
    settings: Settings | None = None,
    unavailable: Mapping[str, str] | None = None,
    explain: bool = True,
    name: str | None = None,
) -> Comparison:
    """Run every given detector on every face; with `explain`, each explainable detector's default heat-maps.

    The Verdict inside is decided by the first detector, as in `analyze_image`. `unavailable` (name -> reason)
    is carried through so that callers can show which detectors were left out and why.
    """
    settings = settings or Settings()
    image = _decode(source, settings=settings, name=name)
    verdict = analyze_image(image, settings=settings, detectors=detectors)
    rows = compare_rows(verdict, {d.name: d.threshold for d in detectors})
    heatmaps = []
    if explain:
        for det in detectors:
            if explain_methods(det):
                heatmaps += explain_verdict(image.pixels, verdict, det)
    return Comparison(verdict=verdict, rows=rows, agreement=agreement(rows), heatmaps=tuple(heatmaps),
                      unavailable=dict(unavailable or {}))


def _decode(source: str | os.PathLike | bytes | Image, *, settings: Settings, name: str | None) -> Image:
    if isinstance(source, Image):
        return source
    if isinstance(source, bytes):
        return decode_image(source, name=name or "<upload>", max_pixels=settings.max_pixels)
    return read_image(source, max_pixels=settings.max_pixels, max_file_bytes=settings.max_file_bytes)


def _face_verdict(face: FaceCrop, scores: list[Score], *, band: float) -> FaceVerdict:
    primary = scores[0]
    return FaceVerdict(
        box=face.box,
        face_found=face.face_found,
        confidence=round(face.confidence, 4),
        scores={s.detector: round(s.fake_prob, 6) for s in scores},
        label="fake" if primary.is_fake else "real",
        fake_prob=round(primary.fake_prob, 6),
        uncertain=abs(primary.fake_prob - primary.threshold) < band,
    )


def _overall(faces: Sequence[FaceVerdict], threshold: float) -> Overall:
    worst = max(faces, key=lambda f: f.fake_prob)
    return Overall(label=worst.label, fake_prob=worst.fake_prob, uncertain=worst.uncertain, threshold=threshold)
