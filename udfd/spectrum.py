"""Native-resolution spectrum statistics of a face crop: what generator upsampling and resampling leave in the
highest frequencies, which every resized crop (the networks' 160 px input) throws away.

Pure numpy, no I/O. `spectrum_features(crop)` is a fixed-length float32 vector:

- the azimuthal profile of the high-pass residual's log power, `BINS` radial bins over 0..0.5 cycles per pixel,
  minus its own mean (its shape), then that mean (its level);
- the log power at the checkerboard and quarter-period frequencies of 2x upsampling, and at the JPEG block
  frequencies, each relative to the median of its radial ring (a peak reads > 0).

The window is the crop's central `WINDOW` px at native resolution (the whole crop when smaller), or with `grid` the
power averaged over up to grid x grid adjacent central windows (Welch's estimate; `spectrum` 1.1 reads grid 3); a
crop under `MIN_SIDE` px gives zeros and its flag (the last feature) is 1.

`residual_features(crop)` reads the same windows' luma residual (`N_RESIDUAL` statistics): its kurtosis and its
correlation with itself one and two pixels away, which a camera's noise, a generator's synthesis and a face swap's
blend and resampling leave differently. Luma only, by measurement: statistics of the chroma residuals moved a fitted
head's score by about one standard deviation of real faces when the same pixels were saved as JPEG 4:4:4 instead of
4:2:0 (the dev data's only 4:4:4 source is a fake one). Crops under `MIN_SIDE` px give zeros.

`native_statistics(crop, features=...)` is what a checkpoint's `arch.features` names: `FEATURE_SETS` lists each set
and its length ("udfd.spectrum v1": the spectrum alone; "v2": the spectrum, then the luma residual's statistics).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

BINS = 16
WINDOW = 128
MIN_SIDE = 48
# (fy, fx) in cycles per pixel: 2x upsampling (checkerboard, half and quarter periods), JPEG's 8 px blocks
PEAKS: tuple[tuple[float, float], ...] = ((0.0, 0.5), (0.5, 0.0), (0.5, 0.5), (0.0, 0.25), (0.25, 0.0),
                                         (0.25, 0.25), (0.0, 0.125), (0.125, 0.0), (0.0, 0.375), (0.375, 0.0))
N_FEATURES = BINS + 1 + len(PEAKS) + 1
N_RESIDUAL = 5
V1, V2 = "udfd.spectrum v1", "udfd.spectrum v2"
FEATURE_SETS: dict[str, int] = {V1: N_FEATURES, V2: N_FEATURES + N_RESIDUAL}


def _gray(crop: np.ndarray) -> np.ndarray:
    if crop.ndim == 2:
        return crop.astype(np.float32)
    if crop.shape[-1] < 3:  # one gray channel, or gray + alpha
        return crop[..., 0].astype(np.float32)
    rgb = crop[..., :3].astype(np.float32)
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _highpass(gray: np.ndarray) -> np.ndarray:
    """gray minus its 3x3 mean (edge-replicated), per window of a (..., H, W) stack: the residual where resampling
    traces live."""
    p = np.pad(gray, [(0, 0)] * (gray.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    h, w = gray.shape[-2:]
    box = sum(p[..., dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9.0
    return gray - box


def _origins(length: int, side: int, grid: int) -> list[int]:
    """Start offsets of up to `grid` adjacent windows of `side` px, centred along an axis of `length` px."""
    n = max(1, min(grid, length // side))
    start = (length - n * side) // 2
    return [start + k * side for k in range(n)]


def native_statistics(crop: np.ndarray, *, grid: int = 1, features: str = V1) -> np.ndarray:
    """(FEATURE_SETS[features],) float32: the statistics a checkpoint of that feature set reads (pure)."""
    if features == V1:
        return spectrum_features(crop, grid=grid)
    if features == V2:
        return np.concatenate([spectrum_features(crop, grid=grid), residual_features(crop, grid=grid)])
    raise ValueError(f"unknown feature set {features!r}: expected one of {sorted(FEATURE_SETS)}")


def _tiles(h: int, w: int, grid: int) -> tuple[int, list[tuple[int, int]]]:
    side = min(h, w, WINDOW)
    return side, [(y0, x0) for y0 in _origins(h, side, grid) for x0 in _origins(w, side, grid)]


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-9 else 0.0


def residual_features(crop: np.ndarray, *, grid: int = 1) -> np.ndarray:
    """(N_RESIDUAL,) float32 statistics of the luma residual of one crop at native resolution, over the same windows
    as `spectrum_features` (pure): log10 of its kurtosis, then its correlation with itself 1 px right, 1 px down,
    2 px right and 2 px down. Luma only: the chroma residuals read mostly how the file was saved (JPEG 4:2:0 or
    4:4:4), not what made the face."""
    out = np.zeros(N_RESIDUAL, dtype=np.float32)
    if crop.ndim not in (2, 3) or min(crop.shape[:2]) < MIN_SIDE:
        return out
    side, tiles = _tiles(*crop.shape[:2], grid)
    luma = _highpass(np.stack([_gray(crop[y0:y0 + side, x0:x0 + side]) for y0, x0 in tiles]).astype(np.float64))
    y = luma.ravel()
    centred = y - y.mean()
    var = float((centred ** 2).mean()) + 1e-6
    kurtosis = float((centred ** 4).mean()) / var ** 2

    def lag(dy: int, dx: int) -> float:
        return _corr(luma[:, :side - dy, :side - dx].ravel(), luma[:, dy:, dx:].ravel())

    out[:] = [np.log10(kurtosis + 1e-6), lag(0, 1), lag(1, 0), lag(0, 2), lag(2, 0)]
    return out


def spectrum_features(crop: np.ndarray, *, grid: int = 1) -> np.ndarray:
    """(N_FEATURES,) float32 statistics of one RGB (or gray) uint8 crop at its native resolution.

    `grid`: the power spectrum is averaged over up to grid x grid adjacent central windows of `WINDOW` px (Welch's
    estimate: a large face gives a steadier spectrum); 1 reads the central window alone."""
    if crop.ndim not in (2, 3) or min(crop.shape[:2]) < MIN_SIDE:
        out = np.zeros(N_FEATURES, dtype=np.float32)
        out[-1] = 1.0
        return out
    side, tiles = _tiles(*crop.shape[:2], grid)
    taper, bins, peaks = _layout(side)
    r = _highpass(np.stack([_gray(crop[y0:y0 + side, x0:x0 + side]) for y0, x0 in tiles]))
    r = (r - r.mean(axis=(-2, -1), keepdims=True)) * taper
    power = (np.abs(np.fft.fft2(r)) ** 2).astype(np.float64).sum(axis=0)
    logp = np.log10(power / len(tiles) + 1e-6)
    profile = np.array([logp[idx].mean() if idx[0].size else 0.0 for idx in bins], dtype=np.float32)
    level = float(profile.mean())
    peak_values = [float(logp[iy, ix] - np.median(logp[ring])) for (iy, ix), ring in peaks]
    return np.array([*(profile - level), level, *peak_values, 0.0], dtype=np.float32)


@lru_cache(maxsize=8)
def _layout(side: int) -> tuple[np.ndarray, tuple, tuple]:
    """What depends on the window's side only, computed once per side: the Hann taper, each radial bin's indices,
    and each peak's position with the indices of its ring."""
    hann = np.hanning(side).astype(np.float32)
    fy = np.fft.fftfreq(side)[:, None]
    fx = np.fft.fftfreq(side)[None, :]
    radius = np.sqrt(fy ** 2 + fx ** 2)
    inside = (radius > 0) & (radius <= 0.5)
    edges = np.linspace(0.0, 0.5, BINS + 1)
    which = np.clip(np.digitize(radius, edges) - 1, 0, BINS - 1)
    bins = tuple(np.nonzero(inside & (which == b)) for b in range(BINS))
    ring_w = 1.5 / side
    peaks = tuple(((int(round(py * side)) % side, int(round(px * side)) % side),
                   np.nonzero(np.abs(radius - float(np.hypot(py, px))) <= ring_w)) for py, px in PEAKS)
    return np.outer(hann, hann), bins, peaks
