"""MobileNetV2 ImageNet-weight loading: local safetensors works, the Hub offline fails clearly."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from udfd.detectors.mobilenet import MobileNetV2Detector
from udfd.errors import ModelUnavailableError


def test_local_imagenet_weights_are_loaded_except_the_classifier(tmp_path):
    import timm

    torch.manual_seed(1)
    source = timm.create_model("mobilenetv2_035", pretrained=False, num_classes=1000)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    det = MobileNetV2Detector.create({**MobileNetV2Detector.tiny_arch, "pretrained": f"local-dir:{path}",
                                      "freeze_backbone": True})
    net = det.module()
    assert torch.equal(net.conv_stem.weight, source.conv_stem.weight)
    assert net.classifier.out_features == 2
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"classifier.weight", "classifier.bias"}


def test_hub_weights_offline_give_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="network"):
        MobileNetV2Detector.create({**MobileNetV2Detector.tiny_arch, "pretrained": "hf-hub:timm/mobilenetv2_035.x"})


def test_train_script_flag_sets_arch(tmp_path):
    from training.train_image import parse_args

    args = parse_args(["--synthetic", "--family", "mobilenet_v2", "--output", str(tmp_path),
                       "--pretrained", "local-dir:/w.safetensors"])
    assert args.arch["pretrained"] == "local-dir:/w.safetensors" and args.lr == 1e-3
