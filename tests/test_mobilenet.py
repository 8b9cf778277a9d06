"""The `timm` family: mobilenet_v2 is a configuration of it; ImageNet weights from a local file or the Hub."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from udfd.detectors.base import families, get_family
from udfd.detectors.timm_classifier import TimmDetector
from udfd.errors import ModelUnavailableError

ROOT = Path(__file__).resolve().parent.parent


def test_local_imagenet_weights_are_loaded_except_the_classifier(tmp_path):
    import timm

    torch.manual_seed(1)
    source = timm.create_model("mobilenetv2_035", pretrained=False, num_classes=1000)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    det = TimmDetector.create({**TimmDetector.tiny_arch, "pretrained": f"local-dir:{path}", "freeze_backbone": True})
    net = det.module()
    assert torch.equal(net.conv_stem.weight, source.conv_stem.weight)
    assert net.classifier.out_features == 2
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"classifier.weight", "classifier.bias"}
    assert det.meta["init_weights"] == {"reference": f"local-dir:{path}"}


def test_hub_weights_offline_give_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="network"):
        TimmDetector.create({**TimmDetector.tiny_arch, "pretrained": "hf-hub:timm/mobilenetv2_035.x"})


def test_train_script_flag_sets_arch(tmp_path):
    from training.train_image import parse_args

    args = parse_args(["--synthetic", "--family", "timm", "--output", str(tmp_path),
                       "--pretrained", "local-dir:/w.safetensors"])
    assert args.arch["pretrained"] == "local-dir:/w.safetensors" and args.lr == 1e-3


def test_mobilenet_v2_is_a_configuration_of_timm_not_a_family():
    assert "mobilenet_v2" not in families() and get_family("mobilenet_v2") is TimmDetector  # legacy checkpoints
    meta = json.loads((ROOT / "models/udfd-mobilenet-v2/config.json").read_text())["udfd"]
    assert meta["family"] == "timm" and meta["arch"]["model"] == "mobilenetv2_100"


def test_any_timm_architecture_builds_and_explains():
    det = TimmDetector.create({"image_size": 32, "model": "resnet10t"})  # not an EfficientNet layout
    low, high = det.features(det.preprocess([torch.zeros(40, 40, 3, dtype=torch.uint8).numpy()]))
    assert low.shape[0] == high.shape[0] == 1
    assert det.explain_target().layers[0] is det.net.layer4


def test_unknown_init_is_refused():
    with pytest.raises(ValueError, match="imagenet"):
        TimmDetector.create({**TimmDetector.tiny_arch, "init": "imagnet"})


def test_pretrained_start_has_a_small_head(tmp_path):
    """With pretrained weights the new 2-way head starts near zero: fake_prob ~0.5, not ±10 logits."""
    import numpy as np
    import timm

    source = timm.create_model("mobilenetv2_035", pretrained=False, num_classes=1000)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    det = TimmDetector.create({**TimmDetector.tiny_arch, "pretrained": f"local-dir:{path}"})
    faces = [np.random.default_rng(i).integers(0, 256, (40, 40, 3), dtype=np.uint8) for i in range(4)]
    with torch.inference_mode():
        logits = det.logits(det.preprocess(faces))
    assert logits.abs().max() < 1.0
