"""How a face track's per-frame fake probabilities become one video-level score. Pure.

Rules: `mean` (every frame counts the same), `median`, `max` (one bad frame decides), and `topk_mean` (the mean of
the most-fake quarter of the frames, at least one): a manipulation that shows in some frames only (blending
seams, pose-dependent artefacts) is not averaged away, while a single odd frame does not decide alone.
The default is chosen by measurement on the dev clips (training/video_rule.py; README "How a video is analysed").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TRACK_RULES = ("mean", "median", "max", "topk_mean")


def aggregate(probs: Sequence[float], rule: str = "topk_mean", *, share: float = 0.25) -> float:
    """One score for a track from its frames' fake probabilities."""
    values = np.asarray(list(probs), dtype=np.float64)
    if values.size == 0:
        raise ValueError("a track needs at least one frame score")
    if rule == "mean":
        return float(values.mean())
    if rule == "median":
        return float(np.median(values))
    if rule == "max":
        return float(values.max())
    if rule == "topk_mean":
        k = max(1, int(np.ceil(share * values.size)))
        return float(np.sort(values)[-k:].mean())
    raise ValueError(f"unknown track rule {rule!r}; choose one of {TRACK_RULES}")
