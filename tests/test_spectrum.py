"""udfd.spectrum: native-resolution spectrum statistics of a face crop."""

import numpy as np
import pytest

from udfd.spectrum import BINS, MIN_SIDE, N_FEATURES, PEAKS, spectrum_features

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
