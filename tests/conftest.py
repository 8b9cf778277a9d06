"""Shared fixtures: offline Hub, a tiny ViT checkpoint, paths to the shared dev data."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
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


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """Write RGB frames as an mp4 (OpenCV's mp4v codec)."""
    import cv2

    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened(), "OpenCV cannot write mp4 here"
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def face_clip(face: np.ndarray, n: int = 8, *, size: tuple[int, int] = (320, 240), faces: int = 1,
              seed: int = 0) -> list[np.ndarray]:
    """n frames of `face` (RGB) pasted on a grey background, drifting a few pixels per frame (so there is
    motion); with faces=2 a second copy sits on the right half."""
    import cv2

    rng = np.random.default_rng(seed)
    w, h = size
    side = min(h - 20, (w // faces) - 20)
    small = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    frames = []
    for t in range(n):
        canvas = np.full((h, w, 3), 120, np.uint8)
        for k in range(faces):
            x = 5 + k * (w // faces) + int(3 * np.sin(t)) + int(rng.integers(0, 3))
            y = 5 + int(3 * np.cos(t))
            canvas[y:y + side, x:x + side] = small
        frames.append(canvas)
    return frames


@pytest.fixture(scope="session")
def face_rgb(shared_faces: Path) -> np.ndarray:
    from udfd.media import read_image

    return read_image(sorted((shared_faces / "real" / "lfw").glob("*.jpg"))[0]).pixels


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(demo, *, max_file_size: int | None = None, **launch) -> Iterator[str]:
    """Launch a Blocks app on a free loopback port (queued, 2 at a time), yield its URL, close it afterwards.
    `launch` holds further `demo.launch` keywords (e.g. app.launch_options(settings)'s `app_kwargs`)."""
    demo.queue(default_concurrency_limit=2)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=free_port(), server_name="127.0.0.1", quiet=True,
                            max_file_size=max_file_size, **launch)
    try:
        yield url
    finally:
        demo.close()
