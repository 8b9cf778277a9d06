"""Safe image decoding: the only place in the library that opens user image files.

Every failure becomes a `MediaError` naming the file and saying what is wrong. File size, pixel count, side
length and aspect ratio are checked before anything large is allocated: the size comes from the header, before
`load()` decodes the data. An accepted image larger than the working side is decoded reduced (JPEG DCT scaling
through `draft`, then `reduce`/resize), so no face detector ever sees a side above it: native detectors abort
the whole process on sides >= 32767, which no `except` can catch.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import stat
import struct
import warnings
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

from udfd.config import Settings
from udfd.errors import MediaError
from udfd.types import Image

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})

# Pillow format ids tried when opening; restricting them keeps the other plugins (EPS runs Ghostscript,
# and so on) away from untrusted bytes. Multi-picture JPEGs from cameras open through "JPEG" as "MPO".
_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
_UNSUPPORTED = "not a supported image (JPEG, PNG, WebP, BMP, GIF, TIFF)"
# What a damaged file raises from Pillow's decoders and parsers.
_CORRUPT_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error, zlib.error)
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_RESIZABLE_MODES = frozenset({"RGB", "RGBA", "L", "LA", "I", "F"})
_WHITE = (255, 255, 255, 255)
_TIMES = "\N{MULTIPLICATION SIGN}"
_ORIENTATION = 0x0112  # the EXIF Orientation tag

# Defaults come from the one place they are set (dataclass defaults are class attributes).
_DEFAULT_MAX_PIXELS: int = Settings.max_pixels
_DEFAULT_MAX_FILE_BYTES: int = Settings.max_file_bytes
_DEFAULT_MAX_SIDE: int = Settings.max_side
_DEFAULT_MAX_ASPECT: float = Settings.max_aspect
_DEFAULT_WORK_SIDE: int = Settings.work_side


def image_limits(settings: Settings) -> dict[str, Any]:
    """The decoding limits of `settings`, as keyword arguments for `decode_image` / `read_image`."""
    return {"max_pixels": settings.max_pixels, "max_side": settings.max_side, "max_aspect": settings.max_aspect,
            "work_side": settings.work_side}


def check_dimensions(width: int, height: int, *, max_pixels: int = _DEFAULT_MAX_PIXELS,
                     max_side: int = _DEFAULT_MAX_SIDE, max_aspect: float = _DEFAULT_MAX_ASPECT,
                     what: str = "image") -> str:
    """Why an image (or video frame) of `width` x `height` cannot be analysed, or "" when it can. Pure."""
    size = f"{what} is {width}{_TIMES}{height}"
    if width <= 0 or height <= 0:
        return f"{size} pixels: it has no pixels"
    if width * height > max_pixels:
        return f"{size} = {width * height} pixels, more than the limit of {max_pixels} (UDFD_MAX_PIXELS)"
    if max(width, height) > max_side:
        return f"{size} pixels: a side is longer than the limit of {max_side} (UDFD_MAX_SIDE)"
    if max(width, height) / min(width, height) > max_aspect:
        return (f"{size} pixels: one side is more than {max_aspect:g} times the other (UDFD_MAX_ASPECT); "
                "crop it around the face")
    return ""


def decode_image(
    data: bytes,
    *,
    name: str = "<bytes>",
    max_pixels: int = _DEFAULT_MAX_PIXELS,
    max_side: int = _DEFAULT_MAX_SIDE,
    max_aspect: float = _DEFAULT_MAX_ASPECT,
    work_side: int = _DEFAULT_WORK_SIDE,
) -> Image:
    """Decode image bytes to an RGB uint8 (H, W, 3) `Image`, EXIF orientation applied.

    Multi-frame files (GIF, TIFF, APNG) give their first frame; transparency is composited on white. Images
    whose longer side exceeds `work_side` are decoded reduced to it (`Image.original_size` keeps the file's own
    size). Raises `MediaError` for empty files, non-images, damaged files, and images that break a limit
    (`check_dimensions`), before their pixels are decoded.
    """
    if not data:
        raise MediaError(name, "file is empty")
    with warnings.catch_warnings():
        # Pillow's own bomb warning fires at a fixed size; the header check below applies our limit.
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
        try:
            im = PILImage.open(io.BytesIO(data), formats=_FORMATS)
        except UnidentifiedImageError as e:
            raise MediaError(name, _UNSUPPORTED) from e
        except PILImage.DecompressionBombError as e:
            hard = 2 * (PILImage.MAX_IMAGE_PIXELS or 0)
            raise MediaError(
                name, f"image has more than {hard} pixels, more than the limit of {max_pixels} (UDFD_MAX_PIXELS)"
            ) from e
        except _CORRUPT_ERRORS as e:
            raise MediaError(name, f"file is truncated or corrupt: {e}") from e
    with im:
        width, height = im.size
        problem = check_dimensions(width, height, max_pixels=max_pixels, max_side=max_side, max_aspect=max_aspect)
        if problem:
            raise MediaError(name, problem)
        fmt = im.format or "unknown"
        quality = _jpeg_quality(im) if fmt == "JPEG" else None
        scale = min(1.0, work_side / max(width, height))
        try:
            im.seek(0)
            if scale < 1.0:
                # JPEG only: the decoder scales by 1/2, 1/4 or 1/8 while decoding, never below the requested size.
                # Asking for half the working size lets it reduce whenever that keeps between 1/2 and all of it.
                im.draft(im.mode, (math.ceil(width * scale / 2), math.ceil(height * scale / 2)))
            im.load()
        except _CORRUPT_ERRORS as e:
            raise MediaError(name, f"file is truncated or corrupt: {e}") from e
        original_mode = im.mode
        frame = _apply_orientation(im, name)
        swap = frame.size != im.size  # transposed by EXIF: the file's width is the picture's height
        # Shrink before the colour conversion (no full-size RGB copy); the few modes Pillow cannot resize
        # (palette, 1-bit, CMYK, 16-bit) are shrunk after it.
        pixels = _fit(_to_rgb(_shrink(frame, work_side), name), work_side)
    original = (height, width) if swap else (width, height)
    logger.debug("decoded %s: %s %s %dx%d (file %dx%d)", name, fmt, original_mode, pixels.shape[1],
                 pixels.shape[0], *original)
    return Image(
        pixels=pixels,
        source=name,
        sha256=hashlib.sha256(data).hexdigest(),
        format=fmt,
        original_mode=original_mode,
        original_size=original,
        jpeg_quality=quality,
        jpeg_history=_jpeg_history(pixels) if quality is None and scale == 1.0 else None,
        webp_quality=_webp_quality(data) if fmt == "WEBP" else None,
    )


def _jpeg_quality(im: PILImage.Image) -> float | None:
    """The quality `udfd.jpeg` estimates from the tables Pillow read with the header; None without usable tables."""
    from udfd.jpeg import jpeg_quality

    q = jpeg_quality(getattr(im, "quantization", None) or {})
    return None if math.isnan(q) else q


def _jpeg_history(pixels: np.ndarray) -> float | None:
    """A non-JPEG file's earlier JPEG quality from its pixels (a reduced copy has lost the block grid: not asked)."""
    from udfd.jpeg import pixel_jpeg_quality

    q = pixel_jpeg_quality(pixels)
    return None if math.isnan(q) else q


