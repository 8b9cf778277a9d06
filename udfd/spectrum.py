"""Native-resolution spectrum statistics of a face crop: what generator upsampling and resampling leave in the
highest frequencies, which every resized crop (the networks' 160 px input) throws away.

Pure numpy, no I/O. `spectrum_features(crop)` is a fixed-length float32 vector:

- the azimuthal profile of the high-pass residual's log power, `BINS` radial bins over 0..0.5 cycles per pixel,
  minus its own mean (its shape), then that mean (its level);
- the log power at the checkerboard and quarter-period frequencies of 2x upsampling, and at the JPEG block
  frequencies, each relative to the median of its radial ring (a peak reads > 0).

The window is the crop's central `WINDOW` px at native resolution (the whole crop when smaller); a crop under
`MIN_SIDE` px gives zeros and its flag (the last feature) is 1.
"""

from __future__ import annotations

import numpy as np

BINS = 16
WINDOW = 128
MIN_SIDE = 48
# (fy, fx) in cycles per pixel: 2x upsampling (checkerboard, half and quarter periods), JPEG's 8 px blocks
PEAKS: tuple[tuple[float, float], ...] = ((0.0, 0.5), (0.5, 0.0), (0.5, 0.5), (0.0, 0.25), (0.25, 0.0),
                                         (0.25, 0.25), (0.0, 0.125), (0.125, 0.0), (0.0, 0.375), (0.375, 0.0))
N_FEATURES = BINS + 1 + len(PEAKS) + 1


def _gray(crop: np.ndarray) -> np.ndarray:
    if crop.ndim == 2:
        return crop.astype(np.float32)
    rgb = crop[..., :3].astype(np.float32)
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _highpass(gray: np.ndarray) -> np.ndarray:
    """gray minus its 3x3 mean (edge-replicated): the residual where resampling traces live."""
    p = np.pad(gray, 1, mode="edge")
    h, w = gray.shape
    box = sum(p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9.0
    return gray - box


def spectrum_features(crop: np.ndarray) -> np.ndarray:
    """(N_FEATURES,) float32 statistics of one RGB (or gray) uint8 crop at its native resolution."""
    if crop.ndim not in (2, 3) or min(crop.shape[:2]) < MIN_SIDE:
        out = np.zeros(N_FEATURES, dtype=np.float32)
        out[-1] = 1.0
        return out
    h, w = crop.shape[:2]
    side = min(h, w, WINDOW)
    y0, x0 = (h - side) // 2, (w - side) // 2
    r = _highpass(_gray(crop[y0:y0 + side, x0:x0 + side]))
    r = r - r.mean()
    hann = np.hanning(side).astype(np.float32)
    power = np.abs(np.fft.fft2(r * np.outer(hann, hann))) ** 2
    logp = np.log10(power + 1e-6)
    fy = np.fft.fftfreq(side)[:, None]
    fx = np.fft.fftfreq(side)[None, :]
    radius = np.sqrt(fy ** 2 + fx ** 2)
    inside = (radius > 0) & (radius <= 0.5)
    edges = np.linspace(0.0, 0.5, BINS + 1)
    which = np.clip(np.digitize(radius, edges) - 1, 0, BINS - 1)
    profile = np.array([logp[inside & (which == b)].mean() if np.any(inside & (which == b)) else 0.0
                        for b in range(BINS)], dtype=np.float32)
    level = float(profile.mean())
    peaks = []
    ring_w = 1.5 / side
    for py, px in PEAKS:
        iy, ix = int(round(py * side)) % side, int(round(px * side)) % side
        rr = float(np.hypot(py, px))
        ring = np.abs(radius - rr) <= ring_w
        peaks.append(float(logp[iy, ix] - np.median(logp[ring])))
    return np.array([*(profile - level), level, *peaks, 0.0], dtype=np.float32)
