"""Lossy WebPs saved at low quality are "cannot tell" (udfd/webp.py, the "compressed" reason): the quantiser read
from the VP8 header, the quality estimate, what has no estimate (lossless, animated, not a WebP, damaged bytes:
never an error), and what stays judged."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from udfd.media import decode_image
from udfd.webp import COMPRESSED_WEBP_QUALITY, quality_from_index, vp8_quantisers, webp_quality

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _photo() -> np.ndarray:
    return np.asarray(Image.open(EXAMPLES / "real_fairface_0098.jpg").convert("RGB"))


def _webp(pixels: np.ndarray, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="WEBP", **kw)
    return buf.getvalue()


@pytest.mark.parametrize("quality", [10, 30, 50, 70, 85, 95])
def test_the_quality_libwebp_wrote_is_read_back_from_the_header(quality: int) -> None:
    data = _webp(_photo(), quality=quality)
    q = vp8_quantisers(data)
    assert q is not None and len(q) == 4 and all(0 <= i <= 127 for i in q)  # libwebp's four segments
    assert webp_quality(data) == pytest.approx(quality, abs=8)
    assert decode_image(data, name="x.webp").webp_quality == webp_quality(data)


def test_a_coarser_file_has_larger_quantisers_and_opencvs_libwebp_reads_the_same() -> None:
    means = [np.mean(vp8_quantisers(_webp(_photo(), quality=q))) for q in (20, 50, 80, 100)]
    assert means == sorted(means, reverse=True) and means[-1] == 0
    ok, buf = cv2.imencode(".webp", cv2.cvtColor(_photo(), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_WEBP_QUALITY, 40])
    assert ok and webp_quality(buf.tobytes()) == pytest.approx(40, abs=8)


def test_the_index_to_quality_mapping_inverts_libwebps() -> None:
    assert quality_from_index(0) == 100 and quality_from_index(127) == 0
    qs = [quality_from_index(i) for i in range(128)]
    assert qs == sorted(qs, reverse=True)
    # libwebp: q = 127 (1 - c), c = linear^(1/3), linear = 2/3 Q below Q = 0.75, else 2 Q - 1
    for quality in (0.2, 0.5, 0.74, 0.8, 0.95):
        linear = quality * 2 / 3 if quality < 0.75 else 2 * quality - 1
        assert quality_from_index(127 * (1 - linear ** (1 / 3))) == pytest.approx(100 * quality, abs=1e-6)


def test_an_rgba_webp_keeps_its_quantiser_in_the_extended_format() -> None:
    rgba = np.dstack([_photo(), np.full(_photo().shape[:2], 200, np.uint8)])
    data = _webp(rgba, quality=40)
    assert data[12:16] == b"VP8X"  # alpha: the extended container, VP8 after ALPH
    assert webp_quality(data) == pytest.approx(40, abs=8)


def test_what_has_no_quantiser_has_no_quality_and_never_raises() -> None:
    photo = _photo()
    lossless = _webp(photo, lossless=True)
    assert np.isnan(webp_quality(lossless)) and decode_image(lossless, name="l.webp").webp_quality is None
    frames = [Image.fromarray(photo), Image.fromarray(photo[::-1].copy())]
    buf = io.BytesIO()
    frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:], quality=30)
    assert np.isnan(webp_quality(buf.getvalue()))  # animated: no single still's quantiser
    png = io.BytesIO()
    Image.fromarray(photo).save(png, format="PNG")
    assert np.isnan(webp_quality(png.getvalue())) and decode_image(png.getvalue(), name="p.png").webp_quality is None
    lossy = _webp(photo, quality=30)
    rng = np.random.default_rng(0)
    for cut in range(0, 80):  # every truncation of the header
        assert isinstance(webp_quality(lossy[:cut]), float)
    for _ in range(300):  # damaged headers: any bytes after the RIFF/WEBP/VP8 tags
        junk = bytearray(lossy[:200])
        junk[20:200] = rng.integers(0, 256, 180, dtype=np.uint8).tobytes()
        q = webp_quality(bytes(junk))
        assert np.isnan(q) or 0 <= q <= 100


def test_a_low_quality_webp_is_cannot_tell_and_a_high_quality_one_is_judged(tiny_settings, tmp_path) -> None:
    from udfd.pipeline import analyze_image

    settings = replace(tiny_settings, uncertain_band=0.0)  # no score-based reason first
    low, high, lossless = tmp_path / "low.webp", tmp_path / "high.webp", tmp_path / "lossless.webp"
    low.write_bytes(_webp(_photo(), quality=COMPRESSED_WEBP_QUALITY - 30))
    high.write_bytes(_webp(_photo(), quality=100))
    lossless.write_bytes(_webp(_photo(), lossless=True))
    v = analyze_image(low, settings=settings)
    assert v.faces[0].uncertain_reason == "compressed" and v.overall.uncertain
    assert any(n.startswith("a lossy WebP (quality about") for n in v.notes)
    assert v.faces[0].label in ("real", "fake")  # the score is still shown, only not trusted
    for judged in (high, lossless):
        u = analyze_image(judged, settings=settings)
        assert u.faces[0].uncertain_reason != "compressed" and not any("WebP" in n for n in u.notes)
