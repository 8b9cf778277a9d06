"""The downloadable evidence report: one self-contained HTML file per analysis, to attach to a fact-check.

It opens with the plain-language verdict and the plain statement that a probability is not proof, then says what
was analysed (file name, size and SHA-256 of the bytes analysed, when, in UTC), shows the annotated image and each
face's crop with its scores and heat-map, what the file itself says about its origin (provenance), the models used
with their versions and measured skill, the notes and the limits.

Self-contained: images are inlined as `data:` URIs and downscaled (at most `ANNOTATED_SIDE` px for the annotated
image, `CROP_SIDE` px for the crops), the CSS is inline, there is no script and nothing is fetched (the page's
Content-Security-Policy forbids it too). Every string that came from the file or its sender (its name, metadata,
provenance, notes) is HTML-escaped.

`gather` computes what goes in (arrays and records in, a `ReportInputs` out), `report_html` renders it (pure: a
string out); `write_report` (the app's private folder, which keeps the newest `KEEP` reports) and `save_report`
(a folder of the caller's: `udfd predict --report DIR`) are the only functions that touch files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import tempfile
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from udfd.catalog import DetectorInfo, describe
from udfd.detectors.base import Detector
from udfd.errors import UdfdError
from udfd.faces import verdict_boxes
from udfd.plain import sentence
from udfd.types import Heatmap, Image, Verdict
from udfd.ui.draw import draw_verdict
from udfd.ui.report_html import FaceImages, FileFacts, ReportInputs, report_html

__all__ = ["ANNOTATED_SIDE", "CROP_SIDE", "KEEP", "FaceImages", "FileFacts", "ReportInputs", "gather",
           "report_html", "report_name", "save_report", "write_report"]
log = logging.getLogger(__name__)

KEEP = 200
ANNOTATED_SIDE = 1024  # longest side of the annotated image in the report
CROP_SIDE = 224  # longest side of each face crop and heat-map
_DIR = Path(tempfile.gettempdir()) / "udfd-reports"


def shrink(pixels: np.ndarray, side: int) -> np.ndarray:
    """An RGB copy no larger than `side` on its longest side (never enlarged)."""
    im = PILImage.fromarray(np.ascontiguousarray(pixels))
    im.thumbnail((side, side), PILImage.Resampling.LANCZOS)
    return np.asarray(im)


def gather(
    verdict: Verdict,
    pixels: np.ndarray | None,
    detector: Detector | None,
    *,
    said: str,
    detectors: Sequence[DetectorInfo],
    file: FileFacts,
    when: datetime,
    heatmaps: Sequence[Heatmap] = (),
    method: str | None = None,
) -> ReportInputs:
    """What the report of one analysis shows. `pixels`: the image the verdict was computed on (None for a video:
    the report then holds no image). `heatmaps`: one per face already computed (the app's 'Explain'); otherwise
    `detector` is explained here with `method` (its default when None). Not explainable: the report says why."""
    base = ReportInputs(verdict=verdict, said=said, detectors=tuple(detectors), file=file, when=when)
    if pixels is None:
        return dataclasses.replace(base, explanation="Images and heat-maps are not included for videos.")
    boxes = verdict_boxes(verdict, pixels)
    crops = [np.ascontiguousarray(pixels[y0:y1, x0:x1]) for x0, y0, x1, y1 in boxes]
    maps, explanation = _explain(verdict, pixels, detector, heatmaps, method)
    faces = []
    for i, crop in enumerate(crops):
        heat = None
        if maps is not None:
            from udfd.explain import overlay

            h, w = crop.shape[:2]
            heat = shrink(overlay(crop, [dataclasses.replace(maps[i], box=(0, 0, w, h))]), CROP_SIDE)
        faces.append(FaceImages(crop=shrink(crop, CROP_SIDE), heatmap=heat))
    return dataclasses.replace(base, annotated=shrink(draw_verdict(pixels, verdict), ANNOTATED_SIDE),
                               faces=tuple(faces), explanation=explanation)


def _explain(verdict: Verdict, pixels: np.ndarray, detector: Detector | None, heatmaps: Sequence[Heatmap],
             method: str | None) -> tuple[list[Heatmap] | None, str]:
    from udfd.explain import METHOD_LABELS, ExplainError, explain_methods, explain_note, explain_verdict

    maps = list(heatmaps) if len(heatmaps) == len(verdict.faces) and heatmaps else None
    if maps is None:
        if detector is None:
            return None, "No heat-map: no detector was given to explain."
        if not explain_methods(detector):
            note = explain_note(detector)
            return None, f"No heat-map: {detector.name} cannot explain its score" + (f" ({note})." if note else ".")
        try:
            maps = explain_verdict(pixels, verdict, detector, method=method)
        except (ExplainError, ValueError) as e:  # ValueError: a face box that does not fit the pixels
            log.warning("no heat-map for the report: %s", e)
            return None, f"No heat-map: {e}"
    label = METHOD_LABELS.get(maps[0].method, maps[0].method)
    return maps, (f"Heat-maps: {label} of {maps[0].detector}. Warm colours (red, yellow) mark the regions that "
                  "weighed most in its score for 'fake'. A heat-map shows where the detector looked, not what was "
                  "changed.")


def report_name(source: str | Path, taken: set[str] | None = None) -> str:
    """The report's file name for an input: its name made safe ("<name>.html"), numbered when already `taken`
    (two inputs of the same name in different folders); the name is added to `taken`."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(source).name)[:100].strip(".") or "upload"
    name, k = f"{stem}.html", 2
    while taken is not None and name in taken:
        name, k = f"{stem}-{k}.html", k + 1
    if taken is not None:
        taken.add(name)
    return name


def write_report(inputs: ReportInputs) -> str:
    """Write the report to the app's reports folder and return its path (the folder keeps the newest KEEP)."""
    _DIR.mkdir(parents=True, exist_ok=True)
    stem = report_name(inputs.file.name).removesuffix(".html")[:40]
    path = _DIR / f"udfd-report-{stem}-{uuid.uuid4().hex[:8]}.html"
    path.write_text(report_html(inputs), encoding="utf-8")
    old = sorted(_DIR.glob("udfd-report-*"), key=lambda p: p.stat().st_mtime)[:-KEEP]
    for p in old:
        p.unlink(missing_ok=True)
    return str(path)


def file_facts(path: Path, *, name: str | None = None, sha256: str | None = None) -> FileFacts:
    """Size and SHA-256 of a file (hashed here, in 1 MiB blocks, unless its `sha256` is already known)."""
    try:
        size = path.stat().st_size
        if sha256 is None:
            digest = hashlib.sha256()
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            sha256 = digest.hexdigest()
    except OSError as e:
        raise UdfdError(f"{path}: cannot read it for the report: {e.strerror or e}") from e
    return FileFacts(name=name or path.name, size_bytes=size, sha256=sha256)


def save_report(folder: Path, path: Path, verdict: Verdict, detectors: Sequence[Detector], *,
                image: Image | None = None, method: str | None = None, taken: set[str] | None = None) -> Path:
    """`udfd predict --report DIR`: the report of one analysed file, written to DIR/<name>.html (DIR is created).
    `image`: the decoded image (None for a video); the first detector is explained."""
    dets = list(detectors)
    said = sentence(verdict, thresholds={d.name: d.threshold for d in dets})
    inputs = gather(verdict, image.pixels if image is not None else None, dets[0] if dets else None, said=said,
                    detectors=[describe(d.name, d) for d in dets], when=datetime.now(UTC), method=method,
                    file=file_facts(path, sha256=image.sha256 if image is not None else None))
    out = folder / report_name(path, taken)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        out.write_text(report_html(inputs), encoding="utf-8")
    except OSError as e:
        raise UdfdError(f"cannot write the report {out}: {e.strerror or e}") from e
    log.info("report written to %s", out)
    return out
