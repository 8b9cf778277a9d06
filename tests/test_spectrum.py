"""udfd.spectrum: native-resolution spectrum statistics of a face crop."""

import numpy as np
import pytest

from udfd.spectrum import (
    BINS,
    FEATURE_SETS,
    MIN_SIDE,
    N_FEATURES,
    N_RESIDUAL,
    PEAKS,
    V1,
    V2,
    native_statistics,
    residual_features,
    spectrum_features,
)

LEVEL = BINS  # index of the profile's level; the peaks follow it
NYQUIST_X = BINS + 1 + PEAKS.index((0.0, 0.5))


def _noise(side: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((side, side, 3)) * 255).astype(np.uint8)


def test_shape_dtype_and_inputs_untouched():
    crop = _noise(200)
    before = crop.copy()
    f = spectrum_features(crop)
    assert f.shape == (N_FEATURES,) and f.dtype == np.float32 and np.isfinite(f).all()
    assert f[-1] == 0.0
    np.testing.assert_array_equal(crop, before)


def test_profile_shape_is_centred():
    f = spectrum_features(_noise(160))
    assert abs(float(f[:BINS].mean())) < 1e-5


def test_small_crop_gives_zeros_and_its_flag():
    f = spectrum_features(_noise(MIN_SIDE - 1))
    assert f[-1] == 1.0 and not f[:-1].any()


def test_gray_and_rgb_agree_on_a_gray_image():
    g = _noise(150)[..., 0]
    np.testing.assert_allclose(spectrum_features(g), spectrum_features(np.stack([g] * 3, -1)), atol=1e-4)


def test_nearest_upsampling_leaves_a_null_at_nyquist():
    """2x pixel replication has no energy at 0.5 cycles/px: the Nyquist feature falls far below plain noise's."""
    small = _noise(100, seed=1)
    up = np.repeat(np.repeat(small, 2, 0), 2, 1)
    assert spectrum_features(up)[NYQUIST_X] < spectrum_features(_noise(200, seed=2))[NYQUIST_X] - 1.0


def test_window_is_central_and_bounded():
    """Only the central 128 px count: changing the border of a large crop changes nothing."""
    crop = _noise(400)
    edited = crop.copy()
    edited[:100] = 0
    np.testing.assert_array_equal(spectrum_features(crop), spectrum_features(edited))


@pytest.mark.parametrize("side", [MIN_SIDE, 64, 127, 129])
def test_any_side_from_the_minimum_is_finite(side):
    assert np.isfinite(spectrum_features(_noise(side))).all()


@pytest.mark.parametrize("value", [0, 128, 255])
def test_a_flat_crop_gives_finite_statistics(value):
    """No texture at all (a blank or saturated upload): zero residual power stays finite, no division by zero."""
    f = spectrum_features(np.full((200, 200, 3), value, dtype=np.uint8))
    assert np.isfinite(f).all() and f[-1] == 0.0


def test_odd_shapes_are_read_or_flagged():
    """A non-square crop is read at its centre; a 2-D crop with one side under the minimum is flagged."""
    assert np.isfinite(spectrum_features(_noise(300)[:, :90])).all()
    assert spectrum_features(_noise(300)[:40])[-1] == 1.0
    assert spectrum_features(np.zeros((200, 200, 3, 1), np.uint8))[-1] == 1.0


def test_grid_averages_adjacent_central_windows():
    """grid=3 on a 400 px crop reads the central 3 x 3 windows of 128 px (rows and columns 8..391): a change at row
    100 moves it, one in the 8 px border does not; grid=1 reads only the centre window, so row 100 does not move it."""
    crop = _noise(400, seed=5)
    border, inner = crop.copy(), crop.copy()
    border[:8] = 0
    inner[100:110] = 0
    np.testing.assert_array_equal(spectrum_features(crop, grid=3), spectrum_features(border, grid=3))
    assert not np.allclose(spectrum_features(crop, grid=3), spectrum_features(inner, grid=3))
    np.testing.assert_array_equal(spectrum_features(crop, grid=1), spectrum_features(inner, grid=1))
    small = _noise(200, seed=6)  # one window fits: every grid reads the same
    np.testing.assert_array_equal(spectrum_features(small, grid=3), spectrum_features(small))


