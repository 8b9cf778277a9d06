"""Tests for udfd.media: formats, colour modes, orientation, limits and damaged input (all generated data)."""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageFile

from udfd.errors import MediaError
from udfd.media import IMAGE_EXTENSIONS, decode_image, iter_image_files, read_image


def _encode(im: PILImage.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _gradient(width: int = 40, height: int = 30) -> np.ndarray:
    """A smooth RGB image (smooth so that lossy formats keep it close)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // (width - 1), y * 255 // (height - 1), np.full_like(x, 128)], axis=2).astype(np.uint8)


@pytest.mark.parametrize(
    ("fmt", "tolerance", "kwargs"),
    [
        ("JPEG", 12, {"quality": 95}),
        ("PNG", 0, {}),
        ("WEBP", 0, {"lossless": True}),
        ("BMP", 0, {}),
        ("TIFF", 0, {}),
    ],
)
def test_formats_round_trip(fmt: str, tolerance: int, kwargs: dict) -> None:
    src = _gradient()
    img = decode_image(_encode(PILImage.fromarray(src), fmt, **kwargs), name=f"x.{fmt.lower()}")
    assert img.pixels.shape == (30, 40, 3)
    assert img.pixels.dtype == np.uint8
    assert img.pixels.flags.c_contiguous
    assert img.format == fmt
    assert img.original_mode == "RGB"
    assert img.source == f"x.{fmt.lower()}"
    assert np.abs(img.pixels.astype(int) - src.astype(int)).max() <= tolerance


def test_gif_takes_first_frame() -> None:
    red = PILImage.new("RGB", (16, 12), (255, 0, 0))
    blue = PILImage.new("RGB", (16, 12), (0, 0, 255))
    data = _encode(red, "GIF", save_all=True, append_images=[blue], duration=100, loop=0)
    assert PILImage.open(io.BytesIO(data)).n_frames == 2  # the file really holds two frames
    img = decode_image(data)
    assert img.format == "GIF"
    assert img.pixels.shape == (12, 16, 3)
    assert tuple(img.pixels[5, 5]) == (255, 0, 0)


def _mode_image(mode: str) -> PILImage.Image:
    """A 10x8 image in `mode` whose left half is `left` and right half is `right` (see MODE_CASES)."""
    if mode == "P+transparency":
        im = PILImage.new("P", (10, 8), 0)
        im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
        im.paste(1, (5, 0, 10, 8))
        im.info["transparency"] = 1  # index 1 (blue) is transparent -> white
        return im
    values = {
        "L": (50, 200),
        "LA": ((50, 255), (200, 0)),
        "RGBA": ((0, 255, 0, 255), (0, 0, 0, 0)),
        "CMYK": ((0, 0, 0, 0), (0, 255, 255, 0)),
        "1": (0, 1),
        "P": (0, 1),
    }[mode]
    im = PILImage.new(mode, (10, 8), values[0])
    if mode == "P":
        im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.paste(values[1], (5, 0, 10, 8))
    return im


MODE_CASES = {
    # mode: (expected RGB on the left, expected RGB on the right)
    "L": ((50, 50, 50), (200, 200, 200)),
    "LA": ((50, 50, 50), (255, 255, 255)),  # alpha 0 -> white background
    "P": ((255, 0, 0), (0, 0, 255)),
    "P+transparency": ((255, 0, 0), (255, 255, 255)),
    "RGBA": ((0, 255, 0), (255, 255, 255)),  # fully transparent black is white, not black
    "CMYK": ((255, 255, 255), (255, 0, 0)),
    "1": ((0, 0, 0), (255, 255, 255)),
}


@pytest.mark.parametrize("mode", sorted(MODE_CASES))
def test_modes_convert_to_rgb(mode: str) -> None:
    im = _mode_image(mode)
    fmt = "TIFF" if mode in ("CMYK", "LA") else "PNG"
    img = decode_image(_encode(im, fmt))
    left, right = MODE_CASES[mode]
    assert img.pixels.shape == (8, 10, 3)
    assert img.pixels.dtype == np.uint8
    assert img.original_mode == mode.split("+")[0]
    assert tuple(int(v) for v in img.pixels[4, 1]) == left
    assert tuple(int(v) for v in img.pixels[4, 8]) == right


def test_rgba_alpha_is_blended_on_white() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 128  # half-transparent black
    img = decode_image(_encode(PILImage.fromarray(rgba, "RGBA"), "PNG"))
    assert np.all(np.abs(img.pixels.astype(int) - 127) <= 1)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_scales_not_clips(fmt: str) -> None:
    arr = np.array([[0, 257 * 100, 65535, 32896]], dtype=np.uint16)
    im = PILImage.fromarray(arr)
    assert im.mode == "I;16"
    img = decode_image(_encode(im, fmt))
    assert img.original_mode.startswith("I")
    assert img.pixels[0, :, 0].tolist() == [0, 100, 255, 128]
    assert np.array_equal(img.pixels[..., 0], img.pixels[..., 2])


def test_32_bit_int_and_float_modes() -> None:
    ints = PILImage.fromarray(np.array([[0, 65535]], dtype=np.int32), "I")
    assert decode_image(_encode(ints, "TIFF")).pixels[0, :, 0].tolist() == [0, 255]
    floats = PILImage.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F")
    img = decode_image(_encode(floats, "TIFF"))
    assert img.original_mode == "F"
    assert img.pixels[0, :, 1].tolist() == [0, 128, 255]


def test_exif_orientation_is_applied() -> None:
    arr = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high; left half red
    arr[:, :20] = (255, 0, 0)
    exif = PILImage.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    data = _encode(PILImage.fromarray(arr), "JPEG", exif=exif.tobytes(), quality=95)
    img = decode_image(data)
    assert img.pixels.shape == (40, 20, 3)  # now 20 wide, 40 high
    assert img.pixels[5, 10, 0] > 200 and img.pixels[35, 10, 0] < 60  # red (the left) is now on top


def test_pixel_limit_checked_from_header() -> None:
    data = _encode(PILImage.new("L", (100, 100), 7), "PNG")
    assert decode_image(data, max_pixels=10_000).pixels.shape == (100, 100, 3)
    with pytest.raises(MediaError, match="limit") as info:
        decode_image(data, name="big.png", max_pixels=1000)
    assert "100\N{MULTIPLICATION SIGN}100 = 10000 pixels" in str(info.value)
    assert info.value.file == "big.png"


def test_real_decompression_bomb_is_refused() -> None:
    data = _encode(PILImage.new("1", (12000, 12000), 0), "PNG")
    assert len(data) < 100_000  # tiny file, 144 million pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's DecompressionBombWarning must not escape as a crash
        with pytest.raises(MediaError, match="12000\N{MULTIPLICATION SIGN}12000 = 144000000 pixels.*limit"):
            decode_image(data, name="bomb.png")


def test_forged_header_beyond_pillow_limit_is_refused() -> None:
    data = bytearray(_encode(PILImage.new("L", (8, 8), 0), "PNG"))
    # IHDR payload starts at byte 16 (8 signature + 4 length + 4 type); rewrite its size and CRC.
    data[16:24] = struct.pack(">II", 20000, 20000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    with pytest.raises(MediaError, match="limit"):
        decode_image(bytes(data), name="forged.png")


def test_truncated_jpeg() -> None:
    data = _encode(PILImage.fromarray(_gradient(200, 150)), "JPEG")
    with pytest.raises(MediaError, match="truncated or corrupt") as info:
        decode_image(data[: len(data) // 2], name="cut.jpg")
    assert "cut.jpg" in str(info.value)
    assert info.value.__cause__ is not None
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_empty_file_says_empty() -> None:
    with pytest.raises(MediaError, match="file is empty"):
        decode_image(b"", name="thing.jpg")


@pytest.mark.parametrize("data", [b"hello, this is plain text\n" * 10, b"\x89PNG\r\n\x1a\n"])
def test_not_an_image(data: bytes) -> None:
    with pytest.raises(MediaError, match="not a supported image|truncated or corrupt"):
        decode_image(data, name="thing.jpg")


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("not really a picture\n")
    with pytest.raises(MediaError, match="not a supported image") as info:
        read_image(path)
    assert info.value.file == str(path)


def test_read_image_round_trip_and_sha256(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    path.write_bytes(_encode(PILImage.fromarray(_gradient()), "PNG"))
    img = read_image(path)
    assert img.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert img.source == str(path)
    assert np.array_equal(img.pixels, _gradient())


def test_file_over_size_limit_is_not_decoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(_encode(PILImage.fromarray(_gradient()), "PNG"))
    monkeypatch.setattr("udfd.media.decode_image", lambda *a, **k: pytest.fail("decoded an oversize file"))
    monkeypatch.setattr("udfd.media.open", lambda *a, **k: pytest.fail("opened an oversize file"), raising=False)
    with pytest.raises(MediaError, match="UDFD_MAX_FILE_BYTES"):
        read_image(path, max_file_bytes=100)


@pytest.mark.parametrize("make", ["missing", "folder"])
def test_read_image_bad_paths(tmp_path: Path, make: str) -> None:
    path = tmp_path / "x.png"
    if make == "folder":
        path.mkdir()
    with pytest.raises(MediaError, match="not found" if make == "missing" else "folder"):
        read_image(path)


def test_inputs_not_mutated() -> None:
    src = _gradient()
    before = src.copy()
    data = _encode(PILImage.fromarray(src), "PNG")
    buf = bytearray(data)
    img = decode_image(bytes(buf))
    assert bytes(buf) == data
    assert np.array_equal(src, before)
    assert img.sha256 == hashlib.sha256(data).hexdigest()
    assert not np.shares_memory(img.pixels, src)


def test_iter_image_files(tmp_path: Path) -> None:
    (tmp_path / "d" / "sub" / "deeper").mkdir(parents=True)
    for rel in ["d/b.JPG", "d/a.png", "d/notes.txt", "d/sub/c.webp", "d/sub/deeper/e.TIFF", "d/sub/f.gif.bak"]:
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "d" / "folder.png").mkdir()  # a folder with an image-like name is not a file
    odd = tmp_path / "explicit.dat"
    odd.write_bytes(b"x")
    found = iter_image_files([tmp_path / "d", str(odd)])
    rel = [p.relative_to(tmp_path).as_posix() for p in found]
    assert rel == ["d/a.png", "d/b.JPG", "d/sub/c.webp", "d/sub/deeper/e.TIFF", "explicit.dat"]
    assert {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"} == IMAGE_EXTENSIONS


# -- side, aspect and working-resolution limits (issue 14: a 60x32767 PNG aborted the process in MediaPipe) --
def _jpeg_header(width: int, height: int) -> bytes:
    """A JPEG whose SOF header claims width x height (the data after it is a tiny real picture's)."""
    data = bytearray(_encode(PILImage.fromarray(_gradient(16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize(("width", "height", "why"), [
    (60, 32767, "a side is longer than the limit of 16384"),
    (32767, 60, "a side is longer than the limit"),
    (3000, 100, "one side is more than 20 times the other"),
])
def test_sides_and_aspect_are_refused_from_the_header(width: int, height: int, why: str) -> None:
    data = _encode(PILImage.fromarray(np.full((height, width, 3), 128, np.uint8)), "PNG")
    with pytest.raises(MediaError, match=why) as info:
        decode_image(data, name="tall.png")
    assert f"{width}\N{MULTIPLICATION SIGN}{height}" in info.value.reason


def test_a_jpeg_header_claiming_60000_pixels_is_refused_before_decoding() -> None:
    with pytest.raises(MediaError, match="a side is longer than the limit"):
        decode_image(_jpeg_header(60000, 800), name="claims.jpg")


@pytest.mark.parametrize(("fmt", "shape"), [("JPEG", (225, 300, 3)), ("PNG", (300, 400, 3))])
def test_large_images_are_decoded_reduced_to_the_working_side(fmt: str, shape: tuple) -> None:
    data = _encode(PILImage.fromarray(_gradient(1200, 900)), fmt)
    image = decode_image(data, name=f"big.{fmt.lower()}", work_side=400)
    assert image.pixels.shape == shape  # JPEG: decoded at 1/4 by the codec (between half and all of 400 px)
    assert image.size == (1200, 900)  # the file's own size: what Verdict boxes refer to
    full = decode_image(data, name="big")
    assert full.pixels.shape == (900, 1200, 3) and full.size == (1200, 900)


def test_reduced_decoding_keeps_the_exif_orientation() -> None:
    exif = PILImage.Exif()
    exif[0x0112] = 6  # rotate 90: the picture is 900 wide, 1200 high
    buf = io.BytesIO()
    PILImage.fromarray(_gradient(1200, 900)).save(buf, "JPEG", exif=exif.tobytes())
    image = decode_image(buf.getvalue(), work_side=400)
    assert image.pixels.shape == (300, 225, 3)  # decoded at 1/4, then turned upright
    assert image.size == (900, 1200)


def test_check_dimensions_accepts_ordinary_sizes() -> None:
    from udfd.media import check_dimensions

    assert check_dimensions(4000, 3000) == ""
    assert check_dimensions(1, 1) == ""
    assert "no pixels" in check_dimensions(0, 10)


def test_no_orientation_tag_means_no_copy() -> None:
    """exif_transpose copies the whole image even when there is nothing to turn (185 MB for 7000x7000): skipped."""
    from udfd.media import _apply_orientation

    im = PILImage.fromarray(np.zeros((40, 30, 3), np.uint8))
    assert _apply_orientation(im, "x") is im
    exif = PILImage.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif.tobytes())
    turned = _apply_orientation(PILImage.open(io.BytesIO(buf.getvalue())), "x")
    assert turned.size == (40, 30)
