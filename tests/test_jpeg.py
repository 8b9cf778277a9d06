"""Heavily compressed JPEGs are "cannot tell" (udfd/jpeg.py, the "compressed" reason): the estimate, the limit, the
words, and what stays judged (PNG, ordinary JPEG quality, the dev data's qualities)."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from udfd.jpeg import COMPRESSED_QUALITY, jpeg_quality
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
