"""End-to-end pipeline behaviour: several faces, no face, odd modes, bad input, concurrency."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from udfd.errors import MediaError
from udfd.pipeline import analyze_image


def _png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    img = Image.fromarray(arr)
    (img.convert(mode) if mode else img).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def group_photo(shared_faces) -> bytes:
    lfw = sorted((shared_faces / "real" / "lfw").glob("*.jpg"))[:3]
    canvas = Image.new("RGB", (900, 400), (128, 128, 128))
    for i, f in enumerate(lfw):
        canvas.paste(Image.open(f).convert("RGB"), (25 + i * 300, 75))
    buf = io.BytesIO()
    canvas.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@pytest.mark.integration
def test_every_face_scored_and_overall_is_most_fake(group_photo, tiny_settings):
    v = analyze_image(group_photo, settings=tiny_settings, name="group.jpg")
    assert len(v.faces) >= 3
    assert all(f.face_found for f in v.faces)
    assert v.overall.fake_prob == max(f.fake_prob for f in v.faces)
    for f in v.faces:
        x0, y0, x1, y1 = f.box
        assert 0 <= x0 < x1 <= 900 and 0 <= y0 < y1 <= 400
    assert any("faces found" in n for n in v.notes)


def test_no_face_scores_whole_image(tiny_settings):
    arr = np.random.default_rng(1).integers(0, 256, (120, 90, 3), dtype=np.uint8)
    v = analyze_image(_png_bytes(arr), settings=tiny_settings)
    assert len(v.faces) == 1 and not v.faces[0].face_found
    assert v.faces[0].box == (0, 0, 90, 120)
    assert any("no face" in n for n in v.notes)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16"])
def test_odd_modes_are_analysed(tiny_settings, mode):
    arr = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    if mode == "CMYK":
        buf = io.BytesIO()
        Image.fromarray(arr).convert("CMYK").save(buf, format="JPEG")
        data = buf.getvalue()
    elif mode == "I;16":
        buf = io.BytesIO()
        Image.fromarray(arr[..., 0].astype(np.uint16) * 257).save(buf, format="PNG")
        data = buf.getvalue()
    else:
        data = _png_bytes(arr, mode)
    v = analyze_image(data, settings=tiny_settings)
    assert 0 <= v.overall.fake_prob <= 1 and (v.width, v.height) == (64, 64)


def test_bad_input_raises_media_error(tiny_settings, tmp_path):
    with pytest.raises(MediaError, match="not a supported image"):
        analyze_image(b"hello", settings=tiny_settings, name="x.jpg")
    with pytest.raises(MediaError):
        analyze_image(tmp_path / "missing.png", settings=tiny_settings)


@pytest.mark.integration
def test_concurrent_calls_match_sequential(face_image_path, tiny_settings):
    seq = analyze_image(face_image_path, settings=tiny_settings)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: analyze_image(face_image_path, settings=tiny_settings), range(8)))
    for r in results:
        assert [f.box for f in r.faces] == [f.box for f in seq.faces]
        assert r.overall.fake_prob == pytest.approx(seq.overall.fake_prob, abs=1e-6)


class _DeviceSpy:
    """A stand-in detector that records where each batch it is given lives (no GPU here: "meta" is a device torch
    has on every machine, which a CPU tensor can be moved to)."""

    name, version, threshold = "spy", "0", 0.5

    def __init__(self) -> None:
        self.devices: list[str] = []

    def preprocess(self, crops):
        import torch

        return torch.zeros(len(crops), 3, 4, 4)

    def predict(self, x):
        from udfd.types import Score

        self.devices.append(x.device.type)
        return [Score("spy", 0.2) for _ in range(x.shape[0])]


@pytest.mark.parametrize("tta", [False, True])
def test_score_faces_moves_every_batch_to_the_detectors_device(tta):
    """`udfd scan`'s GPU actors place the modules on a device; every batch they score must be moved there too."""
    from udfd.pipeline import score_faces

    crops = [np.zeros((32, 32, 3), np.uint8)] * 2
    first, second = _DeviceSpy(), _DeviceSpy()
    scores = score_faces([first, second], crops, tta=tta, device="meta")
    assert first.devices == ["meta"] and second.devices == ["meta"]
    assert [s.fake_prob for s in scores.per_detector["spy"]] == [0.2, 0.2]
    cpu = _DeviceSpy()
    score_faces([cpu], crops)
    assert cpu.devices == ["cpu"]
