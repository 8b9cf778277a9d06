"""Per-image scores of image detectors on a labelled face folder, as CSV files, plus per-source AUCs.

    python training/score_faces.py ../shared/data/faces --detector mesonet4_df --detector mesoinception_df \\
        --out runs/scores/mesonet

Scores every image under <data>/real and <data>/fake the way `udfd evaluate` does (face detection with the
pipeline's detector, each detector's score of the most-fake face; faces are detected once for all detectors, crops
are scored in batches) and writes
<out>/<detector>.csv (path relative to <data>, label 0 real / 1 fake, source, fake_prob) and <out>/summary.json:
per detector the pooled AUC and, per source, the AUC of that source against the other class (a fake source against
every real image; a real source against every fake image; a source with both classes on its own).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shlex
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from udfd.config import Settings
from udfd.errors import UdfdError
from udfd.evaluation.evaluate import labelled_files
from udfd.evaluation.metrics import binary_metrics
from udfd.faces import detect_faces, get_face_detector
from udfd.media import read_image
from udfd.pipeline import load_detectors

log = logging.getLogger(__name__)


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if len(set(labels.tolist())) == 2 else None


def per_source_auc(labels: np.ndarray, probs: np.ndarray, sources: np.ndarray) -> dict[str, dict[str, Any]]:
    """Each source against the other class: fakes of a source vs all reals, reals of a source vs all fakes."""
    out = {}
    for source in sorted(set(sources.tolist())):
        here = sources == source
        n_real, n_fake = int((here & (labels == 0)).sum()), int((here & (labels == 1)).sum())
        if n_real and n_fake:
            keep, vs = here, "its own reals vs its own fakes"
        elif n_fake:
            keep, vs = here | (labels == 0), "its fakes vs every real image"
        else:
            keep, vs = here | (labels == 1), "its reals vs every fake image"
        out[source] = {"n_real": n_real, "n_fake": n_fake, "auc": _auc(labels[keep], probs[keep]), "vs": vs}
    return out


def _fake_logits(det: Any, crops: list[np.ndarray]) -> np.ndarray:
    """log(fake_prob / (1 - fake_prob)) per crop, temperature applied: what `predict` turns into fake_prob, kept
    unrounded: a Verdict rounds fake_prob to 6 decimals, and a saturated network (MesoInception: |z| up to ~90) has
    many faces at exactly 0 there, ties that would make the AUC depend on the order of the files."""
    with torch.inference_mode():
        logits = det.logits(det.preprocess(crops)).double()
    fake = det.fake_index
    return ((logits[:, fake] - logits[:, 1 - fake]) / det.temperature).numpy()


def _sigmoid(z: float) -> float:
    return float(1 / (1 + np.exp(-z))) if z >= 0 else float(np.exp(z) / (1 + np.exp(z)))


def sample_per_source(items: list[tuple[Path, int, str]], limit: int, seed: int) -> list[tuple[Path, int, str]]:
    """At most `limit` items of every (label, source), drawn with a seeded generator, in their original order."""
    rng = np.random.default_rng(seed)
    keep: set[int] = set()
    for key in sorted({(label, source) for _, label, source in items}):
        idx = [i for i, (_, label, source) in enumerate(items) if (label, source) == key]
        keep |= set(idx if len(idx) <= limit else rng.choice(idx, limit, replace=False).tolist())
    return [item for i, item in enumerate(items) if i in keep]


def score(
    root: Path, settings: Settings, *, limit: int = 0, per_source: int = 0, seed: int = 0, chunk: int = 64
) -> dict[str, list[dict[str, Any]]]:
    """detector name -> one row per analysed image (path, label, source, fake_prob, fake_logit).

    The same steps as `udfd.pipeline.analyze_image` (faces detected once, every crop scored, the most-fake face
    counts; TTA is not applied), but each detector scores the crops of `chunk` images in one batch: the family
    contract makes a score independent of its batch (tests/test_contract.py), and batches are several times faster.
    """
    detectors = load_detectors(settings)
    face_detector = get_face_detector(settings.faces)
    rows: dict[str, list[dict[str, Any]]] = {d.name: [] for d in detectors}
    items = labelled_files(root, limit=limit, seed=seed)
    items = sample_per_source(items, per_source, seed) if per_source else items
    pending: list[tuple[str, int, str, int]] = []  # (relative path, label, source, number of crops)
    crops: list[np.ndarray] = []

    def flush() -> None:
        for d in detectors:
            logits = _fake_logits(d, crops) if crops else np.zeros(0)
            start = 0
            for rel, label, source, n in pending:
                z = float(logits[start : start + n].max())
                rows[d.name].append(
                    {"path": rel, "label": label, "source": source, "fake_prob": _sigmoid(z), "fake_logit": z}
                )
                start += n
        pending.clear()
        crops.clear()

    for path, label, source in tqdm(items, desc="score", unit="img"):
        try:
            image = read_image(path, max_pixels=settings.max_pixels, max_file_bytes=settings.max_file_bytes)
            faces = detect_faces(image.pixels, settings.faces, detector=face_detector)
        except UdfdError as e:
            log.warning("skipped %s: %s", path, e)
            continue
        pending.append((path.relative_to(root).as_posix(), label, source, len(faces)))
        crops.extend(f.pixels for f in faces)
        if len(pending) >= chunk:
            flush()
    flush()
    return rows


def summarise(rows: list[dict[str, Any]], *, pairs: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """Pooled and per-source AUCs, ranked by fake_logit (fake_prob's order, without rounding ties); `pairs`:
    (fake source, real source) compared on their own, e.g. LFW swaps against the LFW images they were made from."""
    labels = np.array([int(r["label"]) for r in rows])
    logits = np.array([float(r["fake_logit"]) for r in rows])
    probs = np.array([float(r["fake_prob"]) for r in rows])
    sources = np.array([r["source"] for r in rows])
    matched = {}
    for fake, real in pairs:
        keep = ((labels == 1) & (sources == fake)) | ((labels == 0) & (sources == real))
        matched[f"{fake} vs {real}"] = {
            "n_real": int((keep & (labels == 0)).sum()),
            "n_fake": int((keep & (labels == 1)).sum()),
            "auc": _auc(labels[keep], logits[keep]),
        }
    return {
        "n_real": int((labels == 0).sum()),
        "n_fake": int((labels == 1).sum()),
        "overall_auc": _auc(labels, logits),
        "overall_accuracy": float(binary_metrics(labels.tolist(), probs.tolist(), threshold=0.5)["accuracy"]),
        "per_source": per_source_auc(labels, logits, sources),
        "pairs": matched,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path)
    p.add_argument("--detector", action="append", required=True, help="short name or reference (repeatable)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--limit", type=int, default=0, help="at most N images per class (seeded sample)")
    p.add_argument("--per-source", type=int, default=0, help="at most N images per class and source (seeded)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--pair",
        action="append",
        default=[],
        metavar="FAKE:REAL",
        help="also compare one fake source with one real source alone (repeatable)",
    )
    p.add_argument(
        "--summarise-only",
        action="store_true",
        help="recompute summary.json from the CSVs already in --out (keeps the recorded command)",
    )
    return p.parse_args(argv)


def sample_text(args: argparse.Namespace) -> str:
    sample = f"at most {args.per_source} images per class and source" if args.per_source else "every image"
    return sample + (f", at most {args.limit} per class" if args.limit else "") + f" (seed {args.seed})"


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    pairs = [tuple(p.split(":", 1)) for p in args.pair]
    if args.summarise_only:
        old = json.loads((args.out / "summary.json").read_text(encoding="utf-8"))
        summary = {}
        for name in args.detector:
            with (args.out / f"{name}.csv").open(encoding="utf-8") as f:
                table = list(csv.DictReader(f))
            command = old[name]["command"]
            scored_with = parse_args(shlex.split(command.removeprefix("python training/score_faces.py ")))
            summary[name] = summarise(table, pairs=pairs) | {"command": command, "sample": sample_text(scored_with)}
        (args.out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
        return
    settings = replace(Settings.from_env(), detectors=tuple(args.detector))
    rows = score(args.data, settings, limit=args.limit, per_source=args.per_source, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python training/score_faces.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    summary = {}
    for name, table in rows.items():
        with (args.out / f"{name}.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["path", "label", "source", "fake_prob", "fake_logit"])
            writer.writeheader()
            writer.writerows(table)
        summary[name] = summarise(table, pairs=pairs) | {"command": command, "sample": sample_text(args)}
        log.info("%s: pooled AUC %.3f on %d images", name, summary[name]["overall_auc"], len(table))
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
