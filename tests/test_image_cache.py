"""udfd/ui/image_cache.py: Gradio's cached image outputs are written atomically and never rewritten in place, so
identical answers served at the same time cannot truncate one another (tests/test_app.py's concurrent requests)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from gradio import processing_utils
from PIL import Image

from udfd.ui.image_cache import install, save_pil_to_cache_atomic


def test_install_routes_every_image_output_through_the_atomic_writer(tmp_path: Path) -> None:
    install()
    install()  # idempotent
    assert processing_utils.save_pil_to_cache is save_pil_to_cache_atomic
    arr = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    path = Path(processing_utils.save_img_array_to_cache(arr, str(tmp_path), format="png"))
    assert path.read_bytes() == processing_utils.encode_pil_to_bytes(Image.fromarray(arr), "png")
    assert [p.name for p in path.parent.iterdir()] == ["image.png"]  # no temporary file left behind


def test_an_existing_cached_image_is_left_alone(tmp_path: Path) -> None:
    img = Image.new("RGB", (32, 32), (200, 10, 10))
    path = Path(save_pil_to_cache_atomic(img, str(tmp_path), format="png"))
    inode = path.stat().st_ino
    assert Path(save_pil_to_cache_atomic(img, str(tmp_path), format="png")) == path
    assert path.stat().st_ino == inode  # not rewritten: a response streaming it keeps reading a whole file


def test_concurrent_identical_saves_never_expose_a_partial_file(tmp_path: Path) -> None:
    arr = np.random.default_rng(1).integers(0, 255, (512, 512, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    want = processing_utils.encode_pil_to_bytes(img, "png")
    seen: list[int] = []
    stop = threading.Event()

    def write() -> None:
        for _ in range(20):
            save_pil_to_cache_atomic(img, str(tmp_path), format="png")

    def read() -> None:
        while not stop.is_set():
            for p in tmp_path.glob("*/image.png"):
                seen.append(len(p.read_bytes()))

    readers = [threading.Thread(target=read) for _ in range(2)]
    writers = [threading.Thread(target=write) for _ in range(4)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert set(seen) <= {len(want)}  # every read of the cached file saw all of it
