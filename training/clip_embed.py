"""CLIP embeddings of face crops, computed once and cached on disk (training side of the `clip` family).

The cache key is the sha256 of the exact crop the encoder sees (so the face-detection and crop-size settings
are part of it) inside a folder named by the encoder id (architecture, input size and a digest of the vision
tower's weights): re-training the projection head or the SVM never runs the encoder again, and another encoder
never reads these vectors. Entries are plain `.npy` files read with `allow_pickle=False`.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from udfd.detectors.clip_encoder import state_sha256

log = logging.getLogger(__name__)


def encoder_id(detector: Any) -> str:
    """`<architecture>-<input size>px-<weights digest>`; safe as a folder name."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(detector.arch.get("clip_model") or "custom"))
    return f"{name}-{detector.image_size}px-{state_sha256(detector.net.visual)[:16]}"


def crop_key(crop: np.ndarray) -> str:
    arr = np.ascontiguousarray(crop)
    return hashlib.sha256(f"{arr.shape}|{arr.dtype}|".encode() + arr.tobytes()).hexdigest()


class EmbeddingCache:
    """`root/<encoder id>/<sha[:2]>/<sha>.npy`, one float32 vector per crop."""

    def __init__(self, root: Path, encoder: str) -> None:
        self.folder = Path(root) / encoder

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:  # a torn write from an interrupted run: recompute it
            log.warning("ignoring unreadable cache entry %s: %s", path, e)
            return None

    def put(self, key: str, vector: np.ndarray) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, np.asarray(vector, np.float32), allow_pickle=False)
        tmp.replace(path)


class _Crops(torch.utils.data.Dataset):
    def __init__(self, crops: np.ndarray, idx: list[int], detector: Any) -> None:
        self.crops, self.idx, self.detector = crops, idx, detector

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        return self.idx[i], self.detector.preprocess([self.crops[self.idx[i]]])[0]


def embed_crops(detector: Any, crops: np.ndarray, *, cache: EmbeddingCache, accelerator: Any,
                batch_size: int = 32) -> np.ndarray:
    """(N, embed_dim) float32 raw CLIP embeddings of `crops`; only the ones missing from the cache run the encoder.

    The encoder pass goes through Accelerate (data loader sharded across processes, results gathered), so it uses
    every GPU of `accelerate launch`; the main process writes the cache.
    """
    keys = [crop_key(c) for c in crops]
    found = [cache.get(k) for k in keys]
    todo = [i for i, v in enumerate(found) if v is None]
    dim = int(detector.arch["clip_config"]["embed_dim"])
    out = np.zeros((len(crops), dim), np.float32)
    for i, v in enumerate(found):
        if v is not None:
            out[i] = v
    log.info("CLIP embeddings: %d cached, %d to compute", len(crops) - len(todo), len(todo))
    if not todo:
        return out
    loader = accelerator.prepare_data_loader(
        torch.utils.data.DataLoader(_Crops(crops, todo, detector), batch_size=batch_size, shuffle=False))
    visual = detector.net.visual.to(accelerator.device).eval()  # frozen: no DDP wrapper, nothing to synchronise
    with torch.inference_mode():
        for idx, batch in tqdm(loader, desc="CLIP embeddings", unit="batch",
                               disable=not accelerator.is_local_main_process):
            emb = visual(batch.to(accelerator.device)).float()
            idx, emb = accelerator.gather_for_metrics((idx.to(accelerator.device), emb))
            for i, v in zip(idx.cpu().tolist(), emb.cpu().numpy(), strict=True):
                out[i] = v
                if accelerator.is_main_process:
                    cache.put(keys[i], v)
    visual.to("cpu")
    return out
