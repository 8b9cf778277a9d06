"""Metrics and figures of a `clip` training run: per-class tables like the CLIP report's, loss curves, triplet
distances, PCA of the projections. Arrays in, numbers and PNG files out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from udfd.evaluation.metrics import binary_metrics

PLOTS = {"loss": "loss_curves.png", "distances": "triplet_distances.png", "pca": "pca_scatter.png",
         "variance": "pca_variance.png"}


def per_class_metrics(y_true: Sequence[int], fake_prob: Sequence[float], *, threshold: float) -> dict[str, Any]:
    """`binary_metrics` (fake = positive) plus precision / recall / F1 of each class and their macro average."""
    y = np.asarray(y_true, dtype=int)
    pred = (np.asarray(fake_prob, dtype=float) >= threshold).astype(int)
    out = binary_metrics(y, fake_prob, threshold=threshold)
    classes = {}
    for label, name in ((0, "real"), (1, "fake")):
        tp = int(((pred == label) & (y == label)).sum())
        predicted, actual = int((pred == label).sum()), int((y == label).sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        classes[name] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
    out["per_class"] = classes
    out["macro"] = {k: (classes["real"][k] + classes["fake"][k]) / 2 for k in ("precision", "recall", "f1")}
    return out


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_losses(out: Path, histories: dict[str, tuple[list[float], list[float]]]) -> None:
    """Train and validation triplet loss per epoch, one panel per variant."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(histories), figsize=(4 * len(histories), 3.2), dpi=100, squeeze=False)
    for ax, (name, (train, val)) in zip(axes[0], histories.items(), strict=True):
        ax.plot(range(1, len(train) + 1), train, marker="o", label="train")
        ax.plot(range(1, len(val) + 1), val, marker="o", label="validation")
        ax.set(title=f"triplet loss ({name})", xlabel="epoch", ylabel="loss")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / PLOTS["loss"])
    plt.close(fig)


def plot_distances(out: Path, distances: dict[str, np.ndarray], *, variant: str) -> None:
    """Histogram of anchor-positive vs anchor-negative distances on the validation triplets."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    bins = np.histogram_bin_edges(np.concatenate(list(distances.values())), bins=40)
    for (name, d), color in zip(distances.items(), ("tab:blue", "tab:red"), strict=False):
        ax.hist(d, bins=bins, alpha=0.55, color=color, label=f"{name} (mean {np.mean(d):.3f})")
    ax.set(title=f"triplet distances on validation ({variant})", xlabel="L2 distance", ylabel="triplets")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / PLOTS["distances"])
    plt.close(fig)


def plot_pca(out: Path, points: np.ndarray, labels: np.ndarray, explained: np.ndarray, *, split: str) -> None:
    """2-D scatter of projections on the first two principal components, and the cumulative explained variance."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=100)
    for label, name, color in ((0, "real", "tab:blue"), (1, "fake", "tab:red")):
        sel = labels == label
        ax.scatter(points[sel, 0], points[sel, 1], s=6, alpha=0.5, color=color, label=name)
    ax.set(title=f"PCA of the projections ({split})", xlabel=f"PC1 ({explained[0]:.1%})",
           ylabel=f"PC2 ({explained[1]:.1%})" if len(explained) > 1 else "PC2")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / PLOTS["pca"])
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=100)
    ax.plot(range(1, len(explained) + 1), np.cumsum(explained), marker=".")
    ax.axhline(0.9, color="grey", linestyle=":")
    ax.set(title="cumulative explained variance", xlabel="principal components", ylabel="share of variance",
           ylim=(0, 1.02))
    fig.tight_layout()
    fig.savefig(out / PLOTS["variance"])
    plt.close(fig)


def components_for(explained: np.ndarray, share: float) -> int:
    """How many principal components explain at least `share` of the variance."""
    return int(np.searchsorted(np.cumsum(explained), share - 1e-12) + 1)
