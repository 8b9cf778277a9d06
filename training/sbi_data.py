"""The edge around `training/sbi.py`: FaceMesh landmarks of the real crops (cached once), SBI training datasets.

`train_image.py --sbi only` trains reals against their own self-blends (fakes from the data are ignored);
`--sbi mix` adds the self-blends to the data's reals and fakes. Blends are drawn afresh every epoch.
Faces with no FaceMesh mesh are left out of the SBI sets (counted in the summary and the model card).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from training.augment import AugmentConfig, augment
from training.sbi import SbiConfig, self_blend

log = logging.getLogger(__name__)

SBI_MODES = ("off", "only", "mix")
REAL, DATA_FAKE, SBI = 0, 1, 2  # item kinds
VAL_REALS = 300  # at most this many val reals (+ their fixed self-blends) for early stopping, to bound CPU time
_MESH_VERSION = "facemesh-static-conf0.3-v1"  # part of the cache key: change it when the extraction changes


@dataclass(frozen=True)
class Landmarks:
    """FaceMesh landmarks for some crops: `points[k]` belongs to crop `index[k]`; `missing` had no mesh."""

    index: np.ndarray  # (K,) int64 crop indices
    points: np.ndarray  # (K, 468, 2) float32 pixel coordinates in the crop
    missing: np.ndarray  # crop indices without a mesh

    def lookup(self) -> dict[int, np.ndarray]:
        return {int(i): p for i, p in zip(self.index, self.points, strict=True)}


def cached_landmarks(crops: np.ndarray, idx: list[int], *, cache_dir: Path) -> Landmarks:
    """Landmarks of `crops[idx]`, computed once with MediaPipe FaceMesh and cached as `sbi_landmarks_<stamp>.npz`."""
    idx = sorted(int(i) for i in idx)
    h = hashlib.sha256(_MESH_VERSION.encode())
    h.update(np.asarray(idx, np.int64).tobytes())
    for i in idx:
        h.update(crops[i].tobytes())
    path = Path(cache_dir) / f"sbi_landmarks_{h.hexdigest()[:16]}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            log.info("SBI landmarks from cache %s", path)
            return Landmarks(index=z["index"], points=z["points"], missing=z["missing"])
    from udfd.lips import LipCropper

    mesh = LipCropper(min_confidence=0.3)
    found, points, missing = [], [], []
    try:
        for i in tqdm(idx, desc="FaceMesh landmarks", unit="face"):
            p = mesh.landmarks(crops[i])
            if p is None:
                missing.append(i)
            else:
                found.append(i)
                points.append(p[:468])
    finally:
        mesh.close()
    out = Landmarks(index=np.asarray(found, np.int64), missing=np.asarray(missing, np.int64),
                    points=np.asarray(points, np.float32).reshape(-1, 468, 2))
    log.info("FaceMesh found a mesh on %d of %d real crops (%d skipped)", len(found), len(idx), len(missing))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, index=out.index, points=out.points, missing=out.missing)
    tmp.replace(path)
    return out


def sbi_items(mode: str, labels: np.ndarray, idx: list[int], with_mesh: set[int]) -> list[tuple[int, int]]:
    """(crop index, kind) pairs: every real; each real with a mesh once more as a self-blend; data fakes in mix."""
    if mode not in SBI_MODES[1:]:
        raise ValueError(f"--sbi must be one of {SBI_MODES[1:]} here, got {mode!r}")
    reals = [i for i in idx if labels[i] == 0]
    items = [(i, REAL) for i in reals] + [(i, SBI) for i in reals if i in with_mesh]
    if mode == "mix":
        items += [(i, DATA_FAKE) for i in idx if labels[i] == 1]
    return items


class SbiDataset(torch.utils.data.Dataset):
    """Reals, data fakes and self-blends (a new blend each time an item is drawn), augmented, preprocessed.

    With `epoch_size` an epoch is that many draws walking through one shuffled pass over all items after another,
    so a reduced budget still covers every real over the epochs (the DataLoader's own index is not used then).
    """

    def __init__(self, crops: np.ndarray, items: list[tuple[int, int]], landmarks: dict[int, np.ndarray],
                 detector: Any, *, seed: int, train: bool = True, epoch_size: int = 0,
                 cfg: SbiConfig | None = None) -> None:
        self.crops, self.items, self.landmarks, self.detector = crops, items, landmarks, detector
        self.rng, self.train, self.cfg, self.aug = np.random.default_rng(seed), train, cfg or SbiConfig(), AugmentConfig()
        self.epoch_size, self._order, self._pos = epoch_size, np.zeros(0, np.int64), 0

    def __len__(self) -> int:
        return self.epoch_size or len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        ci, kind = self.items[self._next() if self.epoch_size else i]
        img = self.crops[ci]
        if kind == SBI:
            img = self_blend(img, self.landmarks[ci], self.rng, self.cfg).image
        if self.train:
            img = augment(img, self.rng, self.aug)
        return self.detector.preprocess([img])[0], int(kind != REAL)

    def _next(self) -> int:
        if self._pos >= len(self._order):
            self._order, self._pos = self.rng.permutation(len(self.items)), 0
        self._pos += 1
        return int(self._order[self._pos - 1])


def fixed_val(mode: str, crops: np.ndarray, labels: np.ndarray, val: list[int], landmarks: dict[int, np.ndarray],
              *, seed: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(crops, labels, indices) for early stopping: val reals + one fixed self-blend of each (+ data fakes in mix).

    With `only` no data fake is looked at during training, not even for model selection.
    """
    rng = np.random.default_rng(seed + 1)
    items = sbi_items(mode, labels, val, set(landmarks))
    imgs = [crops[ci] if kind != SBI else self_blend(crops[ci], landmarks[ci], rng).image for ci, kind in items]
    ys = np.asarray([int(kind != REAL) for _, kind in items], np.int64)
    return np.stack(imgs) if imgs else crops[:0], ys, list(range(len(items)))


def sbi_setup(args: Any, crops: np.ndarray, labels: np.ndarray, split: dict[str, list[int]],
              detector: Any) -> tuple[SbiDataset, tuple[np.ndarray, np.ndarray, list[int]], dict[str, Any]]:
    """What `train_image.py --sbi only|mix` trains and early-stops on, plus a summary for the card."""
    if getattr(args, "balance", False):
        raise SystemExit("--sbi cannot be combined with --balance (the balancing plan indexes the data's train split)")
    reals = [i for i in range(len(labels)) if labels[i] == 0]  # all of them, so one cache serves every split
    marks = cached_landmarks(crops, reals, cache_dir=Path(args.cache_dir))
    lookup = marks.lookup()
    items = sbi_items(args.sbi, labels, split["train"], set(lookup))
    epoch_size = int(getattr(args, "sbi_epoch_size", 0) or 0)
    train_ds = SbiDataset(crops, items, lookup, detector, seed=args.seed, epoch_size=epoch_size)
    val = fixed_val(args.sbi, crops, labels, _cap(split["val"], labels, seed=args.seed), lookup, seed=args.seed)
    if len(set(val[1].tolist())) < 2:  # tiny data (smoke tests): no meshed val real, early-stop on train reals
        log.warning("no val real with a FaceMesh mesh: early stopping on train reals and their self-blends")
        val = fixed_val(args.sbi, crops, labels, split["train"], lookup, seed=args.seed)
    kinds = [k for _, k in items]
    summary = {"mode": args.sbi, "train_reals": kinds.count(REAL), "train_self_blends_per_epoch": kinds.count(SBI),
               "train_data_fakes": kinds.count(DATA_FAKE), "no_mesh": int(len(marks.missing)),
               "real_crops_meshed": int(len(marks.index)), "val_items": len(val[2]),
               "val_self_blends": int(val[1].sum()) if args.sbi == "only" else None, "epoch_size": epoch_size}
    log.info("SBI %s", summary)
    return train_ds, val, summary


def _cap(idx: list[int], labels: np.ndarray, *, seed: int, reals: int = VAL_REALS) -> list[int]:
    """idx with at most `reals` of its reals (seeded; fakes kept): early stopping costs an evaluation per epoch."""
    real = [i for i in idx if labels[i] == 0]
    if len(real) <= reals:
        return list(idx)
    keep = set(np.random.default_rng(seed).choice(real, reals, replace=False).tolist())
    return [i for i in idx if labels[i] == 1 or i in keep]


def sbi_card_section(summary: dict[str, Any]) -> str:
    """Markdown for the model card: what SBI is, whom to credit, what this checkpoint was trained on."""
    only = summary["mode"] == "only"
    data = (f"{summary['train_reals']} real face crops of the train split against their own self-blends "
            f"({summary['train_self_blends_per_epoch']} per epoch, drawn afresh each time)"
            + ("" if only else f", plus {summary['train_data_fakes']} fakes from the data"))
    per_epoch = summary.get("epoch_size") or "all"
    return "\n".join([
        "**Self-Blended Images** (SBI; Kaede Shiohara and Toshihiko Yamasaki, *Detecting Deepfakes with "
        "Self-Blended Images*, CVPR 2022). A real face is blended with a copy of itself that was changed in colour "
        "(RGB / HSV shifts, brightness, contrast), frequency (downscale, sharpen or blur) and slightly in scale and "
        "position, inside a mask made from the convex hull of its MediaPipe FaceMesh landmarks (the whole face, the "
        "inner face or the lower face), elastically deformed and blurred, at a random blend ratio. The result carries "
        "the traces a face swap leaves (a blending boundary, colour and sharpness mismatch) without any generator, "
        "and is labelled fake. Implementation: `training/sbi.py` (our own re-implementation of the recipe, not the "
        "authors' code).",
        "",
        f"- Mode: `--sbi {summary['mode']}`: {data}; items per epoch: {per_epoch}.",
        f"- FaceMesh found a mesh on {summary['real_crops_meshed']} real crops; {summary['no_mesh']} without one were "
        "left out of the self-blends.",
        "- Early stopping: " + ("the val split's reals and one fixed self-blend of each; **no fake from the data was "
                                "used for training or model selection**, so every fake source is unseen by the weights."
                                " Temperature and threshold were then fitted on the ordinary val split (real fakes "
                                "included): calibration only, no weights." if only else
                                "the val split (reals, data fakes) plus one fixed self-blend of each val real."),
        "- Expect a face-swap specialist: blending traces are what it learns; GAN or diffusion faces that were never "
        "pasted into a photo carry none. Judge it by the leave-one-source-out table, not by one pooled number.",
    ])


def write_sbi_card(folder: Path, summary: dict[str, Any]) -> None:
    """Add (or replace) the SBI section of the card `train_image.py` wrote into `folder`."""
    from udfd.cards import replace_marked_block

    card = Path(folder) / "README.md"
    card.write_text(replace_marked_block(card.read_text(encoding="utf-8"), "sbi", sbi_card_section(summary),
                                         heading="## Self-blended training (SBI)", before="## Intended use"),
                    encoding="utf-8")
