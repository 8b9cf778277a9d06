"""Training augmentation on uint8 RGB crops (numpy/OpenCV). Compression and rescaling are randomised so that
JPEG quality and resolution cannot become a shortcut for real vs fake."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    flip: float = 0.5
    max_rotation: float = 10.0
    crop_scale: tuple[float, float] = (0.8, 1.0)
    jitter: float = 0.2  # brightness / contrast / saturation amplitude
    jpeg_prob: float = 0.7
    jpeg_quality: tuple[int, int] = (30, 100)
    rescale_prob: float = 0.5
    rescale: tuple[float, float] = (0.35, 1.0)
    noise_prob: float = 0.0  # additive Gaussian sensor noise, before rescaling and compression (off by default)
    noise_std: tuple[float, float] = (0.0, 0.03)  # in [0, 1] pixel units, like udfd.perturb's noiseS


def augment(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Return an augmented copy of `img` (H, W, 3) uint8; the input is not modified."""
    h, w = img.shape[:2]
    out = img
    scale = rng.uniform(*cfg.crop_scale)
    ch, cw = max(8, int(h * scale)), max(8, int(w * scale))
    y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
    out = out[y0:y0 + ch, x0:x0 + cw]
    if rng.random() < cfg.flip:
        out = out[:, ::-1]
    if cfg.max_rotation:
        angle = rng.uniform(-cfg.max_rotation, cfg.max_rotation)
        m = cv2.getRotationMatrix2D((out.shape[1] / 2, out.shape[0] / 2), angle, 1.0)
        out = cv2.warpAffine(np.ascontiguousarray(out), m, (out.shape[1], out.shape[0]),
                             borderMode=cv2.BORDER_REFLECT_101)
    out = _jitter(np.ascontiguousarray(out), rng, cfg.jitter)
    if cfg.noise_prob and rng.random() < cfg.noise_prob:
        std = rng.uniform(*cfg.noise_std) * 255.0
        out = np.clip(out.astype(np.float32) + rng.normal(0.0, std, out.shape), 0, 255).astype(np.uint8)
    if rng.random() < cfg.rescale_prob:
        f = rng.uniform(*cfg.rescale)
        small = cv2.resize(out, (max(8, int(out.shape[1] * f)), max(8, int(out.shape[0] * f))),
                           interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (out.shape[1], out.shape[0]), interpolation=cv2.INTER_LINEAR)
    if rng.random() < cfg.jpeg_prob:
        q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", out[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    return np.ascontiguousarray(out)


def _jitter(img: np.ndarray, rng: np.random.Generator, amp: float) -> np.ndarray:
    if amp <= 0:
        return img
    x = img.astype(np.float32)
    x = x * rng.uniform(1 - amp, 1 + amp)  # brightness
    mean = x.mean()
    x = (x - mean) * rng.uniform(1 - amp, 1 + amp) + mean  # contrast
    gray = x.mean(axis=2, keepdims=True)
    x = (x - gray) * rng.uniform(1 - amp, 1 + amp) + gray  # saturation
    return np.clip(x, 0, 255).astype(np.uint8)
