"""Score a labelled folder tree (DIR/real/**, DIR/fake/**) through the full pipeline and report metrics."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from udfd.config import Settings
from udfd.errors import UdfdError
from udfd.media import iter_image_files
from udfd.metrics import binary_metrics, metrics_by_group
from udfd.pipeline import analyze_image, load_detectors

log = logging.getLogger(__name__)


def labelled_files(root: Path, *, limit: int = 0, seed: int = 0) -> list[tuple[Path, int, str]]:
    """(path, label, source) for every image under root/real and root/fake; source = first folder below."""
    out = []
    for label, name in ((0, "real"), (1, "fake")):
        base = root / name
        files = iter_image_files([base]) if base.is_dir() else []
        if limit and len(files) > limit:
            pick = np.random.default_rng(seed).choice(len(files), limit, replace=False)
            files = [files[i] for i in sorted(pick)]
        for f in files:
            parts = f.relative_to(base).parts
            out.append((f, label, parts[0] if len(parts) > 1 else "."))
    if not out:
        raise UdfdError(f"no images under {root}/real or {root}/fake")
    return out


def evaluate_folder(root: Path, *, settings: Settings, limit: int = 0, seed: int = 0) -> dict[str, Any]:
    """Metrics of the first configured detector (image verdict = most-fake face), overall and per source."""
    detectors = load_detectors(settings)
    primary = detectors[0]
    items = labelled_files(root, limit=limit, seed=seed)
    labels, probs, sources, errors, no_face = [], [], [], [], 0
    for path, label, source in tqdm(items, desc=f"evaluate {primary.name}", unit="img"):
        try:
            verdict = analyze_image(path, settings=settings, detectors=[primary])
        except UdfdError as e:
            errors.append({"file": str(path), "error": str(e)})
            continue
        no_face += not verdict.faces[0].face_found
        labels.append(label)
        probs.append(verdict.overall.fake_prob)
        sources.append(source)
    if not labels:
        raise UdfdError(f"none of the {len(items)} images under {root} could be analysed")
    t = primary.threshold
    return {
        "detector": primary.name,
        "version": primary.version,
        "data": str(root),
        "overall": binary_metrics(labels, probs, threshold=t),
        # A source present under both real/ and fake/ (e.g. dfdc_faces) gets one row with both classes.
        "per_source": metrics_by_group(labels, probs, sources, threshold=t),
        "images_without_face": no_face,
        "errors": errors,
    }
