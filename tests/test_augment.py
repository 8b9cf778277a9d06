"""Training augmentation (training/augment.py): the sensor-noise option and that it is off by default."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from training.augment import AugmentConfig, augment

FLAT = np.full((64, 64, 3), 128, np.uint8)
NO_GEOMETRY = AugmentConfig(flip=0.0, max_rotation=0.0, crop_scale=(1.0, 1.0), jitter=0.0, jpeg_prob=0.0,
                            rescale_prob=0.0)


def test_noise_is_off_by_default():
    """train_image.py's augmentation is unchanged: no noise unless asked, and a config without any random
    operation returns the image as it was."""
    assert AugmentConfig().noise_prob == 0.0
    assert np.array_equal(augment(FLAT, np.random.default_rng(0), NO_GEOMETRY), FLAT)


def test_noise_has_the_asked_strength_and_leaves_the_input_alone():
    img = FLAT.copy()
    out = augment(img, np.random.default_rng(0), replace(NO_GEOMETRY, noise_prob=1.0, noise_std=(0.02, 0.02)))
    assert np.array_equal(img, FLAT)
    assert abs(float((out.astype(np.float32) - 128).std()) - 0.02 * 255) < 0.5