def _webp_quality(data: bytes) -> float | None:
    """A lossy WebP's quality from its VP8 frame header (`udfd.webp`); None for lossless or animated WebP."""
    from udfd.webp import webp_quality

    q = webp_quality(data)
    return None if math.isnan(q) else q


def read_image(
    path: str | os.PathLike[str],
    *,
    max_pixels: int = _DEFAULT_MAX_PIXELS,
    max_file_bytes: int = _DEFAULT_MAX_FILE_BYTES,
    max_side: int = _DEFAULT_MAX_SIDE,
    max_aspect: float = _DEFAULT_MAX_ASPECT,
    work_side: int = _DEFAULT_WORK_SIDE,
) -> Image:
    """Read and decode an image file; size and type are checked before any byte is read."""
    name = str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError as e:
        raise MediaError(name, "file not found") from e
    except OSError as e:
        raise MediaError(name, f"cannot access file: {e.strerror or e}") from e
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise MediaError(name, f"is {kind}, not an image file")
    if st.st_size > max_file_bytes:
        raise MediaError(name, _too_big(st.st_size, max_file_bytes))
    try:
        with open(path, "rb") as f:
            # Read one byte past the limit: the file may have grown since stat().
            data = f.read(max_file_bytes + 1)
    except OSError as e:
        raise MediaError(name, f"cannot read file: {e.strerror or e}") from e
    if len(data) > max_file_bytes:
        raise MediaError(name, _too_big(len(data), max_file_bytes))
    return decode_image(data, name=name, max_pixels=max_pixels, max_side=max_side, max_aspect=max_aspect,
                        work_side=work_side)


