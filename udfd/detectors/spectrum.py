"""Spectrum family (`spectrum`): logistic heads, one per kind of fake, on native-resolution spectrum statistics of
the face crop (`udfd.spectrum`; `training/loso_spectrum.py` fits them).

Every network here sees a face resized to 160 px, which erases what generator upsampling leaves in the highest
frequencies of a 1024 px StyleGAN face; this family reads the crop as the file has it, before any resize. Its
`preprocess` gives (B, native_width) statistics, not pixels: the feature set its `arch.features` names
(`udfd.spectrum.FEATURE_SETS`). An ensemble reads them through `native_features` (its side plane,
`udfd.detectors.ensemble`). No explanation map: the statistics have no spatial layout.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from udfd.detectors.base import ExplainTarget
from udfd.detectors.timm_classifier import KindsHead
from udfd.detectors.torch_classifier import TorchClassifier, register
from udfd.errors import ModelUnavailableError
from udfd.spectrum import FEATURE_SETS, V1, native_statistics

# what a new checkpoint reads unless its arch says otherwise (the shipped 1.1's set); a saved one names its own
# (`udfd.spectrum.FEATURE_SETS`; "udfd.spectrum v2" adds the luma residual's statistics)
FEATURES = V1


@register
class SpectrumDetector(TorchClassifier):
    family: ClassVar[str] = "spectrum"
    # image_size 0: no resized input (an ensemble resizes for its other members only)
    # grid: the power spectrum averaged over up to grid x grid central windows (`udfd.spectrum.spectrum_features`)
    default_arch: ClassVar[dict[str, Any]] = {"features": FEATURES, "n_features": FEATURE_SETS[FEATURES], "image_size": 0,
                                              "fake_kinds": ["gan", "diffusion"], "grid": 1}
    tiny_arch: ClassVar[dict[str, Any]] = {"fake_kinds": ["gan"]}

    def __init__(self, net: torch.nn.Module, **kw: Any) -> None:
        super().__init__(net, **kw)
        features = self.arch.get("features")
        if features not in FEATURE_SETS or int(self.arch.get("n_features", -1)) != FEATURE_SETS[features]:
            raise ModelUnavailableError(
                f"{self.name}: its heads read {features!r} ({self.arch.get('n_features')} features); this udfd "
                f"computes {', '.join(f'{k!r} ({n})' for k, n in FEATURE_SETS.items())}")
        self.kinds_used: tuple[str, ...] | None = None

    @classmethod
    def build(cls, arch: dict[str, Any]) -> torch.nn.Module:
        return KindsHead(int(arch["n_features"]), list(arch["fake_kinds"]))

    @property
    def native_width(self) -> int:
        """How many statistics `native_features` gives per face (an ensemble's side plane reserves as many)."""
        return FEATURE_SETS[self.arch["features"]]

    def native_features(self, faces: Sequence[np.ndarray]) -> torch.Tensor:
        """(B, native_width) statistics of RGB uint8 crops at their own resolution (pure)."""
        grid, features = int(self.arch.get("grid", 1)), self.arch["features"]
        if not len(faces):
            return torch.zeros((0, self.native_width))
        return torch.from_numpy(np.stack([native_statistics(f, grid=grid, features=features) for f in faces]))

    def preprocess(self, faces: Sequence[np.ndarray]) -> torch.Tensor:
        return self.native_features(faces)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        if self.kinds_used is None:
            return self.net(batch.float())
        return self.net.logit_of(batch.float(), self.kinds_used)

    def with_kinds(self, kinds: Sequence[str]) -> SpectrumDetector:
        """Scored by these kinds' heads only, the same Platt scaling (as `TimmDetector.with_kinds`)."""
        self.net.indices(kinds)  # raises on an unknown kind
        view = copy.copy(self)
        view.__dict__.pop("logits", None)  # a fast copy's own logits() reads every kind: the view runs the heads
        view.kinds_used = tuple(str(k) for k in kinds)
        view.name = f"{self.name}[{'+'.join(view.kinds_used)}]"
        return view

    def features(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch.float()
        return x, self.net.linear(x)

    def explain_target(self) -> ExplainTarget | None:
        return None


__all__ = ["FEATURES", "SpectrumDetector"]
