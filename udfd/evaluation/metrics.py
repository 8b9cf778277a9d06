"""Metrics and calibration (pure: arrays in, numbers out). Fake is the positive class."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

_EPS = 1e-7


def binary_metrics(y_true: Sequence[int], fake_prob: Sequence[float], *, threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, precision, recall, F1, ROC-AUC, AP, log loss, Brier and confusion counts at `threshold`."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y_true, dtype=int)
    p = np.clip(np.asarray(fake_prob, dtype=float), 0.0, 1.0)
    pred = (p >= threshold).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    both = len(set(y.tolist())) == 2
    pc = np.clip(p, _EPS, 1 - _EPS)
    return {
        "n": int(len(y)),
        "n_real": int((y == 0).sum()),
        "n_fake": int((y == 1).sum()),
        "threshold": float(threshold),
        "accuracy": (tp + tn) / len(y) if len(y) else float("nan"),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "average_precision": float(average_precision_score(y, p)) if both else None,
        "log_loss": float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc))) if len(y) else None,
        "brier": float(np.mean((p - y) ** 2)) if len(y) else None,
        "confusion": {"tp": tp, "fp": fp, "tn": tn, "fn": fn},
    }


def metrics_by_group(
    y_true: Sequence[int], fake_prob: Sequence[float], groups: Sequence[str], *, threshold: float = 0.5
) -> dict[str, dict[str, Any]]:
    """`binary_metrics` for every distinct value of `groups` (e.g. the source folder)."""
    y, p, g = np.asarray(y_true), np.asarray(fake_prob), np.asarray(groups)
    return {str(k): binary_metrics(y[g == k], p[g == k], threshold=threshold) for k in sorted(set(g.tolist()))}


def best_f1_threshold(y_true: Sequence[int], fake_prob: Sequence[float]) -> float:
    """The threshold on `fake_prob` that maximises F1 on this set (ties -> the higher threshold)."""
    y = np.asarray(y_true, dtype=int)
    p = np.asarray(fake_prob, dtype=float)
    best_t, best_f1 = 0.5, -1.0
    for t in np.unique(p):
        pred = p >= t
        tp = float((pred & (y == 1)).sum())
        denom = pred.sum() + (y == 1).sum()
        f1 = 2 * tp / denom if denom else 0.0
        if f1 >= best_f1:
            best_t, best_f1 = float(t), f1
    return best_t


def fit_temperature(logits: np.ndarray, y_true: Sequence[int], *, fake_index: int = 1) -> float:
    """Temperature T > 0 minimising the NLL of softmax(logits / T) (Guo et al. 2017), by bounded 1-D search."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=float)
    y = np.asarray(y_true, dtype=int)
    target = np.where(y == 1, fake_index, 1 - fake_index)

    def nll(log_t: float) -> float:
        s = z / np.exp(log_t)
        s = s - s.max(axis=1, keepdims=True)
        logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(y)), target].mean())

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def best_youden_threshold(y_true: Sequence[int], fake_prob: Sequence[float]) -> float:
    """The threshold maximising Youden's J = TPR - FPR (i.e. balanced accuracy).

    Unlike max-F1 it does not drift to "everything is fake" when the model is weak and classes are balanced.
    """
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(np.asarray(y_true, dtype=int), np.asarray(fake_prob, dtype=float))
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))


def fake_sources_vs_reals(
    y_true: Sequence[int], fake_prob: Sequence[float], groups: Sequence[str], *, threshold: float = 0.5
) -> dict[str, dict[str, Any]]:
    """For every source that holds only fakes: metrics of its fakes against all reals of the set (gives an AUC)."""
    y, p, g = np.asarray(y_true), np.asarray(fake_prob), np.asarray(groups)
    out = {}
    for k in sorted(set(g.tolist())):
        if set(y[g == k].tolist()) == {1}:
            rows = (g == k) | (y == 0)
            out[f"{k} vs all real"] = binary_metrics(y[rows], p[rows], threshold=threshold)
    return out


def calibration_bins(y_true: Sequence[int], fake_prob: Sequence[float], *, n_bins: int = 15) -> list[dict[str, Any]]:
    """Equal-width bins of `fake_prob` on [0, 1] (the last one closed): count, mean fake_prob, share of fakes.

    Empty bins are listed with count 0 and None for the means (the reliability diagram skips them).
    """
    y = np.asarray(y_true, dtype=float)
    p = np.clip(np.asarray(fake_prob, dtype=float), 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1], right=True), 0, n_bins - 1)  # bin i holds (e_i, e_i+1]; 0 in bin 0
    out = []
    for i in range(n_bins):
        sel = idx == i
        n = int(sel.sum())
        out.append({"lo": float(edges[i]), "hi": float(edges[i + 1]), "count": n,
                    "mean_fake_prob": float(p[sel].mean()) if n else None,
                    "fake_share": float(y[sel].mean()) if n else None})
    return out


def expected_calibration_error(y_true: Sequence[int], fake_prob: Sequence[float], *, n_bins: int = 15) -> float:
    """ECE of `fake_prob` as a probability of "fake": Σ_b (n_b / N) · |mean fake_prob_b − share of fakes_b|.

    15 equal-width bins on [0, 1], bin b = (lo, hi] (0 falls in the first). This is the binary ECE of torchmetrics'
    `BinaryCalibrationError(norm="l1")` (confidence = fake_prob, accuracy = label); it equals the top-label ECE of
    Guo et al. (2017) except in the bin that straddles 0.5.
    """
    bins = calibration_bins(y_true, fake_prob, n_bins=n_bins)
    total = sum(b["count"] for b in bins)
    if not total:
        return float("nan")
    return float(sum(b["count"] / total * abs(b["mean_fake_prob"] - b["fake_share"]) for b in bins if b["count"]))


def robustness_delta(
    y_true: Sequence[int], clean: Sequence[float], perturbed: Sequence[float], *, threshold: float
) -> dict[str, Any]:
    """How much a perturbation moves a detector on the same images (fake = positive).

    Returns AUC and accuracy after, their change from clean, mean |Δ fake_prob|, the share of verdicts that flip,
    and the direction of flips (real images newly called fake — the usual complaint — and fakes newly missed).
    """
    y = np.asarray(y_true, dtype=int)
    a = np.asarray(clean, dtype=float)
    b = np.asarray(perturbed, dtype=float)
    if not (len(y) == len(a) == len(b)) or not len(y):
        raise ValueError(f"need equal, non-empty lengths, got {len(y)}, {len(a)}, {len(b)}")
    before = binary_metrics(y, a, threshold=threshold)
    after = binary_metrics(y, b, threshold=threshold)
    fa, fb = a >= threshold, b >= threshold
    flips = fa != fb
    reals, fakes = y == 0, y == 1
    auc_delta = (after["roc_auc"] - before["roc_auc"]) if before["roc_auc"] is not None else None
    return {
        "n": int(len(y)),
        "roc_auc": after["roc_auc"],
        "accuracy": after["accuracy"],
        "delta_roc_auc": auc_delta,
        "delta_accuracy": after["accuracy"] - before["accuracy"],
        "mean_abs_delta_fake_prob": float(np.abs(b - a).mean()),
        "mean_delta_fake_prob": float((b - a).mean()),
        "flip_share": float(flips.mean()),
        "real_newly_fake_share": float((~fa & fb & reals).sum() / reals.sum()) if reals.any() else None,
        "fake_newly_real_share": float((fa & ~fb & fakes).sum() / fakes.sum()) if fakes.any() else None,
        "real_called_fake_share": float((fb & reals).sum() / reals.sum()) if reals.any() else None,
    }