# --- luma residual statistics (feature set v2) ---

KURT, LAG1_X, LAG1_Y, LAG2_X, LAG2_Y = range(N_RESIDUAL)


def test_white_noise_anticorrelates_with_its_neighbour_and_gray_agrees_with_rgb():
    crop = _noise(256, seed=4)
    f = residual_features(crop, grid=2)
    assert f.shape == (N_RESIDUAL,) and f.dtype == np.float32 and np.isfinite(f).all()
    # a 3x3 high-pass of white noise: each pixel minus the box mean that includes its neighbour (-1/8)
    assert -0.2 < f[LAG1_X] < -0.05 and -0.2 < f[LAG1_Y] < -0.05
    gray = np.repeat(crop[..., :1], 3, axis=2)
    np.testing.assert_allclose(residual_features(gray), residual_features(gray[..., 0]), atol=1e-6)


def test_pixel_replicated_upsampling_correlates_the_residual_one_pixel_apart():
    small = _noise(100, seed=5)
    up = np.repeat(np.repeat(small, 2, 0), 2, 1)
    f, g = residual_features(up), residual_features(_noise(200, seed=5))
    assert f[LAG1_X] > g[LAG1_X] + 0.3 and f[LAG1_Y] > g[LAG1_Y] + 0.3


def test_sparse_spikes_raise_the_kurtosis():
    rng = np.random.default_rng(7)
    smooth = np.full((160, 160, 3), 120, np.uint8) + (rng.random((160, 160, 1)) * 4).astype(np.uint8)
    spiky = smooth.copy()
    spiky[rng.integers(0, 160, 40), rng.integers(0, 160, 40)] = 255
    assert residual_features(spiky)[KURT] > residual_features(smooth)[KURT] + 0.5


def test_how_the_jpeg_stored_its_chroma_does_not_move_the_statistics():
    """The same pixels saved as JPEG 4:2:0 and 4:4:4: the luma residual, and so every statistic, stays put (chroma
    statistics moved a fitted head by about one real-face standard deviation here: why v2 reads luma only)."""
    import io

    from PIL import Image

    rng = np.random.default_rng(8)
    base = np.repeat(np.repeat((rng.random((100, 100, 3)) * 255).astype(np.uint8), 2, 0), 2, 1)

    def saved(subsampling: int) -> np.ndarray:
        buf = io.BytesIO()
        Image.fromarray(base).save(buf, "JPEG", quality=95, subsampling=subsampling)
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))

    a, b = residual_features(saved(2), grid=2), residual_features(saved(0), grid=2)
    np.testing.assert_allclose(a, b, atol=0.05)


@pytest.mark.parametrize("crop", [np.zeros((40, 40, 3), np.uint8), np.zeros((120, 120), np.uint8),
                                  np.zeros((120, 120, 1), np.uint8), np.full((90, 90, 3), 128, np.uint8),
                                  np.zeros((4, 4, 4, 3), np.uint8)],
                         ids=["small", "2d_gray", "one_channel", "flat", "4d"])
def test_small_gray_flat_and_malformed_crops_give_finite_residual_statistics(crop):
    f = residual_features(crop)
    assert f.shape == (N_RESIDUAL,) and np.isfinite(f).all()
    if crop.ndim not in (2, 3) or min(crop.shape[:2]) < MIN_SIDE:
        assert not f.any()


def test_feature_sets_are_the_spectrum_then_the_residuals():
    crop = _noise(300, seed=6)
    assert FEATURE_SETS == {V1: N_FEATURES, V2: N_FEATURES + N_RESIDUAL}
    np.testing.assert_array_equal(native_statistics(crop, grid=2, features=V1), spectrum_features(crop, grid=2))
    both = native_statistics(crop, grid=2, features=V2)
    np.testing.assert_array_equal(both, np.concatenate([spectrum_features(crop, grid=2),
                                                        residual_features(crop, grid=2)]))
    with pytest.raises(ValueError, match="unknown feature set"):
        native_statistics(crop, features="udfd.spectrum v0")
