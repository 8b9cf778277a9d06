"""Grainy faces are "cannot tell" (udfd/noise.py, the "noisy" input reason): the estimate, the limit, the words."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from udfd.noise import NOISY_FACE, noise_level
from udfd.perturb import noise
from udfd.plain import WHY_UNCERTAIN

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_estimate_reads_the_noise_it_is_given():
    flat = np.full((120, 100, 3), 128, np.uint8)
    assert noise_level(flat) == 0.0
    rng = np.random.default_rng(0)
    for std in (0.01, 0.02, 0.04):
        noisy = np.clip(128 + rng.normal(0, std * 255, (120, 100, 1)), 0, 255).astype(np.uint8).repeat(3, axis=2)
        assert noise_level(noisy) == pytest.approx(std, rel=0.1)
    assert noise_level(np.zeros((2, 50, 3), np.uint8)) == 0.0  # too small to measure: not called noisy


@pytest.mark.parametrize("name", ["real_fairface_0098.jpg", "real_fairface_0224.jpg",
                                  "fake_faceswap_fairface_0175_on_0085.jpg"])
def test_a_clean_photo_is_judged_and_the_same_photo_with_sensor_noise_is_not(name):
    from udfd.config import Settings
    from udfd.faces import detect_faces
    from udfd.media import read_image
    from udfd.pipeline import input_reason

    pixels = read_image(EXAMPLES / name).pixels
    settings = Settings().faces
    clean = detect_faces(pixels, settings)[0]
    assert clean.face_found and noise_level(clean.pixels) < NOISY_FACE and input_reason(clean) == ""
    grainy = detect_faces(noise(pixels, 0.02, seed=1), settings)[0]
    assert grainy.face_found and input_reason(grainy) == "noisy"


def test_the_verdict_says_why_in_plain_words(tiny_settings, tmp_path):
    from PIL import Image

    from udfd.media import read_image
    from udfd.pipeline import analyze_image

    path = tmp_path / "grainy.png"
    Image.fromarray(noise(read_image(EXAMPLES / "real_fairface_0098.jpg").pixels, 0.02, seed=1)).save(path)
    v = analyze_image(path, settings=replace(tiny_settings, uncertain_band=0.0))  # no score-based reason first
    assert v.faces[0].uncertain and v.faces[0].uncertain_reason == "noisy" and v.overall.uncertain
    assert any("grainy" in n for n in v.notes)
    assert "grainy" in WHY_UNCERTAIN["noisy"]
