"""How grainy a face crop is: a sensor-noise estimate, pure numpy/OpenCV.

The default detectors read texture statistics of the face, and sensor noise disturbs exactly those: on
effnet_lite0's test split, Gaussian noise of std 0.02 made the default ensemble 1.3 call 22.0 % of the real photos
fake (1.2: 44.7 %; `benchmarks/results/robustness_default.json`). A face whose crop is noisier than `NOISY_FACE`
is therefore "cannot tell" (uncertain reason "noisy"), whatever its score.
"""

from __future__ import annotations

import cv2
import numpy as np

# Measured on 300 test-split faces of effnet_lite0 (face crops as the pipeline makes them): clean crops
# median 0.0022, 99th percentile 0.0109 (1.0 % above 0.012: 1.3 % of the reals, 0.7 % of the fakes); with
# udfd.perturb noise 0.02 every crop is above 0.012 (5th percentile 0.0133); noise 0.01: 3.3 %; JPEG 50: 2.0 %.
NOISY_FACE = 0.012

_LAPLACE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def noise_level(pixels: np.ndarray) -> float:
    """Standard deviation of additive noise in [0, 1] pixel units, by Immerkær's estimator (1996) on the grey
    image: sqrt(pi/2) / (6 (W-2)(H-2)) times the sum of |second-difference response|. 0.0 for crops under 3 px."""
    if pixels.ndim != 3 or min(pixels.shape[:2]) < 3:
        return 0.0
    grey = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    h, w = grey.shape
    response = cv2.filter2D(grey, -1, _LAPLACE, borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.abs(response).sum() / (6 * (w - 2) * (h - 2)))
