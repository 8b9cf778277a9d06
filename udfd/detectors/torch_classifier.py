"""Shared machinery for two-class PyTorch classifiers stored in our own format.

A checkpoint folder holds `config.json` ({"udfd": {family, arch, threshold, temperature, labels, ...}}) and
`model.safetensors`. Subclasses only say how to build the network and where its features and CAM layers are.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from udfd.detectors.base import ExplainTarget, register, resize_batch, scores_from_logits
from udfd.hub import CONFIG_NAME, UDFD_KEY, WEIGHTS_NAME
from udfd.types import Score

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LABELS = {0: "real", 1: "fake"}


class TorchClassifier:
    """Base for families whose network is a plain `nn.Module` mapping (B, 3, S, S) to (B, 2) logits."""

    family: ClassVar[str]
    modality: ClassVar[Literal["image", "video"]] = "image"
    default_arch: ClassVar[dict[str, Any]]
    tiny_arch: ClassVar[dict[str, Any]]
    train_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, net: torch.nn.Module, *, arch: dict[str, Any], meta: dict[str, Any] | None = None,
                 name: str | None = None, version: str = "untrained") -> None:
        self.net = net.eval()
        self.arch = dict(arch)
        self.meta = dict(meta or {})
        self.name = name or self.family
        self.version = version
        self.image_size = int(arch["image_size"])
        self.mean = tuple(arch.get("mean", IMAGENET_MEAN))
        self.std = tuple(arch.get("std", IMAGENET_STD))
        self.fake_index = 1
        self.threshold = float(self.meta.get("threshold", 0.5))
        self.temperature = float(self.meta.get("temperature", 1.0))

    # -- to be provided by subclasses ---------------------------------------------------------------
    @classmethod
    def build(cls, arch: dict[str, Any]) -> torch.nn.Module:
        raise NotImplementedError

    def features(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def explain_target(self) -> ExplainTarget | None:
        raise NotImplementedError

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def accepts(cls, config: dict[str, Any]) -> bool:
        return config.get(UDFD_KEY, {}).get("family") == cls.family

    @classmethod
    def create(cls, arch: dict[str, Any]) -> TorchClassifier:
        full = {**cls.default_arch, **arch}
        return cls(cls.build(full), arch=full)

    @classmethod
    def from_pretrained(cls, folder: Path, config: dict[str, Any]) -> TorchClassifier:
        meta = config[UDFD_KEY]
        arch = {**cls.default_arch, **meta.get("arch", {}), "pretrained": None}  # weights come from the folder
        net = cls.build(arch)
        state = {k: v.float() for k, v in load_file(str(Path(folder) / WEIGHTS_NAME)).items()}
        net.load_state_dict(state)
        return cls(net, arch=arch, meta=meta, name=meta.get("name"), version=str(meta.get("version", "")))

    def save_pretrained(self, folder: Path, *, metadata: dict[str, Any] | None = None, fp16: bool = True) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        dtype = torch.float16 if fp16 else torch.float32
        state = {k: v.detach().to(dtype if v.is_floating_point() else v.dtype).contiguous()
                 for k, v in self.net.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
        meta = {**self.meta, **(metadata or {}), "family": self.family, "arch": self.arch, "labels": LABELS,
                "threshold": self.threshold, "temperature": self.temperature, "dtype": str(dtype).split(".")[-1]}
        (folder / CONFIG_NAME).write_text(json.dumps({UDFD_KEY: meta}, indent=1), encoding="utf-8")

    # -- compute ------------------------------------------------------------------------------------
    @property
    def resize_mode(self) -> str:
        """How faces are resized to image_size (`arch.resize`, udfd.detectors.base.RESIZE_MODES; "auto" if unset)."""
        return str(self.arch.get("resize", "auto"))

    def preprocess(self, faces: Sequence[np.ndarray]) -> torch.Tensor:
        return resize_batch(faces, self.image_size, self.mean, self.std, self.resize_mode)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        return self.net(batch)

    def predict(self, batch: torch.Tensor) -> list[Score]:
        with torch.inference_mode():
            logits = self.logits(batch)  # through logits(), so a fast copy (udfd.fast) can replace it
        return scores_from_logits(logits, name=self.name, fake_index=self.fake_index,
                                  temperature=self.temperature, threshold=self.threshold)

    def module(self) -> torch.nn.Module:
        return self.net

    def set_calibration(self, *, temperature: float, threshold: float) -> None:
        self.temperature = float(temperature)
        self.threshold = float(threshold)


__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "TorchClassifier", "register"]
