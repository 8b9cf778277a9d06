"""Gradio's cached image outputs, written atomically: identical answers served at once are never truncated.

`gradio.processing_utils.save_pil_to_cache` (Gradio 6.31) names a cached image by the hash of its bytes and always
rewrites it in place. Two identical answers at once (the same photo analysed twice: the same annotated image) so
truncate the file while a third response streams it, and the client gets part of it ("peer closed connection
without sending complete message body (received 65536 bytes, expected 77931)", seen in tests/test_app.py's three
concurrent requests). `install()` replaces it with a version that leaves an existing file alone (its name is the hash
of its content) and writes a new one under a temporary name renamed into place, as Gradio's own
`save_file_to_cache` already does for files. Idempotent; every Gradio image path (Image, Gallery, AnnotatedImage)
goes through this one function.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

from gradio import processing_utils
from PIL import Image


def save_pil_to_cache_atomic(img: Image.Image, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    data = processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    path = (folder / f"{name}.{format}").resolve()
    if path.is_file():
        with contextlib.suppress(OSError):
            os.utime(path)  # Gradio's delete_cache ages files by ctime: a copy handed out again is touched
        return str(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return str(path)


save_pil_to_cache_atomic.udfd_atomic = True  # type: ignore[attr-defined]


def install() -> None:
    """Route Gradio's image caching through `save_pil_to_cache_atomic` (once per process)."""
    if not getattr(processing_utils.save_pil_to_cache, "udfd_atomic", False):
        processing_utils.save_pil_to_cache = save_pil_to_cache_atomic
