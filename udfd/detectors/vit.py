"""ViT image classifier family (transformers), as in the UDFD report.

Loads our own checkpoints and foreign ones such as `dima806/deepfake_vs_real_image_detection`: the fake class
is found from `config.id2label`, whatever the names and order.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from udfd.detectors.base import (
    ExplainTarget,
    fake_index_from_labels,
    register,
    resize_batch,
    scores_from_logits,
)
from udfd.hub import UDFD_KEY
from udfd.types import Score

# A compact ViT that trains from scratch on CPU in minutes and stays well under 25 MB in fp16.
DEFAULT_ARCH: dict[str, Any] = {
    "image_size": 128,
    "patch_size": 16,
    "hidden_size": 192,
    "num_hidden_layers": 8,
    "num_attention_heads": 3,
    "intermediate_size": 768,
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.0,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
}


def _token_grid_to_map(tokens: torch.Tensor) -> torch.Tensor:
    """(B, 1 + N, C) ViT tokens -> (B, C, √N, √N), dropping the CLS token (Grad-CAM reshape transform)."""
    patches = tokens[:, 1:, :]
    side = math.isqrt(patches.shape[1])
    return patches.reshape(tokens.shape[0], side, side, tokens.shape[2]).permute(0, 3, 1, 2)


@register
class ViTDetector:
    family: ClassVar[str] = "vit"
    modality: ClassVar[Literal["image", "video"]] = "image"
    tiny_arch: ClassVar[dict[str, Any]] = {"image_size": 32, "patch_size": 16, "hidden_size": 32,
                                           "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    # From scratch a ViT needs a gentle start: AdamW 2e-4 with warm-up (5e-4 without it stayed at chance).
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 2e-4, "warmup_steps": 150}

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        meta: dict[str, Any],
        name: str = "vit",
        version: str = "untrained",
    ) -> None:
        self.model = model.eval()
        self.image_size = int(image_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.meta = dict(meta)
        self.name = name
        self.version = version
        self.fake_index = fake_index_from_labels(model.config.id2label, declared=meta.get("fake_label"))
        self.threshold = float(meta.get("threshold", 0.5))
        self.temperature = float(meta.get("temperature", 1.0))

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def accepts(cls, config: dict[str, Any]) -> bool:
        return config.get("model_type") in ("vit", "deit") and len(config.get("id2label", {})) == 2

    @classmethod
    def create(cls, arch: dict[str, Any]) -> ViTDetector:
        from transformers import ViTConfig, ViTForImageClassification

        a = {**DEFAULT_ARCH, **arch}
        mean, std = a.pop("image_mean"), a.pop("image_std")
        config = ViTConfig(**a, num_labels=2, id2label={0: "real", 1: "fake"}, label2id={"real": 0, "fake": 1})
        meta = {"family": cls.family, "threshold": 0.5, "temperature": 1.0}
        return cls(ViTForImageClassification(config), image_size=a["image_size"], mean=mean, std=std, meta=meta)

    @classmethod
    def from_pretrained(cls, folder: Path, config: dict[str, Any]) -> ViTDetector:
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        model = AutoModelForImageClassification.from_pretrained(str(folder), dtype=torch.float32)
        processor = AutoImageProcessor.from_pretrained(str(folder))
        size = processor.size  # a SizeDict in transformers 5; {"height": ..} or {"shortest_edge": ..}
        side = getattr(size, "height", None) or getattr(size, "shortest_edge", None) or config.get("image_size")
        meta = config.get(UDFD_KEY, {})
        return cls(
            model,
            image_size=int(side),
            mean=processor.image_mean,
            std=processor.image_std,
            meta=meta,
            name=meta.get("name", cls.family),
            version=str(meta.get("version", folder.name)),
        )

    def save_pretrained(self, folder: Path, *, metadata: dict[str, Any] | None = None, fp16: bool = True) -> None:
        from transformers import ViTImageProcessor

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {**self.meta, **(metadata or {}), "family": self.family,
                "threshold": self.threshold, "temperature": self.temperature}
        model = copy.deepcopy(self.model).to(torch.float16 if fp16 else torch.float32)
        setattr(model.config, UDFD_KEY, meta)
        model.save_pretrained(str(folder))
        side = self.image_size
        ViTImageProcessor(size={"height": side, "width": side}, image_mean=list(self.mean),
                          image_std=list(self.std)).save_pretrained(str(folder))

    # -- compute ------------------------------------------------------------------------------------
    def preprocess(self, faces: Sequence[np.ndarray]) -> torch.Tensor:
        return resize_batch(faces, self.image_size, self.mean, self.std)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=batch).logits

    def predict(self, batch: torch.Tensor) -> list[Score]:
        with torch.inference_mode():
            logits = self.logits(batch)
        return scores_from_logits(logits, name=self.name, fake_index=self.fake_index,
                                  temperature=self.temperature, threshold=self.threshold)

    def features(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            out = self.model(pixel_values=batch, output_hidden_states=True)
        return out.hidden_states[1][:, 0].clone(), out.hidden_states[-1][:, 0].clone()

    def explain_target(self) -> ExplainTarget | None:
        last = self.model.vit.layers[-1]
        # FullGrad is left out on purpose: on a ViT the only 2-D biases are the patch-embedding conv's, so its
        # map says nothing about what the transformer attended to.
        return ExplainTarget(model=self.model, layers=(last.layernorm_before,),
                             reshape_transform=_token_grid_to_map, fake_index=self.fake_index,
                             methods=("gradcam", "eigencam"),
                             note="FullGrad is not meaningful on a ViT (it only sees the patch-embedding bias): "
                                  "use Grad-CAM or EigenCAM on the last block's tokens.")

    def module(self) -> torch.nn.Module:
        return self.model

    def set_calibration(self, *, temperature: float, threshold: float) -> None:
        self.temperature = float(temperature)
        self.threshold = float(threshold)
