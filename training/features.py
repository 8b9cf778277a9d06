"""Frozen detector features for the protector: one pass over cached face crops, cached on disk (no pickle)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from training.data import Sample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Features:
    low: np.ndarray  # (N, low_dim) float32
    high: np.ndarray  # (N, high_dim) float32
    fake_prob: np.ndarray  # (N,) the detector's own calibrated probability


def detector_features(detector: Any, crops: np.ndarray, *, batch: int = 64) -> Features:
    """`detector.features` and `detector.predict` over every crop (no augmentation)."""
    lows, highs, probs = [], [], []
    detector.module().eval()
    with torch.inference_mode():
        for s in tqdm(range(0, len(crops), batch), desc=f"{detector.name} features", unit="batch"):
            x = detector.preprocess(list(crops[s:s + batch]))
            low, high = detector.features(x)
            lows.append(low.float().numpy())
            highs.append(high.float().numpy())
            probs.extend(sc.fake_prob for sc in detector.predict(x))
    return Features(np.concatenate(lows), np.concatenate(highs), np.asarray(probs, np.float32))


def cached_features(detector: Any, crops: np.ndarray, samples: list[Sample], *, cache_dir: Path,
                    batch: int = 64) -> Features:
    """`detector_features`, stored as .npz under cache_dir keyed by detector version, samples and crops."""
    h = hashlib.sha256(json.dumps([detector.name, detector.version, [s.path for s in samples]]).encode())
    h.update(crops[:: max(1, len(crops) // 64)].tobytes())  # a sample of the crops: same paths, other crops
    path = Path(cache_dir) / f"features-{h.hexdigest()[:16]}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            log.info("features from cache %s", path)
            return Features(z["low"], z["high"], z["fake_prob"])
    feats = detector_features(detector, crops, batch=batch)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, low=feats.low, high=feats.high, fake_prob=feats.fake_prob)
    tmp.replace(path)
    return feats


def split_from_file(split_json: Path, samples: list[Sample]) -> dict[str, list[int]] | None:
    """The detector's own split (its split.json) as indices into `samples`; None when it does not match."""
    if not split_json.is_file():
        return None
    splits = json.loads(split_json.read_text(encoding="utf-8"))["splits"]
    index = {s.path: i for i, s in enumerate(samples)}
    out = {k: [index[p] for p in paths if p in index] for k, paths in splits.items()}
    if sum(map(len, out.values())) != len(samples):
        log.warning("%s does not cover these samples (%d of %d); using the seeded split instead", split_json,
                    sum(map(len, out.values())), len(samples))
        return None
    return out
