"""training/train_clip.py end to end with the tiny *random* encoder (no CLIP weights exist offline): a smoke test of
the code path, never a CLIP result. Checkpoints go to tmp_path only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.test_hub import FakeHfApi
from training.data import synthetic_dataset
from udfd.detectors.clip import ClipDetector
from udfd.loader import clear_cache, load_detector

TINY_ARCH = json.dumps({"clip_model": "udfd-tiny-random", "clip_config": ClipDetector.tiny_arch["clip_config"]})
PNGS = ("loss_curves.png", "triplet_distances.png", "pca_scatter.png", "pca_variance.png")


def _train(out: Path, tmp_path: Path, *extra: str, hf_api: FakeHfApi | None = None) -> Path:
    from training.train_clip import main

    return main(["--output", str(out), "--allow-random-encoder", "--arch", TINY_ARCH, "--epochs", "4",
                 "--head-hidden", "16", "--head-dim", "8", "--report-to", "none", "--cache-dir",
                 str(tmp_path / "cache"), "--version", "t1", *extra], hf_api=hf_api)


@pytest.mark.slow
def test_train_clip_smoke_writes_a_safe_loadable_checkpoint_and_pushes(tmp_path: Path, monkeypatch, capsys) -> None:
    api = FakeHfApi()
    out = _train(tmp_path / "ckpt", tmp_path, "--synthetic", "--push-to-hub", "--hub-model-id", "org/udfd-clip-test",
                 hf_api=api)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "encoder.safetensors", "README.md", "eval_results.json",
            "split.json", *PNGS} == names, "safetensors, JSON and PNG only: nothing pickled"
    meta = json.loads((out / "config.json").read_text())["udfd"]
    assert meta["family"] == "clip" and meta["arch"]["allow_random_encoder"] is True
    assert meta["arch"]["weights"] == "encoder.safetensors" and meta["selected"] in {
        f"{v}/{k}" for v in ("image", "sum", "product") for k in ("rbf", "linear")}
    report = json.loads((out / "eval_results.json").read_text())
    assert {"train", "val", "test"} <= set(report["results"])
    assert set(report["results"]["test"]["per_class"]) == {"real", "fake"}
    assert [r["model"] for r in report["comparison"]] == [
        "image/rbf", "image/linear", "sum/rbf", "sum/linear", "product/rbf", "product/linear",
        "linear probe (raw embedding)"]
    card = (out / "README.md").read_text()
    assert "RANDOM ENCODER — NOT A CLIP MODEL" in card and "model-index" in card
    assert all(f"]({png})" in card for png in PNGS) and "| product/linear |" in card and "precision real" in card
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]
    assert api.calls[1][1]["repo_id"] == "org/udfd-clip-test"

    clear_cache()
    det = load_detector(f"local-dir:{out}")
    assert det.threshold == pytest.approx(meta["threshold"]) and det.pca is not None
    assert 0 <= det.predict(det.preprocess([np.zeros((40, 40, 3), np.uint8)]))[0].fake_prob <= 1

    # `udfd evaluate --detector clip` with the checkpoint configured the usual way.
    from udfd.cli.main import main as cli

    data = synthetic_dataset(tmp_path / "eval", n=6, seed=3)
    monkeypatch.setenv("UDFD_MODEL_CLIP", f"local-dir:{out}")
    clear_cache()
    capsys.readouterr()
    assert cli(["evaluate", str(data), "--detector", "clip", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["detector"] == "clip" and result["overall"]["n"] == 6


@pytest.mark.slow
def test_a_second_run_reuses_the_embedding_cache(tmp_path: Path, caplog) -> None:
    _train(tmp_path / "a", tmp_path, "--synthetic", "--variants", "image", "--kernels", "linear")
    caplog.clear()
    with caplog.at_level("INFO", logger="training.clip_embed"):
        _train(tmp_path / "b", tmp_path, "--synthetic", "--variants", "image", "--kernels", "linear", "--select",
               "image/linear")
    assert "16 cached, 0 to compute" in caplog.text


@pytest.mark.slow
@pytest.mark.integration
def test_train_clip_on_real_dev_faces_with_the_tiny_random_encoder(shared_faces: Path, tmp_path: Path) -> None:
    """The real data path (face detection, group split 70/20/10, per-source rows) on a few dev faces."""
    out = _train(tmp_path / "real", tmp_path, "--data", str(shared_faces), "--max-samples", "60", "--crop-size", "64")
    report = json.loads((out / "eval_results.json").read_text())
    split = json.loads((out / "split.json").read_text())["splits"]
    assert sum(len(v) for v in split.values()) == 60 and len(split["train"]) > len(split["val"])
    assert any(k.startswith("test/") for k in report["results"]) or any(k.startswith("val/") for k in report["results"])
    assert all(0.0 <= r["val"]["accuracy"] <= 1.0 for r in report["comparison"])
