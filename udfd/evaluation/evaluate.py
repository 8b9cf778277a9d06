"""Score a labelled folder tree (DIR/real/**, DIR/fake/**) through the full pipeline and report metrics."""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from udfd.batch import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS, analyze_many
from udfd.config import Settings
from udfd.errors import UdfdError
from udfd.evaluation.metrics import (
    binary_metrics,
    calibration_bins,
    expected_calibration_error,
    metrics_by_group,
    robustness_delta,
)
from udfd.media import iter_image_files, read_image
from udfd.perturb import Perturbation
from udfd.pipeline import PreparedImage, load_detectors, prepare_image

log = logging.getLogger(__name__)


def labelled_files(
    root: Path, *, limit: int = 0, seed: int = 0, only: Collection[str] | None = None
) -> list[tuple[Path, int, str]]:
    """(path, label, source) for every image under root/real and root/fake; source = first folder below.

    `only`: keep just these paths relative to root (e.g. a checkpoint's held-out split), before sampling `limit`.
    """
    out = []
    keep = set(only) if only is not None else None
    for label, name in ((0, "real"), (1, "fake")):
        base = root / name
        files = iter_image_files([base]) if base.is_dir() else []
        if keep is not None:
            files = [f for f in files if f.relative_to(root).as_posix() in keep]
        if limit and len(files) > limit:
            pick = np.random.default_rng(seed).choice(len(files), limit, replace=False)
            files = [files[i] for i in sorted(pick)]
        for f in files:
            parts = f.relative_to(base).parts
            out.append((f, label, parts[0] if len(parts) > 1 else "."))
    if not out:
        raise UdfdError(f"no images under {root}/real or {root}/fake")
    return out


