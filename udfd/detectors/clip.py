"""CLIP family (`clip`), after the CLIP report: frozen open_clip embeddings -> triplet projection -> SVM.

    face crop -> frozen open_clip image encoder (ViT-B/32 by default) -> embedding e (512)
              -> projection head h (512 -> 128, trained with a triplet loss by training/train_clip.py)
              -> fusion with the category prompt's text embedding t: h(e) (image), h(e) + h(t) (sum),
                 h(e) ⊙ h(t) (product); L2-normalised -> z
              -> SVM decision f(z) (RBF or linear) -> Platt: fake_prob = 1 / (1 + exp(a·f + b))

`logits()` returns the two-class logits (0, -(a·f + b)), so the shared `scores_from_logits` applies the
temperature like in every family (it stays 1 after training: Platt already calibrates). Everything after the
encoder is torch, so Grad-CAM follows the decision back into the vision tower (`explain_target`).

Checkpoint folder: `config.json` (udfd.arch names the open_clip architecture and the encoder weights; udfd.svm
the kernel and γ; udfd.platt), `model.safetensors` (head, SVM arrays, text embedding, PCA), and
`encoder.safetensors` unless the weights are a Hub reference. Without encoder weights the family is unavailable;
random encoder weights are accepted only with `allow_random_encoder: true` (tests), which stays in config.json.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from udfd.detectors import clip_encoder as enc
from udfd.detectors.base import ExplainTarget, register, resize_batch, scores_from_logits
from udfd.detectors.clip_head import VARIANTS, PCAParams, Platt, ProjectionHead, SVMDecision, SVMParams, fuse
from udfd.errors import ModelUnavailableError
from udfd.hub import CONFIG_NAME, UDFD_KEY, WEIGHTS_NAME
from udfd.types import Score

log = logging.getLogger(__name__)

DEFAULT_ARCH: dict[str, Any] = {
    "clip_model": "ViT-B-32",  # open_clip built-in architecture; or give "clip_config" (a config dict)
    "clip_config": None,
    "weights": None,  # hf-hub:org/repo[@rev] | path to an open_clip weights file; required
    "allow_random_encoder": False,  # True only for the tests' tiny architecture: random weights, marked as such
    "head_hidden": 256,
    "head_dim": 128,
    "variant": "image",  # "image" | "sum" | "product"
    "prompt": "a photo of a human face",  # the category text of the image+text variants
}


def _token_grid_to_map(tokens: torch.Tensor) -> torch.Tensor:
    """(B, 1 + N, C) open_clip ViT tokens (batch first) -> (B, C, √N, √N), without the class token."""
    patches = tokens[:, 1:, :]
    side = math.isqrt(patches.shape[1])
    return patches.reshape(tokens.shape[0], side, side, tokens.shape[2]).permute(0, 3, 1, 2)


class ClipNet(nn.Module):
    """Frozen vision tower + projection head + fusion + SVM + Platt: (B, 3, S, S) -> (B, 2) logits (real, fake)."""

    def __init__(self, visual: nn.Module, head: ProjectionHead, svm: SVMParams, *, variant: str,
                 text: torch.Tensor | None, platt: Platt) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; known: {VARIANTS}")
        self.visual = visual.requires_grad_(False)  # frozen: only the head is trained (on cached embeddings)
        self.head = head
        self.svm = SVMDecision(svm)
        self.variant = variant
        self.register_buffer("text_embedding", None if text is None else text.float().clone())
        self.platt = platt

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)

    def project(self, embedding: torch.Tensor) -> torch.Tensor:
        text = None if self.text_embedding is None else self.head(self.text_embedding[None])
        return fuse(self.head(embedding), text, self.variant)

    def decision(self, z: torch.Tensor) -> torch.Tensor:
        return self.svm(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fake = self.platt.logit(self.decision(self.project(self.embed(x)))).float()
        return torch.stack([torch.zeros_like(fake), fake], dim=1)


@register
class ClipDetector:
    family: ClassVar[str] = "clip"
    modality: ClassVar[Literal["image", "video"]] = "image"
    tiny_arch: ClassVar[dict[str, Any]] = {
        "clip_model": "udfd-tiny-random", "clip_config": enc.TINY_CLIP_CONFIG, "allow_random_encoder": True,
        "head_hidden": 24, "head_dim": 16, "variant": "product",
    }
    # Read by training/train_clip.py (triplet loss + SVM: train_image.py's cross-entropy loop does not fit it).
    train_defaults: ClassVar[dict[str, Any]] = {}
    train_script: ClassVar[str] = "train_clip.py"

    def __init__(self, net: ClipNet, *, arch: dict[str, Any], meta: dict[str, Any], pca: PCAParams | None = None,
                 name: str = "clip", version: str = "untrained") -> None:
        self.net = net.eval()
        self.arch = dict(arch)
        self.meta = dict(meta)
        self.pca = pca
        self.name = name
        self.version = version
        self.image_size = enc.image_size(arch["clip_config"])
        self.mean, self.std = enc.CLIP_MEAN, enc.CLIP_STD
        self.fake_index = 1
        self.threshold = float(meta.get("threshold", 0.5))
        self.temperature = float(meta.get("temperature", 1.0))

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def accepts(cls, config: dict[str, Any]) -> bool:
        return config.get(UDFD_KEY, {}).get("family") == cls.family

    @classmethod
    def create(cls, arch: dict[str, Any]) -> ClipDetector:
        """A detector with the encoder's weights loaded, a random head and a random linear decision."""
        a = {**DEFAULT_ARCH, **arch}
        a["clip_config"] = enc.resolve_config(a)
        clip = enc.build_clip(a["clip_config"])
        if a["weights"]:
            state = enc.load_state(str(a["weights"]))
            enc.load_visual(clip.visual, state)
            if a["variant"] != "image":  # the text tower makes the prompt's embedding: it must be real too
                missing = clip.load_state_dict({k: v.float() for k, v in state.items()}, strict=False).missing_keys
                if any(not k.startswith("visual.") for k in missing):
                    raise ModelUnavailableError(f"the {a['variant']!r} variant needs the CLIP text tower, which the"
                                                f" weights {a['weights']} do not hold; use the image variant")
        elif not a["allow_random_encoder"]:
            raise ModelUnavailableError(enc.missing_weights_message(a))
        text = enc.text_embedding(clip, a["prompt"]) if a["variant"] != "image" else None
        head = ProjectionHead(int(a["clip_config"]["embed_dim"]), int(a["head_hidden"]), int(a["head_dim"]))
        net = ClipNet(clip.visual, head, SVMParams.random_linear(int(a["head_dim"])), variant=a["variant"],
                      text=text, platt=Platt())
        return cls(net, arch=a, meta={"family": cls.family})

    @classmethod
    def from_pretrained(cls, folder: Path, config: dict[str, Any]) -> ClipDetector:
        from safetensors.torch import load_file

        folder = Path(folder)
        meta = config[UDFD_KEY]
        arch = {**DEFAULT_ARCH, **meta["arch"]}
        if not arch["weights"]:
            raise ModelUnavailableError(enc.missing_weights_message(arch))
        visual = enc.build_visual(arch["clip_config"])
        enc.load_visual(visual, enc.load_state(str(arch["weights"]), folder=folder))
        if arch["allow_random_encoder"]:
            log.warning("%s: the clip encoder has RANDOM weights (allow_random_encoder): a test checkpoint", folder)
        tensors = load_file(str(folder / WEIGHTS_NAME))
        head = ProjectionHead(int(arch["clip_config"]["embed_dim"]), int(arch["head_hidden"]), int(arch["head_dim"]))
        head.load_state_dict({k.removeprefix("head."): v.float() for k, v in tensors.items() if k.startswith("head.")})
        platt = Platt(a=float(meta["platt"]["a"]), b=float(meta["platt"]["b"]))
        net = ClipNet(visual, head, SVMParams.from_stored(meta["svm"], tensors), variant=arch["variant"],
                      text=tensors.get("text_embedding"), platt=platt)
        return cls(net, arch=arch, meta=meta, pca=PCAParams.from_stored(tensors), name=meta.get("name", cls.family),
                   version=str(meta.get("version", folder.name)))

    def save_pretrained(self, folder: Path, *, metadata: dict[str, Any] | None = None, fp16: bool = True) -> None:
        """model.safetensors + config.json, and encoder.safetensors unless the weights are a Hub reference."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        dtype = torch.float16 if fp16 else torch.float32  # for a bundled encoder only; the head is small: float32
        tensors = {f"head.{k}": v.detach().float().contiguous() for k, v in self.net.head.state_dict().items()}
        tensors |= self.net.svm.params().tensors()  # float64: the decision must round-trip exactly
        if self.net.text_embedding is not None:
            tensors["text_embedding"] = self.net.text_embedding.detach().float().contiguous()
        if self.pca is not None:
            tensors |= self.pca.tensors()
        save_file(tensors, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
        arch = dict(self.arch)
        if not str(arch.get("weights") or "").startswith("hf-hub:"):  # a local file or random: ship the encoder
            visual = {f"visual.{k}": v.detach().to(dtype).contiguous() for k, v in self.net.visual.state_dict().items()}
            tmp = folder / (enc.BUNDLED_ENCODER + ".tmp")
            save_file(visual, str(tmp), metadata={"format": "pt"})
            tmp.replace(folder / enc.BUNDLED_ENCODER)
            arch["weights"] = enc.BUNDLED_ENCODER  # relative to the folder: no absolute path in config.json
        meta = {**self.meta, **(metadata or {}), "family": self.family, "arch": arch, "labels": {0: "real", 1: "fake"},
                "svm": self.net.svm.params().meta(), "platt": {"a": self.net.platt.a, "b": self.net.platt.b},
                "threshold": self.threshold, "temperature": self.temperature,
                "encoder_dtype": str(dtype).split(".")[-1],
                "preprocessing": {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std)}}
        (folder / CONFIG_NAME).write_text(json.dumps({UDFD_KEY: meta}, indent=1), encoding="utf-8")

    def with_classifier(self, head: ProjectionHead, svm: SVMParams, platt: Platt, *, variant: str,
                        text: torch.Tensor | None, pca: PCAParams | None, meta: dict[str, Any]) -> ClipDetector:
        """A detector sharing this one's encoder with a trained head, SVM and calibration (training script)."""
        net = ClipNet(self.net.visual, head, svm, variant=variant, text=text, platt=platt)
        return type(self)(net, arch={**self.arch, "variant": variant}, meta={**self.meta, **meta}, pca=pca,
                          name=self.name, version=self.version)

    # -- compute ------------------------------------------------------------------------------------
    def preprocess(self, faces: Sequence[np.ndarray]) -> torch.Tensor:
        return resize_batch(faces, self.image_size, self.mean, self.std)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        return self.net(batch)

    def predict(self, batch: torch.Tensor) -> list[Score]:
        with torch.inference_mode():
            logits = self.net(batch)
        return scores_from_logits(logits, name=self.name, fake_index=self.fake_index,
                                  temperature=self.temperature, threshold=self.threshold)

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        """Raw CLIP image embeddings (B, embed_dim)."""
        with torch.inference_mode():
            return self.net.embed(batch).float()

    def decision_from_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        """SVM decision values (float64) of cached embeddings; > 0 leans fake."""
        with torch.inference_mode():
            return self.net.decision(self.net.project(embeddings))

    def features(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw CLIP embedding, fused 128-d projection)."""
        with torch.inference_mode():
            emb = self.net.embed(batch).float()
            return emb.clone(), self.net.project(emb).clone()

    def explain_target(self) -> ExplainTarget | None:
        last = self.net.visual.transformer.resblocks[-1]
        return ExplainTarget(model=self.net, layers=(last.ln_1,), reshape_transform=_token_grid_to_map,
                             fake_index=self.fake_index, methods=("gradcam", "eigencam"),
                             note="Grad-CAM follows the SVM decision back through the projection head into the last "
                                  "block of the frozen CLIP vision tower; FullGrad is not meaningful on a ViT.")

    def module(self) -> torch.nn.Module:
        return self.net

    def set_calibration(self, *, temperature: float, threshold: float) -> None:
        self.temperature = float(temperature)
        self.threshold = float(threshold)
