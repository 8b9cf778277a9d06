"""How hard a JPEG was compressed, from its quantisation tables (pure numpy; Pillow reads the tables).

The default detectors read fine texture, and strong JPEG compression rewrites exactly that: re-encoded at quality 50,
effnet_lite0's test faces made ensemble 1.4 call 12.7 % of the real photos fake, against 0.7 % at quality 75
(`benchmarks/results/robustness_default.json`); between the two, on 300 real test faces (another draw), 10.3 % at quality 65,
6.0 % at 70 and 1.0 % at 75 (`benchmarks/results/robustness_jpeg_range.json` holds a 150-face run:
10.7 % at 60, 8.7 % at 65, 4.7 % at 70). No file of the dev data is below quality 75 (the estimate below, on
all 8,748 faces), so a face from a JPEG at or below `COMPRESSED_QUALITY` is "cannot tell" (uncertain reason
"compressed"), whatever its score.
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