def evaluate_folder(
    root: Path, *, settings: Settings, limit: int = 0, seed: int = 0, perturbations: Sequence[Perturbation] = (),
    only: Collection[str] | None = None, subset: str = "all", annotations: dict[str, Any] | None = None,
    workers: int = DEFAULT_WORKERS, batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[str, Any]:
    """Metrics of every configured detector through the full pipeline (image score = its most-fake face).

    The first detector is the primary one: `overall` / `per_source` / `calibration` are its, as before. With
    `perturbations`, every image is scored again after each one (faces detected anew on the perturbed image) and
    `robustness[detector]` holds the clean metrics and, per perturbation, the changes (`metrics.robustness_delta`).
    With `annotations` (sha256 -> udfd.evaluation.fairness.Annotation), `per_group` holds the primary detector's metrics per
    gender / ethnicity group (udfd.evaluation.fairness.per_group_report). Files are decoded in `workers` threads
    and scored `batch_size` faces per detector call (`udfd.batch.analyze_many`): the verdicts are those of one
    `analyze_image` per file.
    """
    detectors = load_detectors(settings)
    primary = detectors[0]
    if len({d.name for d in detectors}) != len(detectors):
        raise UdfdError(f"two detectors share a name in {settings.detectors}: evaluate them one at a time")
    refs = {d.name: ref for d, ref in zip(detectors, settings.detectors, strict=True)}
    items = labelled_files(root, limit=limit, seed=seed, only=only)
    conditions = ("clean", *(p.name for p in perturbations))
    labels, sources, errors, scored = [], [], [], []
    probs: dict[str, dict[str, list[float]]] = {c: {d.name: [] for d in detectors} for c in conditions}
    no_face = dict.fromkeys(conditions, 0)
    desc = f"evaluate {', '.join(d.name for d in detectors)}" + (f" × {len(conditions)} conditions" if perturbations
                                                                  else "")

    def prepare(job: tuple[int, tuple[Path, int, str]]) -> list[PreparedImage]:
        i, (path, _, _) = job
        image = read_image(path, max_pixels=settings.max_pixels, max_file_bytes=settings.max_file_bytes)
        views = [image] + [replace(image, pixels=p.apply(image.pixels, seed=seed + i)) for p in perturbations]
        return [prepare_image(v, settings=settings) for v in views]  # clean first, then each perturbation

    results = analyze_many(enumerate(items), prepare, detectors=detectors, settings=settings, workers=workers,
                           batch_size=batch_size)
    for result in tqdm(results, total=len(items), desc=desc, unit="img"):
        path, label, source = result.item[1]
        if result.error is not None:
            errors.append({"file": str(path), "error": str(result.error)})
            continue
        labels.append(label)
        sources.append(source)
        scored.append(path)
        for c, verdict in zip(conditions, result.verdicts, strict=True):
            no_face[c] += not verdict.faces[0].face_found
            for d in detectors:
                probs[c][d.name].append(max(f.scores[d.name] for f in verdict.faces))
    if not labels:
        raise UdfdError(f"none of the {len(items)} images under {root} could be analysed")
    clean = probs["clean"]
    t = primary.threshold
    report: dict[str, Any] = {
        "detector": primary.name,
        "version": primary.version,
        "data": str(root),
        "subset": subset,
        "limit_per_class": limit,
        "seed": seed,
        "overall": binary_metrics(labels, clean[primary.name], threshold=t),
        # A source present under both real/ and fake/ (e.g. dfdc_faces) gets one row with both classes.
        "per_source": metrics_by_group(labels, clean[primary.name], sources, threshold=t),
        "calibration": _calibration(labels, clean[primary.name]),
        "images_without_face": no_face["clean"],
        "errors": errors,
    }
    if len(detectors) > 1:
        report["detectors"] = {
            d.name: {"version": d.version, "overall": binary_metrics(labels, clean[d.name], threshold=d.threshold),
                     "calibration": _calibration(labels, clean[d.name])}
            for d in detectors
        }
    if annotations is not None:
        from udfd.evaluation.fairness import per_group_report

        report["per_group"] = per_group_report(scored, labels, clean[primary.name], annotations, threshold=t)
    if perturbations:
        report["perturbations"] = [p.name for p in perturbations]
        report["images_without_face_after"] = {p.name: no_face[p.name] for p in perturbations}
        report["robustness"] = {d.name: {"ref": refs[d.name]} | _robustness(d, labels, probs, perturbations)
                                for d in detectors}
    return report


def split_files(path: Path, split: str) -> list[str]:
    """The relative paths of one split in a checkpoint's split.json ({"splits": {"test": [...]}})."""
    try:
        splits = json.loads(path.read_text(encoding="utf-8"))["splits"]
        return list(splits[split])
    except (OSError, ValueError, KeyError) as e:
        raise UdfdError(f"cannot read split {split!r} from {path}: {e}") from e


def robustness_on_crops(det: Any, crops: Sequence[np.ndarray], labels: Sequence[int],
                        perturbations: Sequence[Perturbation], *, batch_size: int = 32, seed: int = 0) -> dict[str, Any]:
    """The robustness entry of `evaluate_folder` for face crops already cut (training's held-out split): each
    perturbation is applied to the crop itself, so no face is re-detected."""

    def score(images: list[np.ndarray]) -> list[float]:
        return [s.fake_prob for i in range(0, len(images), batch_size)
                for s in det.predict(det.preprocess(images[i:i + batch_size]))]

    probs = {"clean": {det.name: score(list(crops))}}
    for p in perturbations:
        probs[p.name] = {det.name: score([p.apply(c, seed=seed + i) for i, c in enumerate(crops)])}
    return {"scope": "crops"} | _robustness(det, labels, probs, perturbations)


def _robustness(det: Any, labels: Sequence[int], probs: dict[str, dict[str, list[float]]],
                perturbations: Sequence[Perturbation]) -> dict[str, Any]:
    clean = probs["clean"][det.name]
    m = binary_metrics(labels, clean, threshold=det.threshold)
    return {
        "version": det.version,
        "threshold": det.threshold,
        "clean": {"n": m["n"], "accuracy": m["accuracy"], "roc_auc": m["roc_auc"],
                  "ece": expected_calibration_error(labels, clean)},
        "perturbed": {p.name: robustness_delta(labels, clean, probs[p.name][det.name], threshold=det.threshold)
                      for p in perturbations},
    }


def _calibration(labels: Sequence[int], probs: Sequence[float], n_bins: int = 15) -> dict[str, Any]:
    return {"ece": expected_calibration_error(labels, probs, n_bins=n_bins), "n_bins": n_bins,
            "bins": calibration_bins(labels, probs, n_bins=n_bins)}


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
