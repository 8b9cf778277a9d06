"""udfd.perturb: size, dtype, purity, determinism and the direction of each effect."""

from __future__ import annotations

import numpy as np
import pytest

from udfd.perturb import DEFAULT_SUITE, SCREENSHOT_GAMMA, hflip, parse_perturbations, tta_views


def _textured(h: int = 96, w: int = 80) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(xx / 3.0) * np.cos(yy / 5.0)
    rng = np.random.default_rng(1)
    return np.clip(base[..., None] + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("p", parse_perturbations(DEFAULT_SUITE), ids=lambda p: p.name)
def test_every_perturbation_keeps_size_and_dtype_changes_pixels_and_not_its_input(p):
    img = _textured()
    before = img.copy()
    out = p.apply(img, seed=3)
    assert out.shape == img.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(img, before)
    assert np.abs(out.astype(int) - img).mean() > 0.5
    np.testing.assert_array_equal(out, p.apply(img, seed=3))  # deterministic for a given seed


def test_stronger_settings_change_more():
    img = _textured()
    (j50, j95, b1, b3, r5, r9, w30, w95) = parse_perturbations(
        "jpeg50,jpeg95,blur1,blur3,resize0.5,resize0.9,webp30,webp95")

    def dist(p):
        return np.abs(p.apply(img).astype(int) - img).mean()

    assert dist(j50) > dist(j95) and dist(b3) > dist(b1) and dist(r5) > dist(r9) and dist(w30) > dist(w95)
    assert w30.apply(img).shape == img.shape


def test_flat_image_survives_resize_and_blur_and_noise_has_the_asked_std():
    flat = np.full((64, 64, 3), 128, np.uint8)
    resize, blur, noise = parse_perturbations("resize0.5,blur2,noise0.02")
    np.testing.assert_array_equal(resize.apply(flat), flat)
    np.testing.assert_array_equal(blur.apply(flat), flat)
    noisy = noise.apply(flat, seed=0).astype(float)
    assert noisy.std() == pytest.approx(0.02 * 255, rel=0.05)
    assert not np.array_equal(noise.apply(flat, seed=0), noise.apply(flat, seed=1))


def test_screenshot_brightens_mid_grey_by_the_display_gamma():
    (shot,) = parse_perturbations("screenshot")
    out = shot.apply(np.full((40, 40, 3), 128, np.uint8))
    assert int(out[20, 20, 0]) == round(255 * (128 / 255) ** (1 / SCREENSHOT_GAMMA))


@pytest.mark.parametrize("spec", ["jpeg", "jpeg0", "jpeg101", "webp0", "webp101", "resize2", "blur0", "sharpen1", "jpeg50,jpeg50"])
def test_bad_specs_raise(spec):
    with pytest.raises(ValueError):
        parse_perturbations(spec)


def test_parse_keeps_order_and_names():
    assert [p.name for p in parse_perturbations(" JPEG75, screenshot ,,noise0.1")] == ["jpeg75", "screenshot",
                                                                                       "noise0.1"]


def test_tta_views_are_a_flip_and_a_mild_jpeg():
    img = _textured()
    flip, jpg = tta_views(img)
    np.testing.assert_array_equal(flip, img[:, ::-1])
    np.testing.assert_array_equal(hflip(flip), img)
    (j50,) = parse_perturbations("jpeg50")
    assert jpg.shape == img.shape
    assert 0 < np.abs(jpg.astype(int) - img).mean() < np.abs(j50.apply(img).astype(int) - img).mean()
