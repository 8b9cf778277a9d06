"""The frozen open_clip encoder of the `clip` family: architecture configs, weight references, text embeddings.

An encoder is an open_clip architecture (a built-in name such as `ViT-B-32`, resolved to its config dict, or an
inline config dict) plus a weights reference:

- `hf-hub:org/repo[@revision]`: the weights file of an open_clip Hub repo (safetensors first; e.g.
  `hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K`), through the huggingface_hub cache. Offline and not cached, the
  family is unavailable.
- a file path (absolute, `~`, or relative to the checkpoint folder): an open_clip state dict in safetensors, or
  a `.bin`/`.pt` state dict read with `torch.load(weights_only=True)` (never unpickled objects).
- none, with `allow_random_encoder: true`: random weights. Only the test suite's tiny architecture does this,
  and the flag stays in the checkpoint's config.json so such a model never passes for a real CLIP.

Architectures are created offline with `open_clip.model.CLIP(...)`, never through named pretrained tags (those
need the Hub).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from udfd.errors import ModelUnavailableError

log = logging.getLogger(__name__)

# open_clip's names for the weights in a Hub repo; the .bin is read with torch.load(weights_only=True)
HUB_WEIGHTS_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin")
BUNDLED_ENCODER = "encoder.safetensors"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP statistics, used by every open_clip ViT
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# A very small CLIP (ViT 2×32 over 8-px patches of 32-px images, 1-layer text tower) for tests and smoke runs.
# The vocabulary size must stay that of open_clip's default tokenizer.
TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def resolve_config(arch: Mapping[str, Any]) -> dict[str, Any]:
    """The open_clip model config dict: `arch["clip_config"]` when given, else the built-in `arch["clip_model"]`."""
    if arch.get("clip_config"):
        return dict(arch["clip_config"])
    import open_clip

    name = str(arch.get("clip_model") or "")
    cfg = open_clip.get_model_config(name) if name and ":" not in name else None
    if cfg is None or "vision_cfg" not in cfg or "text_cfg" not in cfg:
        raise ModelUnavailableError(f"unknown open_clip architecture {name!r}; use a built-in name such as ViT-B-32"
                                    " (open_clip.list_models()) or give arch.clip_config")
    if cfg["vision_cfg"].get("timm_model_name") or cfg["text_cfg"].get("hf_model_name"):
        raise ModelUnavailableError(f"open_clip architecture {name!r} needs timm/transformers towers; the clip"
                                    " family supports open_clip's own ViT towers")
    return cfg


def image_size(cfg: Mapping[str, Any]) -> int:
    size = cfg["vision_cfg"].get("image_size", 224)
    return int(size[0] if isinstance(size, list | tuple) else size)


def build_visual(cfg: Mapping[str, Any]) -> nn.Module:
    """The vision tower alone (random weights until a state is loaded)."""
    from open_clip.model import _build_vision_tower

    return _build_vision_tower(int(cfg["embed_dim"]), dict(cfg["vision_cfg"]), bool(cfg.get("quick_gelu", False)))


def build_clip(cfg: Mapping[str, Any]) -> nn.Module:
    """The whole CLIP (vision and text towers), random weights."""
    from open_clip.model import CLIP

    return CLIP(embed_dim=int(cfg["embed_dim"]), vision_cfg=dict(cfg["vision_cfg"]), text_cfg=dict(cfg["text_cfg"]),
                quick_gelu=bool(cfg.get("quick_gelu", False)))


def missing_weights_message(arch: Mapping[str, Any]) -> str:
    name = arch.get("clip_model") or "the configured"
    return (f"the clip detector needs {name} open_clip weights and none are configured. Point UDFD_MODEL_CLIP at a"
            " checkpoint folder made by training/train_clip.py, whose config.json names the encoder weights"
            " (udfd.arch.weights: an open_clip Hub repo, e.g."
            " hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K, or a local open_clip weights file such as"
            f" {BUNDLED_ENCODER} in the folder); it never runs with random weights.")


def load_state(weights: str, *, folder: Path | None = None) -> dict[str, torch.Tensor]:
    """The open_clip state dict a weights reference points at. Raises ModelUnavailableError with what to fix."""
    if weights.startswith("hf-hub:"):
        path = _hub_file(weights)
    else:
        path = Path(weights).expanduser()
        if not path.is_absolute() and folder is not None:
            path = Path(folder) / path
        if not path.is_file():
            raise ModelUnavailableError(f"open_clip weights file {path} does not exist; download the encoder weights"
                                        " (e.g. open_clip_model.safetensors) and set udfd.arch.weights to that file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:  # a state dict saved with torch.save; tensors only, never arbitrary objects
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # safetensors / torch raise several types for corrupt or foreign files
        raise ModelUnavailableError(f"cannot read open_clip weights {path} ({type(e).__name__}: {e}); give a"
                                    " safetensors file or a plain state dict") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelUnavailableError(f"{path} holds no state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _hub_file(ref: str) -> Path:
    """The first open_clip weights file the repo has, safetensors first (open_clip's own names)."""
    from huggingface_hub import hf_hub_download

    repo, _, revision = ref.removeprefix("hf-hub:").partition("@")
    errors = []
    for filename in HUB_WEIGHTS_FILES:
        try:
            return Path(hf_hub_download(repo_id=repo, filename=filename, revision=revision or None))
        except Exception as e:  # offline, missing file, auth: huggingface_hub raises many types
            errors.append(f"{filename}: {type(e).__name__}")
    raise ModelUnavailableError(
        f"cannot get the clip encoder weights {ref} ({'; '.join(errors)}). The Hub needs network access; offline,"
        " download the weights elsewhere and set udfd.arch.weights in the checkpoint's config.json to the file (or"
        f" copy it into the checkpoint folder as {BUNDLED_ENCODER})."
    )


def load_visual(visual: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load the `visual.*` part of an open_clip state dict into a vision tower (strict)."""
    sub = {k.removeprefix("visual."): v.float() for k, v in state.items() if k.startswith("visual.")}
    if not sub:
        raise ModelUnavailableError("the open_clip weights hold no visual.* tensors")
    try:
        visual.load_state_dict(sub, strict=True)
    except RuntimeError as e:
        raise ModelUnavailableError(f"the open_clip weights do not fit this architecture: {e}") from e


def text_embedding(model: nn.Module, prompt: str) -> torch.Tensor:
    """The CLIP text embedding (embed_dim,) of one prompt, e.g. the image category "a photo of a human face"."""
    import open_clip

    tokens = open_clip.tokenize([prompt], context_length=int(model.context_length))
    with torch.inference_mode():
        return model.encode_text(tokens)[0].float().clone()


def state_sha256(module: nn.Module) -> str:
    """A digest of a module's tensors: identifies the encoder weights (for caches and model cards)."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()
