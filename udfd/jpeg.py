"""How hard a JPEG was compressed, from its quantisation tables (pure numpy; Pillow reads the tables).

The default detectors read fine texture, and strong JPEG compression rewrites exactly that: re-encoded at quality 50,
effnet_lite0's test faces made ensemble 1.4 call 12.7 % of the real photos fake, against 0.7 % at quality 75
(`benchmarks/results/robustness_default.json`); between the two, on 300 real test faces (another draw), 10.3 % at quality 65,
6.0 % at 70 and 1.0 % at 75 (`benchmarks/results/robustness_jpeg_range.json` holds a 150-face run:
10.7 % at 60, 8.7 % at 65, 4.7 % at 70). Most of those real faces are DFDC crops saved at 75, which a re-encode at
75 nearly reproduces: on the sources saved at 90-95 verdicts change on 5-7 % of faces at every quality from 70 to 85
(`benchmarks/results/robustness_q90_sources.json`), so there the limit is a convention, not a cliff. No file of the
dev data is below quality 75 (the estimate below, on all 8,748 faces), so a face from a JPEG at or below
`COMPRESSED_QUALITY` is "cannot tell" (uncertain reason "compressed"), whatever its score. A file saved losslessly
after a JPEG (a PNG, a screenshot at 100 %) has no tables but keeps the JPEG's 8×8 block grid: `pixel_jpeg_quality`
reads that JPEG's quality from the pixels (`benchmarks/jpeg_history.py` measures it on the dev data).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

COMPRESSED_QUALITY = 70  # at or below: a verdict on this file is "cannot tell" (udfd.pipeline)
MISSING_QUALITY = math.nan  # the quality of a file that is not a JPEG, or has no readable tables

# The IJG (libjpeg) standard tables, natural (row-major) order, as Pillow's `Image.quantization` returns them.
_STD_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=float)
_STD_CHROMA = np.array([17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
                        47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32, dtype=float)


def _ijg_table(std: np.ndarray, quality: int) -> np.ndarray:
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((std * scale + 50) / 100), 1, 255)


def jpeg_quality(tables: Mapping[int, Sequence[int]]) -> float:
    """The IJG quality (1-100) whose scaled standard tables are closest to these quantisation tables (pure).

    Table 0 is compared with the luminance table, table 1 (when present) with the chrominance one; a file written
    with custom tables (some cameras, some editors) gets the nearest IJG quality. No tables -> MISSING_QUALITY."""
    if not tables:
        return MISSING_QUALITY
    ref = [(np.asarray(tables[k], dtype=float), std) for k, std in ((0, _STD_LUMA), (1, _STD_CHROMA))
           if k in tables and len(tables[k]) == 64]
    if not ref:
        return MISSING_QUALITY
    errors = [sum(np.abs(t - _ijg_table(std, q)).mean() for t, std in ref) for q in range(1, 101)]
    return float(1 + int(np.argmin(errors)))


# -- a JPEG's traces in pixels (a file saved losslessly after JPEG compression) --------------------------------------
_HISTORY_COEFFS = ((0, 1), (1, 0), (1, 1), (0, 2), (2, 0), (1, 2), (2, 1), (2, 2))  # low AC: their steps fit best
_REGION = 384  # the centred square looked at (2,304 blocks): the grid and the steps hold for the whole picture
_MIN_COEFFS = 150  # a step is only read from at least this many non-zero coefficients
_PERIODIC = 0.6  # mean cos(2π c / q) of the coefficients at or above q/2: near 1 on a grid of step q, near 0 off it
_MAX_STEP = 64


def _dct_matrix() -> np.ndarray:
    k, n = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    m = np.sqrt(2 / 8) * np.cos((2 * n + 1) * k * np.pi / 16)
    m[0] /= np.sqrt(2)
    return m


_DCT = _dct_matrix()
_LUMA_TABLES = np.stack([_ijg_table(_STD_LUMA, q) for q in range(1, 101)])  # [quality - 1, coefficient]


def _luma(pixels: np.ndarray) -> np.ndarray:
    rgb = pixels[..., :3].astype(np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2] - 128.0


def _grid_offset(y: np.ndarray) -> tuple[int, int] | None:
    """The (row, column) offset of an 8×8 block grid whose boundaries jump more than the pixels around them, or None
    when no offset stands out (the picture was never block-coded, or was resampled since)."""
    dv, dh = np.abs(np.diff(y, axis=0)).mean(1), np.abs(np.diff(y, axis=1)).mean(0)
    found = []
    for d in (dv, dh):
        per = np.array([d[k::8].mean() for k in range(8)])  # d[k] is the jump between pixel k and k + 1
        best = int(np.argmax(per))
        rest = np.delete(per, best)
        if per[best] < 1.15 * np.median(rest) + 0.05:
            return None
        found.append((best + 1) % 8)
    return found[0], found[1]


def _blocks(y: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
    """The DCT coefficients (n, 8, 8) of every whole block of the grid in `y`."""
    y = y[offset[0]:, offset[1]:]
    rows, cols = y.shape[0] // 8, y.shape[1] // 8
    b = y[:rows * 8, :cols * 8].reshape(rows, 8, cols, 8).transpose(0, 2, 1, 3).reshape(-1, 8, 8)
    return _DCT @ b @ _DCT.T


_VALUES = np.arange(1025)
_STEPS = np.arange(2, _MAX_STEP + 1)
_ON = (_VALUES[None, :] >= _STEPS[:, None] / 2).astype(float)  # [q, v]: v counts for step q (v >= q/2)
_COS = _ON * np.cos(2 * np.pi * _VALUES[None, :] / _STEPS[:, None])


def _step(c: np.ndarray) -> int | None:
    """The largest quantisation step q whose multiples the coefficients sit on, or None (not enough of them).
    Read from the histogram of the coefficients' magnitudes rounded to integers (decoding moves each by less than 1):
    for every step at once, the mean of cos(2π |c| / q) over the coefficients with |c| >= q/2."""
    counts = np.bincount(np.minimum(np.abs(np.rint(c)), 1024).astype(np.int64), minlength=1025).astype(float)
    n = _ON @ counts
    score = (_COS @ counts) / np.maximum(n, 1)
    ok = (n >= _MIN_COEFFS) & (score >= _PERIODIC)
    return int(_STEPS[ok].max()) if ok.any() else None


def pixel_jpeg_quality(pixels: np.ndarray) -> float:
    """The IJG quality of a JPEG compression these pixels went through before they were saved some other way (a PNG
    of a decoded JPEG, a screenshot at 100 %), from the steps its 8×8 block grid left on the low DCT coefficients of
    the luma (pure). A picture never block-coded, resampled since (scaled, rotated by an odd angle) or too small or
    flat to read gives MISSING_QUALITY; so does one whose steps match no IJG table scale."""
    if pixels.ndim != 3 or min(pixels.shape[:2]) < 64:
        return MISSING_QUALITY
    h, w = pixels.shape[:2]
    top, left = max(0, (h - _REGION) // 2), max(0, (w - _REGION) // 2)
    y = _luma(pixels[top:top + _REGION, left:left + _REGION])  # the grid's offset is found in the region itself
    offset = _grid_offset(y)
    if offset is None:
        return MISSING_QUALITY
    coeffs = _blocks(y, offset)
    steps = {(u, v): _step(coeffs[:, u, v]) for u, v in _HISTORY_COEFFS}
    steps = {k: s for k, s in steps.items() if s is not None}
    if len(steps) < 3:
        return MISSING_QUALITY
    idx = [u * 8 + v for u, v in steps]
    seen = np.array(list(steps.values()), dtype=float)
    errors = np.abs(_LUMA_TABLES[:, idx] - seen).mean(1)
    if errors.min() > 1.0:
        return MISSING_QUALITY
    return float(np.round(np.flatnonzero(errors == errors.min()).mean()) + 1)  # the middle of the tied qualities
