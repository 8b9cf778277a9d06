"""Calibrated ensemble family (`ensemble`): several image detectors combined by a stacking model.

Each member gives its calibrated log-odds of "fake" for a face, d_i = (l_fake - l_real) / T_i. The ensemble
standardises them with the validation statistics, z_i = (d_i - mu_i) / sd_i, combines them linearly,
s = w . z + b (weights fitted on a validation split by training/fit_ensemble.py, stored as JSON in config.json,
no pickle), or with `stack.terms` by a soft maximum over terms (rule `lse`, udfd.evaluation.stacking: each term the
re-standardised mean of its members' z, s = logsumexp over the terms + b), and reports fake_prob = sigmoid(s / T)
with its own temperature T and threshold.

Members are either references (`{"name": "effnet_lite0"}`: a short name or `hf-hub:` / `local-dir:` reference,
loaded through the one loader, so the embedded ensemble does not copy its members' weights; `"kinds": ["face_swap"]`
scores a kinds model by those kinds' heads only, see `kinds_member`) or inline
(`{"family": ..., "arch": ...}`: created with the ensemble and saved in `members/<i>/`; tests and smoke runs).
A member must be a plain two-class image classifier that declares `image_size`, `mean`, `std`, `fake_index` and
`temperature` (the torch classifier families do); anything else is refused with a clear error. The input batch is
the face at the largest member size in [0, 1]; each member's view is resized and normalised in torch, so the
whole ensemble is differentiable and Grad-CAM on the first member's layers explains the combined score.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from udfd.detectors.base import ExplainTarget, get_family, register, resize_batch, scores_from_logits
from udfd.detectors.ensemble_terms import term_matrix
from udfd.errors import ModelUnavailableError
from udfd.hub import CONFIG_NAME, UDFD_KEY
from udfd.types import Score

MEMBER_ATTRS = ("image_size", "mean", "std", "fake_index", "temperature")


class _EnsembleNet(nn.Module):
    """(B, 3, S, S) in [0, 1] -> (B, 2) logits (0, s): softmax gives sigmoid(s). Members' modules are registered."""

    def __init__(self, members: Sequence[Any], stack: dict[str, Any]) -> None:
        super().__init__()
        self.members = list(members)
        self.nets = nn.ModuleList([m.module() for m in members])
        k = len(members)
        self.register_buffer("mu", torch.tensor(stack.get("mu", [0.0] * k), dtype=torch.float32))
        self.register_buffer("sd", torch.tensor(stack.get("sd", [1.0] * k), dtype=torch.float32))
        self.register_buffer("w", torch.tensor(stack.get("weights", [1.0 / k] * k), dtype=torch.float32))
        self.register_buffer("b", torch.tensor(float(stack.get("bias", 0.0)), dtype=torch.float32))
        self.terms = [list(map(int, t)) for t in stack["terms"]] if stack.get("terms") else None
        if self.terms is not None:
            j = len(self.terms)
            self.register_buffer("g", torch.tensor(term_matrix(self.terms, k), dtype=torch.float32))
            self.register_buffer("tmu", torch.tensor(stack.get("term_mu", [0.0] * j), dtype=torch.float32))
            self.register_buffer("tsd", torch.tensor(stack.get("term_sd", [1.0] * j), dtype=torch.float32))

    def member_log_odds(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, K) calibrated log-odds of "fake", one column per member. Members that are views of one kinds
        network (`score_source`) share its pass: the network runs once per batch, each view reads its kinds.
        A member with `native_features` reads its statistics from the batch's side plane (`with_side_plane`)."""
        cols = []
        shared: dict[tuple[int, int, tuple[float, ...], tuple[float, ...]], torch.Tensor] = {}
        pixels, side = split_side_plane(batch)
        offset = 0
        for m in self.members:
            if reads_native(m):
                width = int(m.native_width)
                if side is None or side.shape[1] < offset + width:
                    raise ModelUnavailableError(
                        f"ensemble member {m.name} reads native-resolution statistics: score faces through the "
                        "ensemble's own preprocess (its side plane carries them)")
                logits = m.logits(side[:, offset:offset + width]).float()
                offset += width
                fi = int(m.fake_index)
                cols.append((logits[:, fi] - logits[:, 1 - fi]) / float(m.temperature))
                continue
            x = pixels
            if x.shape[-1] != m.image_size or x.shape[-2] != m.image_size:
                x = F.interpolate(x, size=(m.image_size, m.image_size), mode="bilinear", align_corners=False,
                                  antialias=True)
            mean = torch.tensor(m.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(m.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            source = m.score_source() if hasattr(m, "score_source") else None
            if source is None:
                logits = m.logits((x - mean) / std).float()
            else:
                key = (id(source[0]), int(m.image_size), tuple(m.mean), tuple(m.std))
                if key not in shared:
                    shared[key] = source[1]((x - mean) / std)
                logits = source[2](shared[key]).float()
            fi = int(m.fake_index)
            cols.append((logits[:, fi] - logits[:, 1 - fi]) / float(m.temperature))
        return torch.stack(cols, dim=1)

    def combine(self, d: torch.Tensor) -> torch.Tensor:
        """(B, K) member log-odds -> (B, 2) logits (0, s)."""
        z = (d - self.mu) / self.sd
        if self.terms is None:
            s = z @ self.w + self.b
        else:
            s = torch.logsumexp((z @ self.g - self.tmu) / self.tsd, dim=1) + self.b
        return torch.stack([torch.zeros_like(s), s], dim=1)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.combine(self.member_log_odds(batch))


def reads_native(member: Any) -> bool:
    """Whether a member reads native-resolution statistics (`native_features`) instead of the resized pixels."""
    return hasattr(member, "native_features")


def with_side_plane(pixels: torch.Tensor, stats: Sequence[torch.Tensor]) -> torch.Tensor:
    """(B, 3, S, S) pixels + each native member's (B, n) statistics -> (B, 4, S, S): the statistics, concatenated,
    fill the first positions of a fourth plane (row-major), the rest is 0. Resizing to S erases what those members
    read, so they are computed from the crops as given and travel with the pixels in one tensor (one batch for
    every consumer: moving to a device, Grad-CAM, the members' pass)."""
    flat = torch.cat([s.float() for s in stats], dim=1)
    b, _, h, w = pixels.shape
    if flat.shape[0] != b or flat.shape[1] > h * w:
        raise ValueError(f"{flat.shape[1]} statistics for {flat.shape[0]} faces do not fit a {b} x {h} x {w} plane")
    plane = torch.zeros((b, 1, h, w), dtype=pixels.dtype)
    plane.view(b, -1)[:, :flat.shape[1]] = flat.to(pixels.dtype)
    return torch.cat([pixels, plane], dim=1)


def split_side_plane(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(pixels, flattened side plane or None) of an ensemble batch."""
    if batch.shape[1] == 3:
        return batch, None
    return batch[:, :3], batch[:, 3].flatten(1)


def kinds_member(det: Any, kinds: Sequence[str]) -> Any:
    """A member spec's `"kinds"`: the loaded detector scored by those kinds' heads only (`with_kinds` of the timm
    family): the same network, and where the loader served an ONNX fast copy, the same session."""
    if not hasattr(det, "with_kinds"):
        raise ModelUnavailableError(f"{det.name} cannot be scored by kinds {list(kinds)}: it has no kinds heads")
    return det.with_kinds(kinds)


@register
class EnsembleDetector:
    family: ClassVar[str] = "ensemble"
    modality: ClassVar[Literal["image", "video"]] = "image"
    tiny_arch: ClassVar[dict[str, Any]] = {"members": [{"family": "cnn"}, {"family": "cnn", "arch": {"image_size": 48}}]}
    train_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, members: Sequence[Any], *, specs: Sequence[dict[str, Any]], stack: dict[str, Any] | None = None,
                 meta: dict[str, Any] | None = None, name: str | None = None, version: str = "untrained") -> None:
        if not members:
            raise ModelUnavailableError("an ensemble needs at least one member")
        for m in members:
            missing = [a for a in MEMBER_ATTRS if not hasattr(m, a)] + ([] if m.modality == "image" else ["image"])
            if missing:
                raise ModelUnavailableError(f"ensemble member {m.name!r} cannot be combined: it lacks {missing} "
                                            "(members must be two-class image classifiers)")
        self.members = list(members)
        self.specs = [dict(s) for s in specs]
        self.stack = dict(stack or {})
        self.meta = dict(meta or {})
        self.name = name or self.family
        self.version = version
        # the faces are resized once, to the largest member's size, as that member was trained to see them;
        # members with `native_features` read the crops as given instead (the batch's side plane)
        self.native = [m for m in members if reads_native(m)]
        pixel_members = [m for m in members if not reads_native(m)]
        if not pixel_members:
            raise ModelUnavailableError("an ensemble needs at least one member that reads pixels")
        largest = max(pixel_members, key=lambda m: int(m.image_size))
        self.image_size = int(largest.image_size)
        self.resize_mode = str(getattr(largest, "resize_mode", "auto"))
        self.threshold = float(self.meta.get("threshold", 0.5))
        self.temperature = float(self.meta.get("temperature", 1.0))
        self.net = _EnsembleNet(self.members, self.stack).eval()

    @property
    def member_names(self) -> list[str]:
        """Each member's name; a name shared by several members gets its position (`cnn#1`)."""
        names = [m.name for m in self.members]
        return [f"{n}#{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def accepts(cls, config: dict[str, Any]) -> bool:
        return config.get(UDFD_KEY, {}).get("family") == cls.family

    @classmethod
    def create(cls, arch: dict[str, Any]) -> EnsembleDetector:
        specs = list(arch.get("members", []))
        members = []
        for spec in specs:
            if "family" not in spec:
                raise ModelUnavailableError("EnsembleDetector.create builds inline members only ({family, arch})")
            fam = get_family(spec["family"])
            members.append(fam.create({**fam.tiny_arch, **spec.get("arch", {})}))
        return cls(members, specs=specs, stack=arch.get("stack"))

    @classmethod
    def from_pretrained(cls, folder: Path, config: dict[str, Any]) -> EnsembleDetector:
        from udfd.config import Settings  # noqa: PLC0415  (short names resolve with the running settings)
        from udfd.hub import read_config
        from udfd.loader import load_detector

        meta = config[UDFD_KEY]
        members = []
        settings = Settings.from_env()
        for i, spec in enumerate(meta.get("members", [])):
            if "name" in spec:
                try:
                    member = load_detector(spec["name"], settings=settings)
                    members.append(kinds_member(member, spec["kinds"]) if spec.get("kinds") else member)
                except ModelUnavailableError as e:
                    raise ModelUnavailableError(f"ensemble member {spec['name']} unavailable: {e}") from e
            else:
                sub = Path(folder) / "members" / str(i)
                sub_config = read_config(sub)
                members.append(get_family(spec["family"]).from_pretrained(sub, sub_config))
        return cls(members, specs=meta.get("members", []), stack=meta.get("stack"), meta=meta,
                   name=meta.get("name"), version=str(meta.get("version", "")))

    def save_pretrained(self, folder: Path, *, metadata: dict[str, Any] | None = None, fp16: bool = True) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for i, (spec, member) in enumerate(zip(self.specs, self.members, strict=True)):
            if "name" not in spec:  # inline member: its own folder
                member.save_pretrained(folder / "members" / str(i), fp16=fp16)
        stack = self._stack_dict()
        meta = {**self.meta, **(metadata or {}), "family": self.family, "members": self.specs, "stack": stack,
                "labels": {0: "real", 1: "fake"}, "threshold": self.threshold, "temperature": self.temperature}
        (folder / CONFIG_NAME).write_text(json.dumps({UDFD_KEY: meta}, indent=1), encoding="utf-8")

    def _stack_dict(self) -> dict[str, Any]:
        out = {**self.stack, "mu": self.net.mu.tolist(), "sd": self.net.sd.tolist(), "weights": self.net.w.tolist(),
               "bias": float(self.net.b)}
        if self.net.terms is not None:
            out |= {"terms": self.net.terms, "term_mu": self.net.tmu.tolist(), "term_sd": self.net.tsd.tolist()}
        return out

    # -- compute ------------------------------------------------------------------------------------
    def preprocess(self, faces: Sequence[np.ndarray]) -> torch.Tensor:
        pixels = resize_batch(faces, self.image_size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), self.resize_mode)
        if not self.native:
            return pixels
        return with_side_plane(pixels, [m.native_features(faces) for m in self.native])

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        return self.net(batch)

    def member_log_odds(self, batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.net.member_log_odds(batch)

    def predict(self, batch: torch.Tensor) -> list[Score]:
        with torch.inference_mode():
            logits = self.logits(batch)
        return scores_from_logits(logits, name=self.name, fake_index=1, temperature=self.temperature,
                                  threshold=self.threshold)

    def member_scores(self, batch: torch.Tensor) -> list[dict[str, float]]:
        """Per face, each member's own calibrated fake_prob (shown beside the ensemble's verdict)."""
        return self._member_dicts(self.member_log_odds(batch))

    def predict_with_members(self, batch: torch.Tensor) -> tuple[list[Score], list[dict[str, float]]]:
        """`predict` and `member_scores` from one pass through the members."""
        with torch.inference_mode():
            d = self.net.member_log_odds(batch)
            logits = self.net.combine(d)
        scores = scores_from_logits(logits, name=self.name, fake_index=1, temperature=self.temperature,
                                    threshold=self.threshold)
        return scores, self._member_dicts(d)

    def _member_dicts(self, d: torch.Tensor) -> list[dict[str, float]]:
        probs = torch.sigmoid(d)
        return [dict(zip(self.member_names, (round(float(p), 6) for p in row), strict=True)) for row in probs]

    def features(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first = self._first_pixel_member()
        pixels, _ = split_side_plane(batch)
        x = F.interpolate(pixels, size=(first.image_size, first.image_size), mode="bilinear", align_corners=False,
                          antialias=True) if pixels.shape[-1] != first.image_size else pixels
        mean = torch.tensor(first.mean).view(1, 3, 1, 1)
        std = torch.tensor(first.std).view(1, 3, 1, 1)
        low, high = first.features((x - mean) / std)
        return low, torch.cat([high, self.member_log_odds(batch)], dim=1)

    def _first_pixel_member(self) -> Any:
        return next(m for m in self.members if not reads_native(m))

    def explain_target(self) -> ExplainTarget | None:
        inner = self._first_pixel_member().explain_target()
        if inner is None:
            return None
        # Gradients need the members' eager networks (a member may be served by its fast copy, udfd.fast).
        eager = [getattr(m, "eager", m) for m in self.members]
        net = self.net if all(e is m for e, m in zip(eager, self.members, strict=True)) else \
            _EnsembleNet(eager, self._stack_dict()).eval()
        return ExplainTarget(model=net, layers=inner.layers, reshape_transform=inner.reshape_transform,
                             fake_index=1, methods=tuple(m for m in inner.methods if m != "fullgrad") or ("gradcam",),
                             note=f"Grad-CAM of the ensemble's score on {self._first_pixel_member().name}'s layers")

    def module(self) -> torch.nn.Module:
        return self.net

    def set_calibration(self, *, temperature: float, threshold: float) -> None:
        self.temperature = float(temperature)
        self.threshold = float(threshold)
