"""MobileNetV2 family (`mobilenet_v2`): timm's `mobilenetv2_100` at 224 px with a 2-way classifier.

`arch.pretrained` may name ImageNet weights (`hf-hub:timm/mobilenetv2_100.ra_in1k` — needs network — or
`local-dir:/path/to/model.safetensors`); without it the network starts from scratch and the model card says
so. `arch.freeze_backbone` trains only the classifier (meaningful with pretrained weights only).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from udfd.detectors.base import ExplainTarget
from udfd.detectors.torch_classifier import TorchClassifier, register
from udfd.errors import ModelUnavailableError


@register
class MobileNetV2Detector(TorchClassifier):
    family: ClassVar[str] = "mobilenet_v2"
    default_arch: ClassVar[dict[str, Any]] = {"image_size": 224, "model": "mobilenetv2_100", "pretrained": None,
                                              "freeze_backbone": False, "drop_rate": 0.2}
    tiny_arch: ClassVar[dict[str, Any]] = {"image_size": 32, "model": "mobilenetv2_035"}
    train_defaults: ClassVar[dict[str, Any]] = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4,
                                                "batch_size": 32, "epochs": 12}

    @classmethod
    def build(cls, arch: dict[str, Any]) -> nn.Module:
        import timm

        net = timm.create_model(arch["model"], pretrained=False, num_classes=2, drop_rate=arch.get("drop_rate", 0.0))
        if arch.get("pretrained"):
            _load_imagenet(net, arch["model"], arch["pretrained"])
        if arch.get("freeze_backbone"):
            for p in net.parameters():
                p.requires_grad = False
            for p in net.get_classifier().parameters():
                p.requires_grad = True
        return net

    def features(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            x = self.net.bn1(self.net.conv_stem(batch))
            low = self.net.blocks[0](x)
            high = self.net.forward_head(self.net.forward_features(batch), pre_logits=True)
        return low.mean(dim=(2, 3)), high

    def explain_target(self) -> ExplainTarget | None:
        return ExplainTarget(model=self.net, layers=(self.net.blocks[-1],), fake_index=self.fake_index)


def _load_imagenet(net: nn.Module, model: str, ref: str) -> None:
    """Copy ImageNet weights (all but the classifier) into `net` from a Hub repo or a local safetensors file."""
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
                                        " the Hub needs network access — train from scratch or give local-dir:") from e
    state = {k: v for k, v in state.items() if not k.startswith(net.default_cfg.get("classifier", "classifier"))}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("classifier") for k in missing):
        raise ModelUnavailableError(f"{ref} does not match {model}: missing {missing[:3]}, unexpected {unexpected[:3]}")
