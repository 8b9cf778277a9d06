"""Training data: list labelled images, split them by group without leaks, face-crop once and cache.

Layout read: an imagefolder tree `DIR/{real,fake}/<source>/**/<image>` (any depth), or a Hub dataset id with
`image` and `label` columns. Groups keep related images in one split: DFDC fakes with their `original` video
(from `manifest.csv` next to the data), LFW swaps with the LFW image of the same number.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from udfd.config import FaceSettings
from udfd.errors import MediaError
from udfd.faces import detect_faces, get_face_detector
from udfd.media import IMAGE_EXTENSIONS, read_image

log = logging.getLogger(__name__)

LABELS = {"real": 0, "fake": 1}


@dataclass(frozen=True)
class Sample:
    path: str  # relative to the data root
    label: int  # 0 real, 1 fake
    source: str
    group: str


def list_samples(root: Path) -> list[Sample]:
    """Every image under root/real and root/fake, with its source folder and leak-free group id."""
    originals = _manifest_originals(root)
    samples = []
    for label_name, label in LABELS.items():
        base = root / label_name
        for path in sorted(p for p in base.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()):
            rel = path.relative_to(root).as_posix()
            parts = path.relative_to(base).parts
            source = parts[0] if len(parts) > 1 else "default"
            samples.append(Sample(rel, label, source, _group(rel, source, path.stem, originals)))
    if not samples:
        raise FileNotFoundError(f"no images under {root}/real or {root}/fake")
    return samples


def _manifest_originals(root: Path) -> dict[str, str]:
    """file (relative to root) -> original video id, from a manifest.csv beside or above the data."""
    for manifest in (root / "manifest.csv", root.parent / "manifest.csv"):
        if manifest.is_file():
            prefix = root.relative_to(manifest.parent).as_posix()
            out = {}
            with manifest.open(newline="", encoding="utf-8") as f:
                for row in csv.DictReader(f):
                    m = re.search(r"original=([\w.-]+?)(?:\.mp4)?(?:;|$)", row.get("note", ""))
                    if m:
                        rel = row["file"].removeprefix(prefix + "/") if prefix != "." else row["file"]
                        out[rel] = m.group(1)
            return out
    return {}


def _group(rel: str, source: str, stem: str, originals: dict[str, str]) -> str:
    if rel in originals:
        return f"{source}:{originals[rel]}"
    number = re.fullmatch(r"(?:real|fake)_(\d+)", stem)
    if number:  # LFW swaps are numbered like the LFW reals they may come from: keep same numbers together
        return f"{source.split('_')[0]}:{number.group(1)}"
    return f"{source}:{stem}"  # e.g. a DFDC real video id, which is also the `original` of its fakes


def split_samples(samples: list[Sample], *, seed: int = 42, val: float = 0.1, test: float = 0.1) -> dict[str, list[int]]:
    """Deterministic split by group: indices for train/val/test; no group spans two splits."""
    groups = sorted({s.group.split(":", 1)[1] if s.source.startswith("dfdc") else s.group for s in samples})
    rng = random.Random(seed)
    rng.shuffle(groups)
    n_val, n_test = round(len(groups) * val), round(len(groups) * test)
    which = {g: "val" for g in groups[:n_val]} | {g: "test" for g in groups[n_val:n_val + n_test]}
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for i, s in enumerate(samples):
        key = s.group.split(":", 1)[1] if s.source.startswith("dfdc") else s.group
        out[which.get(key, "train")].append(i)
    return out


def save_split(path: Path, samples: list[Sample], split: dict[str, list[int]], *, seed: int) -> None:
    payload = {"seed": seed, "splits": {k: [samples[i].path for i in v] for k, v in split.items()}}
    path.write_text(json.dumps(payload, indent=1), encoding="utf-8")


def cached_crops(
    root: Path, samples: list[Sample], *, faces: FaceSettings, size: int, cache_dir: Path, resize: str = "auto"
) -> np.ndarray:
    """(N, size, size, 3) uint8 face crops, computed once (face detection + square crop + resize) and cached.

    Every source is resized to the same size here so image size and resolution cannot act as a shortcut, by the
    detectors' own `resize_face` in the mode the model records (`arch.resize`: "auto" = area when shrinking,
    bilinear when enlarging; "area" = area both ways), so training sees the pixels the product will show the model.
    """
    from udfd.detectors.base import RESIZE_MODES, resize_face

    if resize not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {resize!r}; known: {RESIZE_MODES}")
    stamp = [[s.path for s in samples], asdict(faces), size, _tree_stamp(root, samples)]
    # "area" crops keep the key they had when area was the only mode (the existing caches stay valid)
    key_src = json.dumps(stamp if resize == "area" else [*stamp, "resize_face"])
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    path = cache_dir / f"crops-{key}.npy"
    if path.is_file():
        log.info("face crops from cache %s", path)
        return np.load(path, allow_pickle=False)
    detector = get_face_detector(faces)
    out = np.zeros((len(samples), size, size, 3), dtype=np.uint8)
    found = 0
    for i, s in enumerate(tqdm(samples, desc="face crops", unit="img")):
        try:
            image = read_image(root / s.path)
        except MediaError as e:
            log.warning("skipping unreadable training image: %s", e)
            continue
        face = detect_faces(image.pixels, faces, detector=detector)[0]
        found += face.face_found
        out[i] = resize_face(face.pixels, size, resize)
    log.info("faces found in %d of %d training images", found, len(samples))
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, out, allow_pickle=False)
    tmp.replace(path)
    return out


def _tree_stamp(root: Path, samples: list[Sample]) -> str:
    h = hashlib.sha256()
    for s in samples:
        st = (root / s.path).stat()
        h.update(f"{s.path}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()


def synthetic_dataset(root: Path, *, n: int = 16, seed: int = 0) -> Path:
    """Write n small generated images (half 'fake' with a checker artefact) as an imagefolder tree."""
    from PIL import Image as PILImage

    rng = np.random.default_rng(seed)
    for i in range(n):
        label = "fake" if i % 2 else "real"
        img = rng.integers(60, 200, size=(64, 64, 3), dtype=np.uint8)
        if label == "fake":
            img[::4, ::4] = 255
        folder = root / label / "synthetic"
        folder.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(img).save(folder / f"{label}_{i}.png")
    return root
