"""Heavily compressed JPEGs are "cannot tell" (udfd/jpeg.py, the "compressed" reason): the estimates (from the
file's tables, and from the pixels of a file saved losslessly after a JPEG), the limit, the words, and what stays
judged (a clean PNG, ordinary JPEG quality, the dev data's qualities)."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from udfd.jpeg import COMPRESSED_QUALITY, jpeg_quality, pixel_jpeg_quality
from udfd.media import decode_image
from udfd.plain import WHY_UNCERTAIN

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _encoded(pixels: np.ndarray, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _photo() -> np.ndarray:
    return np.asarray(Image.open(EXAMPLES / "real_fairface_0098.jpg").convert("RGB"))


@pytest.mark.parametrize("quality", [30, 50, 60, 75, 90])
def test_the_quality_pillow_wrote_is_the_quality_read_back(quality: int) -> None:
    img = decode_image(_encoded(_photo(), "JPEG", quality=quality), name="q.jpg")
    assert img.format == "JPEG" and img.jpeg_quality == pytest.approx(quality, abs=1)


def test_files_without_jpeg_tables_have_no_quality() -> None:
    assert decode_image(_encoded(_photo(), "PNG"), name="p.png").jpeg_quality is None
    assert np.isnan(jpeg_quality({}))
    assert np.isnan(jpeg_quality({0: [1, 2, 3]}))  # not a 64-entry table


def test_a_heavily_compressed_photo_is_cannot_tell_and_an_ordinary_one_is_judged(tiny_settings, tmp_path) -> None:
    from udfd.pipeline import analyze_image

    settings = replace(tiny_settings, uncertain_band=0.0)  # no score-based reason first
    low, usual = tmp_path / "low.jpg", tmp_path / "usual.jpg"
    low.write_bytes(_encoded(_photo(), "JPEG", quality=COMPRESSED_QUALITY - 10))
    usual.write_bytes(_encoded(_photo(), "JPEG", quality=75))  # the dev data's lowest quality
    v = analyze_image(low, settings=settings)
    assert v.faces[0].uncertain and v.faces[0].uncertain_reason == "compressed" and v.overall.uncertain
    assert any(f"heavily compressed JPEG (quality about {COMPRESSED_QUALITY - 10})" in n for n in v.notes)
    assert v.faces[0].label in ("real", "fake")  # the score is still shown, only not trusted
    edge = tmp_path / "edge.jpg"  # the limit itself is "cannot tell"
    edge.write_bytes(_encoded(_photo(), "JPEG", quality=COMPRESSED_QUALITY))
    assert analyze_image(edge, settings=settings).faces[0].uncertain_reason == "compressed"
    u = analyze_image(usual, settings=settings)
    assert u.faces[0].uncertain_reason != "compressed" and not any("compressed" in n for n in u.notes)
    assert "compressed" in WHY_UNCERTAIN["compressed"]


def _clean() -> np.ndarray:
    """The example photo halved (pixel-area averaging): no 8×8 grid of its own JPEG is left in it."""
    img = Image.fromarray(_photo())
    return np.asarray(img.resize((img.width // 2, img.height // 2), Image.Resampling.BOX))


def _decoded(pixels: np.ndarray, quality: int) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(_encoded(pixels, "JPEG", quality=quality))).convert("RGB"))


@pytest.mark.parametrize("quality", [40, 55, 65, 75])
def test_the_pixels_of_a_decoded_jpeg_tell_its_quality(quality: int) -> None:
    assert pixel_jpeg_quality(_decoded(_clean(), quality)) == pytest.approx(quality, abs=3)
    assert pixel_jpeg_quality(_decoded(_clean(), quality)[3:, 5:]) == pytest.approx(quality, abs=3)  # grid moved


def test_pixels_without_a_block_grid_have_no_quality() -> None:
    assert np.isnan(pixel_jpeg_quality(_clean()))  # resampled: never block-coded at this size
    shrunk = Image.fromarray(_decoded(_clean(), 50)).resize((200, 200), Image.Resampling.BILINEAR)
    assert np.isnan(pixel_jpeg_quality(np.asarray(shrunk)))  # compressed, then scaled: the grid is gone
    assert np.isnan(pixel_jpeg_quality(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)))
    assert np.isnan(pixel_jpeg_quality(np.full((256, 256, 3), 128, np.uint8)))  # flat
    assert np.isnan(pixel_jpeg_quality(_decoded(_clean(), 50)[:40, :40]))  # too small to read


def test_a_png_of_a_heavily_compressed_jpeg_is_cannot_tell_and_a_clean_png_is_judged(tiny_settings, tmp_path) -> None:
    from udfd.pipeline import analyze_image

    settings = replace(tiny_settings, uncertain_band=0.0)
    crushed, clean = tmp_path / "crushed.png", tmp_path / "clean.png"
    crushed.write_bytes(_encoded(_decoded(_clean(), COMPRESSED_QUALITY - 20), "PNG"))
    clean.write_bytes(_encoded(_clean(), "PNG"))
    v = analyze_image(crushed, settings=settings)
    assert v.faces[0].uncertain_reason == "compressed" and v.overall.uncertain
    assert any("PNG file whose pixels carry the 8\N{MULTIPLICATION SIGN}8 blocks of a heavily compressed JPEG" in n
               for n in v.notes)
    c = analyze_image(clean, settings=settings)
    assert c.faces[0].uncertain_reason != "compressed" and not any("compressed" in n for n in c.notes)
    assert decode_image(clean.read_bytes(), name="clean.png").jpeg_history is None
    assert decode_image(crushed.read_bytes(), name="c.png").jpeg_quality is None  # a PNG has no tables
