"""How much of the frozen head's LOSO AUC is dataset style? Take the style out and look per fold.

    OMP_NUM_THREADS=1 nice -n 10 python training/loso_deconfound.py --data ../shared/data/faces \
        --out benchmarks/results/loso_deconfound.json

Four of the five LOSO folds pair fakes with reals from another dataset, and `training/loso_trivial.py`'s style-only
statistics (file size, JPEG quality, crop sharpness, colour...) separate them perfectly inside each fold. Here the
frozen ImageNet Lite0 head of `effnet_lite0` 1.1 (`training/loso_frozen.py --stats-stages 4`, same cached features)
is refitted per fold three ways, on the train rows only:

- `plain`: as shipped;
- `project`: the part of every feature that the standardised style statistics predict linearly (least squares on the
  train rows) is subtracted before the head is fitted, so the head cannot use style linearly;
- `ipw`: each train row weighted by the inverse of its class's probability given style alone (a logistic propensity
  model, clipped to [clip, 1 - clip]), so that style no longer predicts the label among the weighted rows.

A fold whose AUC falls when style is removed was being won by style; one whose AUC rises was being lost to a style
direction learnt on the other folds. Writes the per-fold table (and each mode's score files with `--scores-dir`).
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from any folder

from training.data import cached_crops, split_samples  # noqa: E402
from training.loso import loso_split, write_run_scores  # noqa: E402
from training.loso_frozen import fit_head, frozen_features  # noqa: E402
from training.loso_trivial import dataset_style, design  # noqa: E402
from training.options import study_parser, study_samples  # noqa: E402
from udfd.config import FaceSettings  # noqa: E402
from udfd.evaluation.loso import FOLDS, loso_summary, summary_markdown  # noqa: E402
from udfd.evaluation.metrics import binary_metrics  # noqa: E402

log = logging.getLogger(__name__)
MODES = ("plain", "project", "ipw")


def standardise(s: np.ndarray, rows: list[int]) -> np.ndarray:
    """Style statistics standardised by their train-row mean and deviation (pure)."""
    return (s - s[rows].mean(0)) / (s[rows].std(0) + 1e-6)


def project_out(x: np.ndarray, z: np.ndarray, rows: list[int]) -> np.ndarray:
    """x minus its least-squares prediction from [z, 1] fitted on `rows` (pure): on those rows the result is
    uncorrelated with every column of z."""
    a = np.c_[z, np.ones(len(z))]
    coef, *_ = np.linalg.lstsq(a[rows], x[rows], rcond=None)
    return x - a @ coef


def ipw_weights(y: np.ndarray, propensity: np.ndarray, rows: list[int], *, clip: float = 0.02) -> np.ndarray:
    """Inverse-propensity weights (pure): 1 / P(fake | style) for fakes, 1 / P(real | style) for reals, the
    propensity clipped to [clip, 1 - clip], each class's weights on `rows` averaging 1."""
    p = np.clip(propensity, clip, 1 - clip)
    w = np.where(y == 1, 1 / p, 1 / (1 - p))
    on = np.zeros(len(y), bool)
    on[rows] = True
    for c in (0, 1):
        if (on & (y == c)).any():
            w[y == c] /= w[on & (y == c)].mean()
    return w


def fit_mode(mode: str, x: np.ndarray, s: np.ndarray, y: np.ndarray, split: dict[str, list[int]], *,
             clip: float = 0.02) -> tuple[dict[str, np.ndarray], float]:
    """({split: fake_prob}, C) of the head fitted on split["train"] in one mode (pure)."""
    from sklearn.linear_model import LogisticRegression

    train = list(split["train"])
    z = standardise(s, train)
    feats, weights = x, None
    if mode == "project":
        feats = project_out(x, z, train)
    elif mode == "ipw":
        prop = LogisticRegression(C=1.0, max_iter=5000).fit(z[train], y[train]).predict_proba(z)[:, 1]
        weights = ipw_weights(y, prop, train, clip=clip)
    elif mode != "plain":
        raise ValueError(f"unknown mode {mode!r}; the modes are {MODES}")
    w, b, c = fit_head(feats, y, train, split["val"], weights)
    return {k: 1 / (1 + np.exp(-(feats[v] @ w + b))) for k, v in split.items() if v}, c


def main(argv: list[str] | None = None) -> int:
    p = study_parser(__doc__, out="benchmarks/results/loso_deconfound.json")
    p.add_argument("--stats-stages", default="4", help="the frozen features' stages (effnet_lite0 1.1: 4)")
    p.add_argument("--image-size", type=int, default=160)
    p.add_argument("--clip", type=float, default=0.02, help="ipw: propensities are clipped to [clip, 1 - clip]")
    p.add_argument("--scores-dir", type=Path, help="also write each mode's score files (member deconfound_<mode>)")
    args = p.parse_args(argv)
    root, samples, y = study_samples(args)
    stages = [int(v) for v in args.stats_stages.split(",") if v.strip()]
    x, *_ = frozen_features(root, samples, image_size=args.image_size, crop_size=args.image_size, stages=stages,
                            cache_dir=args.cache_dir)
    crops = cached_crops(root, samples, faces=FaceSettings(), size=224, cache_dir=args.cache_dir)  # loso_trivial's
    s = design(dataset_style(root, samples, crops))
    runs = [(f.name, loso_split(samples, f.name, seed=args.seed, val=0.1, test=0.1)) for f in FOLDS]
    runs.append(("in_dist", split_samples(samples, seed=args.seed, val=0.1, test=0.1)))
    results: dict[str, dict[str, object]] = {m: {} for m in MODES}
    held_probs: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {m: {} for m in MODES}
    for name, split in runs:
        held = "test" if name == "in_dist" else "heldout"
        for mode in MODES:
            probs, c = fit_mode(mode, x, s, y, split, clip=args.clip)
            results[mode][name] = {"auc": binary_metrics(y[split[held]], probs[held])["roc_auc"], "C": c}
            if name != "in_dist":
                held_probs[mode][name] = (y[split[held]], probs[held])
            if args.scores_dir:
                write_run_scores(args.scores_dir, f"deconfound_{mode}", samples, split, probs,
                                 loso_fold=None if name == "in_dist" else name)
        log.info("%s: %s", name, {m: round(results[m][name]["auc"], 3) for m in MODES})
    summaries = {m: loso_summary(held_probs[m]) for m in MODES}
    payload = {"command": "python training/loso_deconfound.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
               "features": f"frozen ImageNet tf_efficientnet_lite0, {args.image_size} px, stats of stages {stages}",
               "style": "training/loso_trivial.py FEATURES (standardised on each fold's train rows)",
               "clip": args.clip, "modes": {m: {"loso": summaries[m].as_dict(), "runs": results[m]} for m in MODES}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    log.info("wrote %s", args.out)
    print(summary_markdown({f"frozen Lite0 head, {m}": summaries[m] for m in MODES}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
