"""Pure numpy helpers for maps: colour them, take their spectrum. No torch, no detectors (both sides import this)."""

from __future__ import annotations

import numpy as np


def fft_error_spectrum(err_map: np.ndarray) -> np.ndarray:
    """Centred log-amplitude spectrum log(1 + |FFT|) of (..., H, W) error maps, each scaled to [0, 1]. Pure."""
    err = np.asarray(err_map, dtype=np.float64)
    if err.ndim < 2:
        raise ValueError(f"expected (..., H, W) error maps, got shape {err.shape}")
    amp = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(err, axes=(-2, -1)), axes=(-2, -1))))
    lo = amp.min(axis=(-2, -1), keepdims=True)
    span = amp.max(axis=(-2, -1), keepdims=True) - lo
    out = np.divide(amp - lo, span, out=np.zeros_like(amp), where=span > 0)
    return out.astype(np.float32)


def colorize(values: np.ndarray) -> np.ndarray:
    """(H, W) values in [0, 1] -> RGB uint8 heat map (OpenCV JET)."""
    import cv2

    scaled = (np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0) * 255).astype(np.uint8)
    return np.ascontiguousarray(cv2.applyColorMap(scaled, cv2.COLORMAP_JET)[:, :, ::-1])
