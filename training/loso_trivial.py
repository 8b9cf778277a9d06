"""A trivial style baseline for the LOSO folds: how much AUC do dataset style statistics alone give?

    OMP_NUM_THREADS=1 nice -n 10 python training/loso_trivial.py --data ../shared/data/faces \
        --out benchmarks/results/loso_trivial.json

Four of the five folds pair fakes with reals from a *different* dataset, so a detector can score there from resolution,
sharpness, JPEG quality or colour alone. Per face this computes a handful of cheap statistics (FEATURES: the original
file's size, bytes per pixel and JPEG quality estimated from its quantisation tables; the 224 px face crop's sharpness,
high-frequency share and brightness/saturation), then for every fold and in-distribution fits the same standardised
logistic regression as training/loso_frozen.py (`fit_head`, C by validation log loss) on the train rows and scores the
held-out rows. Also per fold: the single feature that separates the train rows best, with the sign learned there, and
its AUC on the held-out rows. A fold where this scores high says little about fakeness.
"""

from __future__ import annotations

import io
import json
import logging
import math
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from any folder

from training.data import cached_crops, split_samples  # noqa: E402
from training.loso import loso_split  # noqa: E402
from training.loso_frozen import fit_head  # noqa: E402
from training.options import study_parser, study_samples  # noqa: E402
from udfd.config import FaceSettings  # noqa: E402
from udfd.evaluation.loso import FOLDS, loso_summary, summary_markdown  # noqa: E402
from udfd.jpeg import MISSING_QUALITY, jpeg_quality  # noqa: E402

log = logging.getLogger(__name__)

FEATURES = ("log_width", "log_height", "log_bytes_per_pixel", "is_jpeg", "jpeg_quality", "log_laplacian_var",
            "high_freq_share", "brightness_mean", "brightness_std", "saturation_mean", "saturation_std")
LOSSLESS_QUALITY = 100.0  # what `design` puts in its place before fitting: a lossless file is treated as quality 100
HIGH_FREQ = 0.25  # cycles per pixel: the outer half of the band up to Nyquist counts as "high frequency"

def file_features(data: bytes, *, name: str = "<bytes>") -> np.ndarray:
    """log width, log height, log bytes per pixel, is_jpeg, jpeg_quality of an encoded image (header only; pure).

    jpeg_quality is MISSING_QUALITY (NaN) when the file is not a JPEG. Bytes that are no image raise ValueError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            (w, h), fmt, tables = im.size, im.format, getattr(im, "quantization", None)
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{name}: not a readable image ({e})") from e
    is_jpeg = fmt == "JPEG"
    quality = jpeg_quality(tables) if is_jpeg and tables else MISSING_QUALITY
    return np.array([math.log(w), math.log(h), math.log(len(data) / (w * h)), float(is_jpeg), quality])


def crop_features(crop: np.ndarray) -> np.ndarray:
    """log Laplacian variance, high-frequency energy share, brightness mean/std, saturation mean/std of an
    (H, W, 3) uint8 RGB face crop (pure; the crop is not modified). Brightness is luma and saturation HSV's S, in [0, 1]."""
    import cv2

    if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB crop, got {crop.shape} {crop.dtype}")
    rgb = crop.astype(np.float64) / 255.0
    gray = rgb @ np.array([0.299, 0.587, 0.114])
    lap = cv2.Laplacian(gray * 255.0, cv2.CV_64F, ksize=1)
    h, w = gray.shape
    window = np.outer(np.hanning(h), np.hanning(w))  # no edge discontinuity posing as high frequency
    power = np.abs(np.fft.fft2((gray - gray.mean()) * window)) ** 2
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))
    total = power.sum() - power[0, 0]
    hf = float(power[radius > HIGH_FREQ].sum() / total) if total > 0 else 0.0
    top, bottom = rgb.max(axis=2), rgb.min(axis=2)
    sat = np.divide(top - bottom, top, out=np.zeros_like(top), where=top > 0)
    return np.array([math.log1p(float(lap.var())), hf, gray.mean(), gray.std(), sat.mean(), sat.std()])


def style_features(crop: np.ndarray, data: bytes, *, name: str = "<bytes>") -> np.ndarray:
    """One row in FEATURES order: the original file's statistics, then the face crop's."""
    return np.concatenate([file_features(data, name=name), crop_features(crop)])


def dataset_style(root: Path, samples: Sequence, crops: np.ndarray) -> np.ndarray:
    """style_features of every sample (its file under root and its crop), one row each; a missing JPEG quality stays
    NaN (see `design`)."""
    from tqdm.auto import tqdm

    return np.stack([style_features(crops[i], (root / s.path).read_bytes(), name=s.path)
                     for i, s in enumerate(tqdm(samples, desc="style features", unit="img"))])


def design(features: np.ndarray) -> np.ndarray:
    """The model's input: a copy with a missing JPEG quality put at LOSSLESS_QUALITY (is_jpeg tells the two apart)."""
    x = np.array(features, dtype=float)
    q = x[:, FEATURES.index("jpeg_quality")]
    q[np.isnan(q)] = LOSSLESS_QUALITY
    if not np.isfinite(x).all():
        raise ValueError("non-finite style features besides a missing JPEG quality")
    return x


