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


def labelled_files(root: Path, *, limit: int = 0, seed: int = 0,
                   only: set[str] | None = None) -> list[tuple[Path, int, str]]:
    """(path, label, source) for every image under root/real and root/fake; source = first folder below.
    `only`: keep just these paths (relative to root, e.g. a checkpoint's held-out split)."""
    out = []
    for label, name in ((0, "real"), (1, "fake")):
        base = root / name
        files = iter_image_files([base]) if base.is_dir() else []
        if only is not None:
            files = [f for f in files if f.relative_to(root).as_posix() in only]
        if limit and len(files) > limit:
            pick = np.random.default_rng(seed).choice(len(files), limit, replace=False)
            files = [files[i] for i in sorted(pick)]
        for f in files:
            parts = f.relative_to(base).parts
            out.append((f, label, parts[0] if len(parts) > 1 else "."))
    if not out:
        raise UdfdError(f"no images under {root}/real or {root}/fake")
    return out


def split_files(path: Path, split: str) -> set[str]:
    """The files of one split of a checkpoint's split.json (paths relative to the data root)."""
    import json

    try:
        splits = json.loads(Path(path).read_text(encoding="utf-8"))["splits"]
        return set(splits[split])
    except (OSError, ValueError, KeyError) as e:
        raise UdfdError(f"cannot read split {split!r} from {path}: {e}") from e


def evaluate_folder(root: Path, *, settings: Settings, limit: int = 0, seed: int = 0,
                    annotations: dict[str, Any] | None = None, only: set[str] | None = None) -> dict[str, Any]:
    """Metrics of the first configured detector (image verdict = most-fake face), overall and per source; with
    `annotations` (sha256 -> udfd.fairness.Annotation) also per gender / ethnicity group."""
    detectors = load_detectors(settings)
    primary = detectors[0]
    items = labelled_files(root, limit=limit, seed=seed, only=only)
    labels, probs, sources, errors, no_face, scored = [], [], [], [], 0, []
    for path, label, source in tqdm(items, desc=f"evaluate {primary.name}", unit="img"):
        try:
            verdict = analyze_image(path, settings=settings, detectors=[primary])
        except UdfdError as e:
            errors.append({"file": str(path), "error": str(e)})
            continue
        no_face += not verdict.faces[0].face_found
        scored.append(path)
        labels.append(label)
        probs.append(verdict.overall.fake_prob)
        sources.append(source)
    if not labels:
        raise UdfdError(f"none of the {len(items)} images under {root} could be analysed")
    t = primary.threshold
    per_group = {}
    if annotations is not None:
        from udfd.fairness_cli import per_group_report

        per_group = {"per_group": per_group_report(scored, labels, probs, annotations, threshold=t)}
    return per_group | {
        "detector": primary.name,
        "version": primary.version,
        "data": str(root),
        "overall": binary_metrics(labels, probs, threshold=t),
        # A source present under both real/ and fake/ (e.g. dfdc_faces) gets one row with both classes.
        "per_source": metrics_by_group(labels, probs, sources, threshold=t),
        "images_without_face": no_face,
        "errors": errors,
    }


def labelled_videos(root: Path) -> list[tuple[Path, int, str]]:
    """(path, label, source) for every video under root/real and root/fake."""
    from udfd.video import VIDEO_EXTENSIONS

    out = []
    for label, name in ((0, "real"), (1, "fake")):
        base = root / name
        for f in sorted(base.rglob("*")) if base.is_dir() else []:
            if f.suffix.lower() in VIDEO_EXTENSIONS and f.is_file():
                parts = f.relative_to(base).parts
                out.append((f, label, parts[0] if len(parts) > 1 else "."))
    return out


def evaluate_videos(root: Path, *, settings: Settings) -> dict[str, Any]:
    """Metrics of the first video detector (video verdict = its most-fake face track), overall and per source."""
    from udfd.pipeline import analyze_video

    detectors = load_detectors(settings, settings.video_detectors[:1])
    primary = detectors[0]
    items = labelled_videos(root)
    if not items:
        raise UdfdError(f"no videos under {root}/real or {root}/fake")
    labels, probs, sources, errors, per_video = [], [], [], [], []
    for path, label, source in tqdm(items, desc=f"evaluate {primary.name}", unit="video"):
        try:
            verdict = analyze_video(path, settings=settings, detectors=[primary])
        except UdfdError as e:
            errors.append({"file": str(path), "error": str(e)})
            continue
        labels.append(label)
        probs.append(verdict.overall.fake_prob)
        sources.append(source)
        per_video.append({"file": path.name, "label": label, "source": source,
                          "fake_prob": verdict.overall.fake_prob, "selection": verdict.video.selection,
                          "faces": len(verdict.faces), "scores": verdict.video.video_scores[primary.name]})
    if not labels:
        raise UdfdError(f"none of the {len(items)} videos under {root} could be analysed")
    t = primary.threshold
    return {
        "detector": primary.name,
        "version": primary.version,
        "data": str(root),
        "kind": "video",
        "overall": binary_metrics(labels, probs, threshold=t),
        "per_source": metrics_by_group(labels, probs, sources, threshold=t),
        "per_video": per_video,
        "errors": errors,
    }
