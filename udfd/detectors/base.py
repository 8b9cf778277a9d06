"""The Detector protocol and the family registry (the only module-level state besides the model cache)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
import torch

from udfd.errors import ModelUnavailableError
from udfd.hub import UDFD_KEY
from udfd.types import Score


@dataclass(frozen=True)
class ExplainTarget:
    """Where a CAM method should look: layers of the model and how to turn activations into (B, C, H, W).

    `model` maps a (B, 3, S, S) batch to two-class logits (or to an output with a `.logits` field);
    `methods` are the CAM methods that make sense for this network, the default first (see udfd/explain.py);
    `note` is shown next to the method choice (e.g. why a method is left out).
    """

    model: torch.nn.Module
    layers: tuple[torch.nn.Module, ...]
    reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None = None
    fake_index: int = 1
    methods: tuple[str, ...] = ("fullgrad", "gradcam")
    note: str = ""


@runtime_checkable
class Detector(Protocol):
    """What every detector family implements. See DESIGN.md "Contracts"."""

    family: ClassVar[str]
    modality: ClassVar[Literal["image", "video"]]
    tiny_arch: ClassVar[dict[str, Any]]  # a very small architecture for tests and smoke runs
    train_defaults: ClassVar[dict[str, Any]]  # overrides of training/train_image.py defaults (lr, epochs, ...)
    name: str
    version: str
    threshold: float

    @classmethod
    def accepts(cls, config: dict[str, Any]) -> bool:
        """True when this family can load a checkpoint with this config.json (for foreign checkpoints)."""
        ...

    @classmethod
    def create(cls, arch: dict[str, Any]) -> Detector:
        """A new, untrained detector with the given architecture overrides."""
        ...

    @classmethod
    def from_pretrained(cls, folder: Path, config: dict[str, Any]) -> Detector: ...

    def save_pretrained(self, folder: Path, *, metadata: dict[str, Any] | None = None) -> None: ...

    def preprocess(self, faces: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 crops of any size -> model input batch. Pure: inputs are not modified."""
        ...

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Raw two-class logits (real, fake), with gradients when enabled (training)."""
        ...

    def predict(self, batch: torch.Tensor) -> list[Score]: ...

    def features(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(low-level, high-level) hidden features, one row per input, for the protector."""
        ...

    def explain_target(self) -> ExplainTarget | None: ...

    def module(self) -> torch.nn.Module:
        """The trainable torch module."""
        ...

    def set_calibration(self, *, temperature: float, threshold: float) -> None: ...


_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: make a family loadable by name and by `family_for(config)`."""
    if cls.family in _REGISTRY and _REGISTRY[cls.family] is not cls:
        raise ValueError(f"detector family {cls.family!r} registered twice")
    _REGISTRY[cls.family] = cls
    return cls


def families() -> dict[str, type]:
    _import_builtin_families()
    return dict(_REGISTRY)


# Family names that older checkpoints declare -> the family that loads them now.
LEGACY_FAMILIES: dict[str, str] = {"mobilenet_v2": "timm"}  # mobilenet_v2 became a configuration of `timm`


def get_family(family: str) -> type:
    regs = families()
    family = LEGACY_FAMILIES.get(family, family) if family not in regs else family
    if family not in regs:
        raise ModelUnavailableError(f"unknown detector family {family!r}; known: {sorted(regs)}")
    return regs[family]


def family_for(config: dict[str, Any]) -> type:
    """Pick the family for a checkpoint: our metadata names it; otherwise exactly one family must accept it."""
    declared = config.get(UDFD_KEY, {}).get("family")
    if declared:
        return get_family(declared)
    candidates = [cls for cls in families().values() if cls.accepts(config)]
    if len(candidates) != 1:
        raise ModelUnavailableError(
            f"cannot tell which detector family loads this checkpoint ({len(candidates)} candidates); add"
            f' "{UDFD_KEY}": {{"family": ...}} to its config.json'
        )
    return candidates[0]


# The built-in families, loaded by name on first use: base never imports them statically (they import base),
# so the import graph has no circle. A third-party family registers itself with @register when imported.
BUILTIN_FAMILY_MODULES: tuple[str, ...] = (
    "udfd.detectors.vit",
    "udfd.detectors.cnn",
    "udfd.detectors.timm_classifier",
    "udfd.detectors.ocvae",
    "udfd.detectors.lip_lstm",
    "udfd.detectors.clip",
    "udfd.detectors.ensemble",
    "udfd.detectors.mesonet",
    "udfd.detectors.spectrum",
)


def _import_builtin_families() -> None:
    import importlib

    for module in BUILTIN_FAMILY_MODULES:
        importlib.import_module(module)  # runs the module's @register decorators


def fake_index_from_labels(id2label: dict[Any, str], *, declared: str | None = None) -> int:
    """Find the 'fake' class in a checkpoint's labels, whatever their names and order."""
    labels = {int(k): str(v) for k, v in id2label.items()}
    if declared is not None:
        matches = [i for i, v in labels.items() if v == declared]
    else:
        words = ("fake", "deepfake", "spoof", "synthetic", "manipulated", "generated")
        matches = [i for i, v in labels.items() if any(w in v.lower() for w in words)]
    if len(matches) != 1 or len(labels) != 2:
        raise ModelUnavailableError(
            f"cannot tell which label means 'fake' in {labels}; set udfd.fake_label in config.json"
        )
    return matches[0]


def scores_from_logits(
    logits: torch.Tensor, *, name: str, fake_index: int, temperature: float, threshold: float
) -> list[Score]:
    """Temperature-scaled softmax -> one Score per row. Shared by every two-class family."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)[:, fake_index]
    probs = torch.nan_to_num(probs, nan=0.5).clamp(0.0, 1.0)
    return [Score(detector=name, fake_prob=float(p), threshold=threshold) for p in probs.tolist()]


RESIZE_MODES = ("auto", "area")


def resize_face(face: np.ndarray, size: int, mode: str = "auto") -> np.ndarray:
    """An RGB crop resized to size×size as a detector sees it. "auto": pixel-area averaging when it shrinks,
    bilinear when it grows; "area": cv2's area mode both ways (it enlarges in near-nearest-neighbour blocks, which
    keeps pixel-level detail). A model is trained on crops made by the same mode (training/data.py), recorded in
    its `arch.resize`, so it never meets an upsampling it did not learn. Pure."""
    import cv2

    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}; known: {RESIZE_MODES}")
    shrink = face.shape[0] > size or face.shape[1] > size
    return cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA if shrink or mode == "area" else cv2.INTER_LINEAR)


def resize_batch(faces: Sequence[np.ndarray], size: int, mean: Sequence[float], std: Sequence[float],
                 mode: str = "auto") -> torch.Tensor:
    """Resize RGB uint8 crops to size×size (`resize_face`) and normalise -> float32 (B, 3, size, size). Pure."""
    # Written channel-first in place, face by face: the same float32 operations as (x / 255 - mean) / std on the
    # whole batch (bit-identical), without its batch-sized temporaries and the final permute copy (~3x faster).
    out = np.empty((len(faces), 3, size, size), dtype=np.float32)
    mean32, std32 = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    for i, face in enumerate(faces):
        if face.ndim != 3 or face.shape[2] != 3:
            raise ValueError(f"expected an RGB crop (H, W, 3), got shape {face.shape}")
        resized = resize_face(face, size, mode)
        for c in range(3):
            np.divide(resized[..., c], np.float32(255.0), out=out[i, c], dtype=np.float32)
            out[i, c] -= mean32[c]
            out[i, c] /= std32[c]
    return torch.from_numpy(out)
