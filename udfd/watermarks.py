"""Invisible-watermark decoding (pure: pixels in, bits out) for the schemes generators embed by default.

The Stable Diffusion reference scripts embed the 17 bytes `StableDiffusionV1` (136 bits) and SDXL / diffusers the
48-bit `WATERMARK_MESSAGE` with `invisible-watermark`'s "dwtDct" method (its `EmbedMaxDct`, scales [0, 36, 36],
4x4 blocks). That package imports torch at import time (its RivaGAN module), so this is a vectorised
re-implementation of its decoder in numpy, checked bit for bit against `imwatermark.WatermarkDecoder` in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_SCALE = 36  # dwtDct's default scale of the U channel; Y (scale 0) carries nothing and V is never visited
_BLOCK = 4
MIN_PIXELS = 256 * 256  # invisible-watermark refuses smaller images


@dataclass(frozen=True)
class Scheme:
    """A known payload: its name, the bits embedded, and how many bit errors still count as a match."""

    name: str
    bits: tuple[int, ...]
    max_bit_errors: int

    @property
    def length(self) -> int:
        return len(self.bits)


def _bytes_to_bits(data: bytes) -> tuple[int, ...]:
    return tuple(int(b) for b in np.unpackbits(np.frombuffer(data, dtype=np.uint8)))


# Tolerances: a clean image decodes to about half the bits wrong (68 of 136, sd 5.8; 24 of 48, sd 3.5). On all 8748
# dev faces (../shared/data/faces, real and fake) no clean image came closer than 52 bits (SD) and 13 (SDXL). The
# reference embedder's own output is not always clean either (it writes its float result back into uint8): on 12
# LFW faces resized to 512x512, 6 decoded with at most 4 wrong bits, one with 12, one with 24, four with 32-64.
SCHEMES: tuple[Scheme, ...] = (
    Scheme("StableDiffusionV1 (invisible-watermark dwtDct, 136 bits)", _bytes_to_bits(b"StableDiffusionV1"), 24),
    Scheme("SDXL / diffusers (invisible-watermark dwtDct, 48 bits)",
           tuple(int(c) for c in "101100111110110010010000011110111011000110011110"), 3),
)
NOT_CHECKED = ("invisible-watermark rivaGan and dwtDctSvd", "Google SynthID", "Meta Video Seal / AudioSeal",
               "Tree-Ring and other diffusion-noise watermarks", "any proprietary or unknown scheme")


def block_bits(rgb: np.ndarray) -> np.ndarray:
    """Per 4x4 block of the U channel's Haar approximation, the bit dwtDct reads from it (row-major order).

    `rgb` is a uint8 (H, W, 3) array in RGB order (the reference works on OpenCV's BGR; converting RGB to YUV
    directly gives the same U and saves reversing the channels). Pure.
    """
    import cv2  # imported here so that importing this module stays cheap

    h, w = rgb.shape[0] // 4 * 4, rgb.shape[1] // 4 * 4
    u = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV)[:h, :w, 1].astype(np.float64)
    ca = haar_approximation(u)
    rows, cols = ca.shape[0] // _BLOCK, ca.shape[1] // _BLOCK
    blocks = ca[:rows * _BLOCK, :cols * _BLOCK].reshape(rows, _BLOCK, cols, _BLOCK).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(-1, _BLOCK * _BLOCK)
    pos = np.argmax(np.abs(blocks[:, 1:]), axis=1) + 1  # the largest non-DC coefficient carries the bit
    val = np.abs(blocks[np.arange(len(blocks)), pos])
    return (val % _SCALE) > 0.5 * _SCALE


def haar_approximation(x: np.ndarray) -> np.ndarray:
    """The approximation band of a one-level 2-D Haar DWT (even sides), equal bit for bit to
    `pywt.dwt2(x, "haar")[0]`: rows first, then columns, each term weighted before the sum, as PyWavelets
    computes it. The decoded bits sit close to their decision boundaries, so that rounding matters; this is 25x
    faster than pywt.dwt2, which also computes the three detail bands. Pure."""
    s = 0.7071067811865476  # PyWavelets' Haar filter tap, 1/sqrt(2) as a double
    rows = s * x[1::2, :] + s * x[0::2, :]
    return s * rows[:, 1::2] + s * rows[:, 0::2]


def decode_bits(per_block: np.ndarray, length: int) -> np.ndarray:
    """The `length`-bit payload: block k votes for bit k mod length; a bit is 1 when most votes are. Pure."""
    idx = np.arange(len(per_block)) % length
    votes = np.bincount(idx, weights=per_block.astype(np.float64), minlength=length)
    counts = np.bincount(idx, minlength=length)
    return (votes / np.maximum(counts, 1)) * 255 > 127


@dataclass(frozen=True)
class Match:
    scheme: Scheme
    bit_errors: int
    payload: str  # the decoded bits as text when they are printable, else hex

    @property
    def found(self) -> bool:
        return self.bit_errors <= self.scheme.max_bit_errors


def match_schemes(rgb: np.ndarray, schemes: tuple[Scheme, ...] = SCHEMES) -> list[Match]:
    """Decode every scheme's payload from `rgb` (uint8 RGB) and count its bit errors against the known payload.
    Pure."""
    per_block = block_bits(rgb)
    out = []
    for scheme in schemes:
        bits = decode_bits(per_block, scheme.length)
        errors = int(np.sum(bits != np.array(scheme.bits, dtype=bool)))
        out.append(Match(scheme, errors, _payload_text(bits)))
    return out


def _payload_text(bits: np.ndarray) -> str:
    if len(bits) % 8:
        return "".join("1" if b else "0" for b in bits)
    raw = np.packbits(bits.astype(np.uint8)).tobytes()
    text = raw.decode("latin-1")
    return text if text.isprintable() else raw.hex()
