"""Self-Blended Images (SBI; Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images", CVPR 2022).

A real face crop is blended with a transformed copy of itself inside a deformed, blurred landmark hull, which
gives a "fake" with face-swap-like blending boundaries and colour / frequency mismatches but no identity change.
Pure functions on uint8 RGB arrays and (N, 2) landmark pixel coordinates, deterministic given a numpy Generator.
Only the pasted-in copy (the source) is transformed, so outside the blend mask the output equals the input.
Landmark extraction (MediaPipe FaceMesh) and the training datasets live in `training/sbi_data.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# MediaPipe FaceMesh face-oval landmarks (the silhouette); dropping them gives the "inner face" region.
FACE_OVAL: tuple[int, ...] = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149,
    150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)
REGIONS: tuple[str, ...] = ("face", "inner", "lower")


@dataclass(frozen=True)
class SbiConfig:
    """Ranges of the SBI transforms; shares are of the crop side so the recipe is size-independent."""

    region_probs: tuple[float, float, float] = (0.6, 0.25, 0.15)  # face hull, inner face, lower face (REGIONS)
    rgb_shift: float = 20.0  # per-channel additive shift, in 0..255 units
    rgb_prob: float = 0.3
    hsv_shift: tuple[float, float, float] = (9.0, 0.3, 0.3)  # hue (OpenCV 0..180 units), saturation, value (relative)
    hsv_prob: float = 0.3
    brightness: float = 0.1
    contrast: float = 0.1
    freq_prob: float = 0.5  # one of downscale / sharpen / blur
    source_scale: tuple[float, float] = (0.95, 1.05)
    source_shift: tuple[float, float] = (0.03, 0.015)  # x, y share of the side
    mask_scale: tuple[float, float] = (0.95, 1.05)  # of the hull around its centroid
    elastic: float = 0.03  # largest elastic displacement of the mask, share of the side
    elastic_grid: int = 5
    blur_kernel: tuple[float, float] = (0.04, 0.12)  # Gaussian kernel sizes, share of the side (two passes)
    blend_ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)


@dataclass(frozen=True)
class SelfBlend:
    image: np.ndarray  # (H, W, 3) uint8, the "fake"
    mask: np.ndarray  # (H, W) float32 in [0, 1]: weight of the transformed source
    region: str


def self_blend(img: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
               cfg: SbiConfig = SbiConfig()) -> SelfBlend:
    """One self-blended image from a face crop and its landmarks; `img` and `landmarks` are not modified."""
    _check(img, landmarks)
    region = REGIONS[int(rng.choice(len(REGIONS), p=np.asarray(cfg.region_probs) / sum(cfg.region_probs)))]
    source = transform_source(img, rng, cfg)
    mask = blend_mask(landmarks, img.shape[:2], rng, cfg, region=region)
    m = mask[..., None]
    out = source.astype(np.float32) * m + img.astype(np.float32) * (1.0 - m)
    out = np.where(m > 0, np.clip(np.rint(out), 0, 255), img).astype(np.uint8)  # exact input where mask == 0
    return SelfBlend(image=out, mask=mask, region=region)


def transform_source(img: np.ndarray, rng: np.random.Generator, cfg: SbiConfig = SbiConfig()) -> np.ndarray:
    """Colour (RGB, HSV, brightness/contrast), frequency (downscale / sharpen / blur) and slight scale/translate."""
    x = img.astype(np.float32)
    shift = rng.uniform(-cfg.rgb_shift, cfg.rgb_shift, size=3)
    if rng.random() < cfg.rgb_prob:
        x = x + shift
    dh, ds, dv = (rng.uniform(-a, a) for a in cfg.hsv_shift)
    if rng.random() < cfg.hsv_prob:
        hsv = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = np.mod(hsv[..., 0] + dh, 180.0)
        hsv[..., 1] = np.clip(hsv[..., 1] * (1 + ds), 0, 255)
        hsv[..., 2] = np.clip(hsv[..., 2] * (1 + dv), 0, 255)
        x = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    b, c = rng.uniform(-cfg.brightness, cfg.brightness), rng.uniform(-cfg.contrast, cfg.contrast)
    x = (x - 127.5) * (1 + c) + 127.5 + 255.0 * b
    x = _frequency(np.clip(x, 0, 255), rng, cfg)
    x = _scale_translate(x, rng, cfg)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def blend_mask(landmarks: np.ndarray, shape: tuple[int, int], rng: np.random.Generator,
               cfg: SbiConfig = SbiConfig(), *, region: str = "face") -> np.ndarray:
    """(H, W) float32 mask in [0, 1]: landmark-region hull, scaled and elastically deformed, blurred twice, x ratio.

    Its support lies inside the hull of all landmarks dilated by `mask_margin(cfg, side)` pixels.
    """
    h, w = shape
    side = max(h, w)
    pts = region_points(landmarks, region)
    centre = pts.mean(axis=0)
    pts = (pts - centre) * rng.uniform(*cfg.mask_scale) + centre
    hull = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.rint(pts).astype(np.int32)), 1)
    mask = _elastic(hull.astype(np.float32), rng, cfg.elastic * side, cfg.elastic_grid)
    k1, k2 = (_odd(rng.uniform(*cfg.blur_kernel) * side) for _ in range(2))
    mask = cv2.GaussianBlur(mask, (k1, k1), 0)
    # SBI's trick: the first blur only shrinks the hard mask (kept where the whole kernel was inside; 0.999, not 1,
    # because float32 kernel weights do not sum to exactly 1), the second one softens its edge.
    mask = (mask >= 0.999).astype(np.float32)
    mask = cv2.GaussianBlur(mask, (k2, k2), 0)
    mask = mask * float(rng.choice(cfg.blend_ratios))
    # Guarantee the documented support even with rounding at the edges (a no-op by construction otherwise).
    mask = mask * support_region(landmarks, shape, mask_margin(cfg, side))
    return np.clip(mask, 0.0, 1.0).astype(np.float32)


def region_points(landmarks: np.ndarray, region: str) -> np.ndarray:
    """The landmarks whose convex hull makes the mask of `region` (one of REGIONS)."""
    pts = np.asarray(landmarks, np.float64)
    if region == "face":
        return pts
    if region == "inner":
        keep = np.ones(len(pts), bool)
        keep[[i for i in FACE_OVAL if i < len(pts)]] = False
        return pts[keep] if keep.sum() >= 3 else pts
    if region == "lower":
        lower = pts[pts[:, 1] >= np.median(pts[:, 1])]
        return lower if len(lower) >= 3 else pts
    raise ValueError(f"unknown SBI region {region!r}; expected one of {REGIONS}")


def mask_margin(cfg: SbiConfig, side: int) -> int:
    """Pixels by which a mask may reach beyond the hull of all landmarks (scale + elastic + second blur)."""
    scale = max(abs(cfg.mask_scale[0] - 1), abs(cfg.mask_scale[1] - 1)) * side * math.sqrt(2)
    return int(math.ceil(scale + math.sqrt(2) * cfg.elastic * side + _odd(cfg.blur_kernel[1] * side) // 2)) + 2


def support_region(landmarks: np.ndarray, shape: tuple[int, int], margin: int) -> np.ndarray:
    """(H, W) float32 0/1: the hull of all landmarks dilated by `margin` pixels."""
    hull = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.rint(np.asarray(landmarks)).astype(np.int32)), 1)
    if margin > 0:
        hull = cv2.dilate(hull, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1)))
    return hull.astype(np.float32)


def _frequency(x: np.ndarray, rng: np.random.Generator, cfg: SbiConfig) -> np.ndarray:
    kind, amount, apply = int(rng.integers(3)), rng.random(), rng.random() < cfg.freq_prob
    if not apply:
        return x
    h, w = x.shape[:2]
    if kind == 0:  # downscale and back: loses high frequencies like a low-resolution swap
        f = 0.25 + 0.35 * amount
        small = cv2.resize(x, (max(4, round(w * f)), max(4, round(h * f))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    blurred = cv2.GaussianBlur(x, (0, 0), 0.5 + amount)
    if kind == 1:  # unsharp mask
        return x + (0.2 + 0.6 * amount) * (x - blurred)
    return blurred


def _scale_translate(x: np.ndarray, rng: np.random.Generator, cfg: SbiConfig) -> np.ndarray:
    h, w = x.shape[:2]
    s = rng.uniform(*cfg.source_scale)
    tx, ty = rng.uniform(-1, 1) * cfg.source_shift[0] * w, rng.uniform(-1, 1) * cfg.source_shift[1] * h
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, s)
    m[:, 2] += (tx, ty)
    return cv2.warpAffine(x, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def _elastic(mask: np.ndarray, rng: np.random.Generator, amplitude: float, grid: int) -> np.ndarray:
    """Warp by a smooth random displacement field bounded by `amplitude` pixels."""
    h, w = mask.shape
    fields = []
    for _ in range(2):
        coarse = rng.uniform(-1, 1, size=(grid, grid)).astype(np.float32)
        fields.append(np.clip(cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC), -1, 1) * amplitude)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(mask, xs + fields[0], ys + fields[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0)


def _odd(k: float) -> int:
    k = max(3, int(round(k)))
    return k if k % 2 else k + 1


def _check(img: np.ndarray, landmarks: np.ndarray) -> None:
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {img.shape} {img.dtype}")
    pts = np.asarray(landmarks)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
        raise ValueError(f"expected (N >= 3, 2) landmark pixel coordinates, got {pts.shape}")
