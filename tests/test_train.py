"""One-epoch training smoke run on 16 generated images, then load the checkpoint through the one loader."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_hub import FakeHfApi
from training.data import list_samples, split_samples, synthetic_dataset
from udfd.config import Settings
from udfd.loader import clear_cache, load_detector

ARCH = '{"image_size": 32, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}'


@pytest.mark.slow
def test_train_smoke_writes_a_loadable_checkpoint_and_pushes(tmp_path):
    from training.train_image import main

    api = FakeHfApi()
    out = tmp_path / "ckpt"
    main(["--synthetic", "--output", str(out), "--epochs", "1", "--batch-size", "8", "--report-to", "none",
          "--cache-dir", str(tmp_path / "cache"), "--arch", ARCH, "--version", "t1",
          "--push-to-hub", "--hub-model-id", "org/udfd-test"], hf_api=api)
    for name in ("config.json", "model.safetensors", "README.md", "eval_results.json", "split.json"):
        assert (out / name).is_file(), name
    meta = json.loads((out / "config.json").read_text())["udfd"]
    assert meta["family"] == "vit" and meta["version"] == "t1"
    assert meta["temperature"] > 0 and 0 <= meta["threshold"] <= 1
    results = json.loads((out / "eval_results.json").read_text())
    assert {"train", "val"} <= set(results)
    card = (out / "README.md").read_text()
    assert "model-index" in card and "Intended use" in card and "roc_auc" in card
    assert "<!-- robustness -->" in card and "| screenshot |" in card and "face crops scored clean" in card
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]
    assert api.calls[1][1]["repo_id"] == "org/udfd-test"

    clear_cache()
    det = load_detector(f"local-dir:{out}", settings=Settings())
    assert det.threshold == pytest.approx(meta["threshold"])
    p = det.predict(det.preprocess([np.zeros((40, 40, 3), np.uint8)]))[0].fake_prob
    assert 0 <= p <= 1


def test_push_without_hub_id_is_refused(tmp_path):
    from training.train_image import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--synthetic", "--output", str(tmp_path), "--push-to-hub"])


def test_yaml_overrides_and_cli_wins(tmp_path):
    from training.train_image import parse_args

    cfg = tmp_path / "o.yaml"
    cfg.write_text("epochs: 3\nlr: 0.01\n")
    args = parse_args(["--synthetic", "--output", str(tmp_path), "--config", str(cfg), "--lr", "0.5"])
    assert args.epochs == 3 and args.lr == 0.5 and args.batch_size == 64


def test_split_has_no_group_in_two_splits(shared_faces):
    samples = list_samples(shared_faces)
    split = split_samples(samples, seed=42)
    key = {i: (s.group.split(":", 1)[1] if s.source.startswith("dfdc") else s.group) for i, s in enumerate(samples)}
    seen = {name: {key[i] for i in idx} for name, idx in split.items()}
    assert not (seen["train"] & seen["val"]) and not (seen["train"] & seen["test"]) and not (seen["val"] & seen["test"])
    assert split_samples(samples, seed=42) == split  # deterministic
    # a DFDC fake and its original real video land in the same split
    by_path = {s.path: i for i, s in enumerate(samples)}
    fake = next(s for s in samples if s.source == "dfdc_faces" and s.label == 1
                and f"real/dfdc_faces/{s.group.split(':')[1]}.jpg" in by_path)
    real_i = by_path[f"real/dfdc_faces/{fake.group.split(':')[1]}.jpg"]
    which = {i: k for k, idx in split.items() for i in idx}
    assert which[by_path[fake.path]] == which[real_i]


def test_synthetic_dataset_layout(tmp_path):
    root = synthetic_dataset(tmp_path, n=6)
    samples = list_samples(root)
    assert len(samples) == 6 and {s.label for s in samples} == {0, 1}
