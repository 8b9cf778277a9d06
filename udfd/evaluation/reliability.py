"""Reliability diagram (edge module: writes a PNG) from `metrics.calibration_bins` output."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_reliability_diagram(curves: dict[str, dict[str, Any]], path: Path, *, title: str = "") -> Path:
    """One line per detector: share of fakes against mean fake_prob in each non-empty bin, with the diagonal.

    `curves[name]` is `{"ece": float, "bins": [...]}` as in `evaluate_folder(...)["calibration"]`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.5, 6.5), height_ratios=(3, 1), sharex=True)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    for name, cal in curves.items():
        bins = [b for b in cal["bins"] if b["count"]]
        ax.plot([b["mean_fake_prob"] for b in bins], [b["fake_share"] for b in bins], marker="o",
                label=f"{name} (ECE {cal['ece']:.3f})")
        edges = [b["lo"] for b in cal["bins"]] + [cal["bins"][-1]["hi"]]
        hist.stairs([b["count"] for b in cal["bins"]], edges, label=name)
    ax.set_ylabel("share of fakes in bin")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title or "Reliability diagram (15 equal-width bins of fake_prob)")
    ax.legend(loc="upper left", fontsize=8)
    hist.set_xlabel("fake_prob")
    hist.set_ylabel("images")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
