"""Image perturbations for the robustness suite and test-time augmentation (pure: arrays in, new arrays out).

Every function takes an RGB uint8 array (H, W, 3), never modifies it, and returns a new RGB uint8 array of the
**same size**, so that face boxes and verdicts before and after can be compared face by face. Names used on the
command line (`udfd evaluate --perturb jpeg50,resize0.5,...`):

- `jpegQ`: JPEG re-encode at quality Q (OpenCV/libjpeg, 4:2:0 chroma subsampling), decoded again.
- `webpQ`: lossy WebP re-encode at quality Q (OpenCV/libwebp), decoded again.
- `resizeS`: down-scale by S (area interpolation) and back up to the original size (bilinear): the detail lost by
  a platform that stores a smaller copy, without changing the geometry the face detector sees.
- `blurS`: Gaussian blur with sigma S pixels.
- `noiseS`: additive Gaussian noise with standard deviation S (in [0, 1] pixel units), seeded per image.
- `screenshot`: what a phone/desktop screenshot of a displayed photo does, approximated: the image is shown at
  80 % (area down-scale), captured back at full size (bilinear up-scale), passes through a slight display gamma
  (pixel^(1/1.1) on [0, 1] values — a little brighter mid-tones), is quantised to 8 bits and saved as PNG
  (lossless, metadata and colour profile dropped) and decoded again. No JPEG step: screenshots are PNG.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

SCREENSHOT_SCALE = 0.8
SCREENSHOT_GAMMA = 1.1


def jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    return _lossy_round_trip(pixels, quality, ".jpg", cv2.IMWRITE_JPEG_QUALITY, "JPEG")


def webp(pixels: np.ndarray, quality: int) -> np.ndarray:
    return _lossy_round_trip(pixels, quality, ".webp", cv2.IMWRITE_WEBP_QUALITY, "WebP")


def _lossy_round_trip(pixels: np.ndarray, quality: int, ext: str, flag: int, codec: str) -> np.ndarray:
    if not 1 <= quality <= 100:
        raise ValueError(f"{codec} quality must be in 1..100, got {quality}")
    ok, buf = cv2.imencode(ext, cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [flag, int(quality)])
    if not ok:
        raise ValueError(f"{codec} encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def resize_round_trip(pixels: np.ndarray, scale: float) -> np.ndarray:
    if not 0 < scale <= 1:
        raise ValueError(f"resize scale must be in (0, 1], got {scale}")
    h, w = pixels.shape[:2]
    small = cv2.resize(pixels, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def blur(pixels: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        raise ValueError(f"blur sigma must be > 0, got {sigma}")
    return cv2.GaussianBlur(pixels, (0, 0), sigmaX=float(sigma), sigmaY=float(sigma))


def noise(pixels: np.ndarray, std: float, *, seed: int = 0) -> np.ndarray:
    if std < 0:
        raise ValueError(f"noise std must be >= 0, got {std}")
    rng = np.random.default_rng(seed)
    out = pixels.astype(np.float32) + rng.normal(0.0, 255.0 * std, size=pixels.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def screenshot(pixels: np.ndarray) -> np.ndarray:
    shown = resize_round_trip(pixels, SCREENSHOT_SCALE)
    lut = np.clip(np.rint(255.0 * (np.arange(256) / 255.0) ** (1.0 / SCREENSHOT_GAMMA)), 0, 255).astype(np.uint8)
    captured = lut[shown]
    ok, buf = cv2.imencode(".png", cv2.cvtColor(captured, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("PNG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def hflip(pixels: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(pixels[:, ::-1])


@dataclass(frozen=True)
class Perturbation:
    """A named perturbation: `apply(pixels, seed)` returns the perturbed copy."""

    name: str
    fn: Callable[[np.ndarray, int], np.ndarray]

    def apply(self, pixels: np.ndarray, *, seed: int = 0) -> np.ndarray:
        return self.fn(pixels, seed)


_PATTERNS: dict[str, Callable[[float], Callable[[np.ndarray, int], np.ndarray]]] = {
    "jpeg": lambda q: lambda px, _s: jpeg(px, int(q)),
    "webp": lambda q: lambda px, _s: webp(px, int(q)),
    "resize": lambda s: lambda px, _s: resize_round_trip(px, s),
    "blur": lambda s: lambda px, _s: blur(px, s),
    "noise": lambda s: lambda px, seed: noise(px, s, seed=seed),
}
DEFAULT_SUITE = "jpeg50,jpeg75,resize0.5,blur1,noise0.02,screenshot"


def parse_perturbations(spec: str) -> tuple[Perturbation, ...]:
    """"jpeg50,resize0.5,screenshot" -> Perturbations, in order. Unknown or malformed names raise ValueError."""
    out = []
    for raw in spec.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        if name == "screenshot":
            out.append(Perturbation(name, lambda px, _s: screenshot(px)))
            continue
        m = re.fullmatch(r"(jpeg|webp|resize|blur|noise)(\d+(?:\.\d+)?)", name)
        if not m:
            raise ValueError(f"unknown perturbation {raw!r}: expected jpegQ, webpQ, resizeS, blurS, noiseS or screenshot")
        kind, value = m.group(1), float(m.group(2))
        fn = _PATTERNS[kind](value)
        fn(np.zeros((8, 8, 3), np.uint8), 0)  # validates the parameter now, not on the first image
        out.append(Perturbation(name, fn))
    if len({p.name for p in out}) != len(out):
        raise ValueError(f"perturbation listed twice in {spec!r}")
    return tuple(out)


def tta_views(pixels: np.ndarray, *, jpeg_quality: int = 90) -> list[np.ndarray]:
    """The test-time augmentation views of one crop (besides the crop itself): horizontal flip, mild JPEG."""
    return [hflip(pixels), jpeg(pixels, jpeg_quality)]
