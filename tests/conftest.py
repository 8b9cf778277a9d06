"""Shared fixtures: offline Hub, a tiny ViT checkpoint, paths to the shared dev data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised, tiny ViT checkpoint folder in our format (fp32 so outputs round-trip exactly)."""
    import torch

    from udfd.detectors.vit import ViTDetector

    torch.manual_seed(0)
    det = ViTDetector.create(ViTDetector.tiny_arch)
    det.set_calibration(temperature=1.3, threshold=0.45)
    folder = tmp_path_factory.mktemp("tiny-vit")
    det.save_pretrained(folder, metadata={"version": "test"}, fp16=False)
    return folder


@pytest.fixture()
def tiny_settings(tiny_vit_dir: Path):
    from udfd.config import Settings

    return Settings(detectors=("vit",), models={"vit": f"local-dir:{tiny_vit_dir}"})


@pytest.fixture(scope="session")
def shared_faces() -> Path:
    faces = SHARED_DATA / "faces"
    if not faces.is_dir():
        pytest.skip(f"shared dev data not found at {faces}")
    return faces


@pytest.fixture()
def face_image_path(shared_faces: Path) -> Path:
    return sorted((shared_faces / "real" / "lfw").glob("*.jpg"))[0]


def noise_image(h: int = 64, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
