"""training/loso_trivial.py: the style statistics behind the trivial LOSO baseline, on generated images."""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
import pytest
from PIL import Image

from training.loso_trivial import (
    FEATURES,
    LOSSLESS_QUALITY,
    crop_features,
    design,
    file_features,
    separability,
    single_features,
    style_features,
)

FILE_NAMES, CROP_NAMES = FEATURES[:5], FEATURES[5:]


def _face(seed: int = 0, size: int = 96) -> np.ndarray:
    """A textured RGB image: smooth gradients plus fine noise, so blurring removes real detail."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.stack([120 + 80 * xx, 100 + 60 * yy, 90 + 40 * xx * yy], axis=2)
    return np.clip(base + rng.normal(0, 25, size=(size, size, 3)), 0, 255).astype(np.uint8)


def _encode(img: np.ndarray, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, fmt, **kw)
    return buf.getvalue()


def test_blurring_lowers_sharpness_and_high_frequency_share() -> None:
    sharp = _face()
    blurred = cv2.GaussianBlur(sharp, (0, 0), 2.0)
    fs, fb = dict(zip(CROP_NAMES, crop_features(sharp), strict=True)), dict(
        zip(CROP_NAMES, crop_features(blurred), strict=True))
    assert fb["log_laplacian_var"] < fs["log_laplacian_var"] - 1.0
    assert fb["high_freq_share"] < fs["high_freq_share"]
    assert abs(fb["brightness_mean"] - fs["brightness_mean"]) < 0.02  # blur keeps the mean


def test_crop_features_do_not_mutate_and_reject_bad_shapes() -> None:
    img = _face()
    before = img.copy()
    out = crop_features(img)
    assert np.array_equal(img, before)
    assert out.shape == (len(CROP_NAMES),) and np.isfinite(out).all()
    assert 0 <= out[CROP_NAMES.index("saturation_mean")] <= 1
    with pytest.raises(ValueError, match="uint8 RGB"):
        crop_features(img[..., 0])


def test_jpeg_quality_30_estimates_lower_than_95() -> None:
    img = _face(size=64)
    q30 = file_features(_encode(img, "JPEG", quality=30))[FEATURES.index("jpeg_quality")]
    q95 = file_features(_encode(img, "JPEG", quality=95))[FEATURES.index("jpeg_quality")]
    assert q30 < q95
    assert abs(q30 - 30) <= 2 and abs(q95 - 95) <= 2  # the IJG tables Pillow writes are matched almost exactly


def test_file_features_read_size_and_mark_non_jpeg_quality_missing() -> None:
    img = _face(size=64)[:, :40]
    png = _encode(img, "PNG")
    f = dict(zip(FILE_NAMES, file_features(png), strict=True))
    assert f["is_jpeg"] == 0.0 and math.isnan(f["jpeg_quality"])
    assert f["log_width"] == pytest.approx(math.log(40)) and f["log_height"] == pytest.approx(math.log(64))
    assert f["log_bytes_per_pixel"] == pytest.approx(math.log(len(png) / (40 * 64)))
    assert file_features(_encode(img, "JPEG", quality=80))[FEATURES.index("is_jpeg")] == 1.0
    with pytest.raises(ValueError, match="not a readable image"):
        file_features(b"definitely not an image", name="x.jpg")


def test_design_fills_missing_quality_without_touching_the_input() -> None:
    img = _face(size=64)
    rows = np.stack([style_features(img, _encode(img, "PNG")), style_features(img, _encode(img, "JPEG", quality=50))])
    x = design(rows)
    q = FEATURES.index("jpeg_quality")
    assert math.isnan(rows[0, q])
    assert x[0, q] == LOSSLESS_QUALITY and x[1, q] == rows[1, q]


def test_single_feature_keeps_the_train_orientation_on_held_out_rows() -> None:
    """Feature 0 says 'fake is higher' on train but the opposite on held-out: its held-out AUC must come out below
    0.5, not be flipped back up."""
    rng = np.random.default_rng(0)
    y = np.array([0, 1] * 100)
    x = rng.normal(size=(200, len(FEATURES)))
    train, held = list(range(100)), list(range(100, 200))
    x[train, 0] += 3 * y[train]
    x[held, 0] -= 3 * y[held]
    out = single_features(x, y, train, held)
    assert out["best"]["feature"] == FEATURES[0] and out["best"]["sign"] == 1.0
    assert out["best"]["train_auc"] > 0.9 and out["best"]["heldout_auc"] < 0.1


def test_separability_is_high_for_a_style_split_and_near_chance_for_noise() -> None:
    rng = np.random.default_rng(1)
    y = np.array([0, 1] * 60)
    x = rng.normal(size=(120, len(FEATURES)))
    groups = [f"g{i // 2}" for i in range(120)]  # pairs stay in one fold
    rows = list(range(120))
    assert 0.3 < separability(x, y, rows, groups, seed=0) < 0.7
    x[:, 3] -= 2.5 * y
    assert separability(x, y, rows, groups, seed=0) > 0.9  # learnt inside the rows: a lower value is fine too