def iter_image_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand folders recursively into their image files (sorted, by extension, case-insensitive).

    Paths that are not folders are kept as given, whatever their extension, so that a named file that is
    missing or not an image gets a clear error when it is read.
    """
    files: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = (f for f in path.rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS and f.is_file())
            files.extend(sorted(found))
        else:
            files.append(path)
    return files


def _too_big(size: int, limit: int) -> str:
    return f"file is {size} bytes, more than the limit of {limit} (UDFD_MAX_FILE_BYTES)"


def _shrink(im: PILImage.Image, side: int) -> PILImage.Image:
    """`im` resized (aspect kept) to at most `side` on its longer side, in its own mode when Pillow can."""
    width, height = im.size
    scale = side / max(width, height)
    if scale >= 1.0 or im.mode not in _RESIZABLE_MODES:
        return im
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return im.resize(size, PILImage.Resampling.BILINEAR, reducing_gap=2.0)


def _fit(pixels: np.ndarray, side: int) -> np.ndarray:
    """`pixels` shrunk (aspect kept) so that its longer side is at most `side`; unchanged when it already is."""
    height, width = pixels.shape[:2]
    scale = side / max(height, width)
    if scale >= 1.0:
        return pixels
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = PILImage.fromarray(pixels).resize(size, PILImage.Resampling.BILINEAR, reducing_gap=2.0)
    return np.ascontiguousarray(np.asarray(small, dtype=np.uint8))


def _apply_orientation(im: PILImage.Image, name: str) -> PILImage.Image:
    """Rotate/flip as the EXIF Orientation tag says. A broken EXIF block is logged, not fatal.

    `im` itself when there is nothing to turn: `exif_transpose` returns a full copy even then (185 MB for a
    7000x7000 PNG, measured: a request's peak)."""
    try:
        if im.getexif().get(_ORIENTATION, 1) == 1:
            return im
        return ImageOps.exif_transpose(im)
    except _CORRUPT_ERRORS + (KeyError,) as e:
        logger.warning("%s: unreadable EXIF, orientation not applied: %s", name, e)
        return im


def _to_rgb(im: PILImage.Image, name: str) -> np.ndarray:
    """Any Pillow mode -> contiguous uint8 (H, W, 3)."""
    mode = im.mode
    if mode.startswith("I") or mode == "F":
        gray = _scale_to_uint8(np.asarray(im), mode)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    try:
        if mode in _ALPHA_MODES or "transparency" in im.info or (im.palette is not None and im.palette.mode == "RGBA"):
            rgba = im.convert("RGBA")
            im = PILImage.alpha_composite(PILImage.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
        elif im.mode != "RGB":
            im = im.convert("RGB")
    except ValueError as e:
        raise MediaError(name, f"colour mode {mode} is not supported: {e}") from e
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


def _scale_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Map 16/32-bit integer or float samples to 0..255 by scaling, never by clipping.

    Integer data inside 0..65535 is read as 16-bit (65535 -> 255); float data inside [0, 1] as a fraction
    and inside [0, 255] as 8-bit levels; anything else is stretched from its own minimum to maximum.
    """
    values = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if mode != "F" and lo >= 0 and hi <= 65535:
        scaled = values / 257.0
    elif mode == "F" and lo >= 0 and hi <= 1:
        scaled = values * 255.0
    elif mode == "F" and lo >= 0 and hi <= 255:
        scaled = values
    else:
        logger.debug("mode %s samples span %g..%g: stretching to 0..255", mode, lo, hi)
        scaled = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