def single_features(x: np.ndarray, y: np.ndarray, train: Sequence[int], held: Sequence[int]) -> dict[str, object]:
    """Every feature alone: its orientation learned on the train rows (fakes higher or lower), the train AUC in that
    orientation and the held-out AUC in the *same* orientation (never flipped on held-out rows). The best feature is
    the one with the highest oriented train AUC."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for j, name in enumerate(FEATURES):
        a = roc_auc_score(y[train], x[train, j]) if np.ptp(x[train, j]) > 0 else 0.5
        sign = 1.0 if a >= 0.5 else -1.0
        out[name] = {"sign": sign, "train_auc": float(max(a, 1 - a)),
                     "heldout_auc": float(roc_auc_score(y[held], sign * x[held, j]))}
    best = max(out, key=lambda k: out[k]["train_auc"])
    return {"best": {"feature": best, **out[best]}, "features": out}


def run_fold(x: np.ndarray, y: np.ndarray, split: dict[str, list[int]], held_key: str) -> dict[str, object]:
    from sklearn.metrics import roc_auc_score

    train, val, held = split["train"], split["val"], split[held_key]
    w, b, c = fit_head(x, y, train, val)
    score = x @ w + b
    return {"n_real": int((y[held] == 0).sum()), "n_fake": int((y[held] == 1).sum()), "C": c,
            "val_auc": float(roc_auc_score(y[val], score[val])),
            f"{held_key}_auc": float(roc_auc_score(y[held], score[held])),
            "std_coef": dict(zip(FEATURES, (w * x[train].std(0)).round(4).tolist(), strict=True)),
            "single_feature": single_features(x, y, train, held), "fake_prob": 1 / (1 + np.exp(-score[held]))}


def separability(x: np.ndarray, y: np.ndarray, rows: Sequence[int], groups: Sequence[str], *, seed: int,
                 k: int = 5) -> float:
    """Out-of-fold AUC of the same head fitted *inside* these rows (k-fold, grouped, C = 1): how well style separates
    a fold's own reals and fakes once it may learn their style. Not a LOSO score: the ceiling of style's share."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold

    rows_a = np.asarray(rows)
    score = np.zeros(len(rows_a))
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for fit, held in cv.split(rows_a, y[rows_a], [groups[i] for i in rows_a]):
        w, b, _ = fit_head(x, y, list(rows_a[fit]), [], c=1.0)
        score[held] = x[rows_a[held]] @ w + b
    return float(roc_auc_score(y[rows_a], score))


def table(results: dict[str, dict]) -> str:
    rows = ["| fold | reals | fakes | style LR AUC | best single feature (chosen on train, sign from train) | "
            "its held-out AUC | in-fold style separability |", "|---|---:|---:|---:|---|---:|---:|"]
    for name, r in results.items():
        auc = r.get("heldout_auc", r.get("test_auc"))
        best = r["single_feature"]["best"]
        sign = "higher" if best["sign"] > 0 else "lower"
        rows.append(f"| {name} | {r['n_real']} | {r['n_fake']} | {auc:.3f} | {best['feature']} ({sign} = fake) | "
                    f"{best['heldout_auc']:.3f} | {r['separability']:.3f} |")
    return "\n".join(rows)


def _medians(feats: np.ndarray, samples: Sequence) -> dict[str, dict[str, float | None]]:
    """Per label/source, every feature's median over its faces (None where a feature is missing for all)."""
    out = {}
    for label, source in sorted({(s.label, s.source) for s in samples}):
        cols = feats[np.array([(s.label, s.source) == (label, source) for s in samples])].T
        out[f"{'fake' if label else 'real'}/{source}"] = {
            f: round(float(np.median(c[np.isfinite(c)])), 4) if np.isfinite(c).any() else None
            for f, c in zip(FEATURES, cols, strict=True)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = study_parser(__doc__, out="benchmarks/results/loso_trivial.json")
    p.add_argument("--crop-size", type=int, default=224, help="the face-crop cache to read (same as the detectors')")
    args = p.parse_args(argv)
    root, samples, y = study_samples(args)
    crops = cached_crops(root, samples, faces=FaceSettings(), size=args.crop_size, cache_dir=args.cache_dir)
    feats = dataset_style(root, samples, crops)
    x = design(feats)
    log.info("%d faces, %d not JPEG", len(x), int((feats[:, FEATURES.index("is_jpeg")] == 0).sum()))
    splits = {f.name: loso_split(samples, f.name, seed=args.seed, val=0.1, test=0.1) for f in FOLDS}
    results: dict[str, dict] = {}
    for name, split in splits.items():
        results[name] = run_fold(x, y, split, "heldout")
        log.info("%s: held-out AUC %.3f", name, results[name]["heldout_auc"])
    results["in_dist"] = run_fold(x, y, split_samples(samples, seed=args.seed, val=0.1, test=0.1), "test")
    groups = [s.group.split(":", 1)[1] if s.source.startswith("dfdc") else s.group for s in samples]  # as split_samples
    for name, split in [*splits.items(), ("in_dist", None)]:
        rows = split["heldout"] if split else range(len(samples))
        results[name]["separability"] = separability(x, y, list(rows), groups, seed=args.seed)
    summary = loso_summary({k: (y[v["heldout"]], results[k]["fake_prob"]) for k, v in splits.items()})
    for r in results.values():
        del r["fake_prob"]
    payload = {"command": "python training/loso_trivial.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
               "data": root.name, "n_faces": len(samples), "crop_size": args.crop_size, "seed": args.seed,
               "features": list(FEATURES), "missing_jpeg_quality": f"NaN, set to {LOSSLESS_QUALITY} before fitting",
               "head": "training/loso_frozen.py:fit_head (standardised logistic regression, C by val log loss)",
               "loso": summary.as_dict(), "in_dist_test_auc": results["in_dist"]["test_auc"],
               "separability": "out-of-fold AUC of the head fitted inside each fold's held-out rows (5-fold, grouped)",
               "by_source_median": _medians(feats, samples), "runs": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    log.info("wrote %s", args.out)
    print(summary_markdown({"style features + logistic regression": summary}))
    print()
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
