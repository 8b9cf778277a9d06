"""How hard a lossy WebP was compressed, from its VP8 frame header (pure: the file's bytes in, numbers out).

A lossy WebP is one VP8 key frame. Its first partition opens with the frame's quantiser: a base index (0-127, larger
is coarser) and, when the encoder split the picture into segments (libwebp uses four), one index per segment. The
indices are read here with the boolean decoder of RFC 6386 (sections 7, 9.3, 9.6 and 19.2): no pixel is decoded,
and nothing past the few header bytes is touched. A lossless WebP (VP8L), an animation or a file that is not a
WebP has no such index.

`webp_quality` turns the mean segment index into the libwebp quality setting that produces it, inverting libwebp's
own mapping (`QualityToCompression` in src/enc/quant_enc.c: q = 127 (1 - c), c = linear^(1/3), linear = 2/3 Q
below Q = 0.75, else 2 Q - 1). Each segment's index is that of the base quality raised to a power that depends on
the segment's complexity, so the estimate is close but not exact: on 152 dev faces saved by Pillow's libwebp 1.6
it is off by 4.6-5.6 on average between qualities 30 and 75 (biased 2-4 low, at most 13), by 0.4-1.5 from 80 up
(`benchmarks/webp_quality.py`, `benchmarks/results/webp_quality.json`; 0.12 ms per call).

Why a limit, and why this one: re-encoded as lossy WebP in memory (`udfd evaluate ../shared/data/faces --split-file
models/udfd-effnet-lite0/split.json --limit 300 --seed 1 --detector ensemble --perturb webp30,...`;
`benchmarks/results/robustness_webp.json` and `robustness_webp_seed2.json`, two draws of 300 real and 300 fake
test faces), the default's verdict changes on 14 % of faces at quality 30, 11-12 % at 50, 8-9 % from 70 to 85,
6 % at 90, 3.7-4.7 % at 95 and 100; as a JPEG at quality 70 (`udfd.jpeg.COMPRESSED_QUALITY`, the JPEG limit) on
6 % in both draws, at 75 on 3 %. A JPEG's changes are mostly reals newly called fake; a WebP's go both ways (real to
fake 3-6 % at every quality, fake to real 12 % at quality 30 and 1-2 % at 95), and the AUC hardly moves (-0.003 to
-0.026). So a lossy WebP at
or below `COMPRESSED_WEBP_QUALITY`, where more verdicts change than at the JPEG limit, is "cannot tell".
"""

from __future__ import annotations

import math
import struct

COMPRESSED_WEBP_QUALITY = 85  # at or below: a verdict on this file is "cannot tell" (udfd.pipeline)
WEBP_EFFECT = "the default's verdict changes on 8 to 14 % of faces, against 6 % as a JPEG at quality 70"  # measured
# in the module docstring
MISSING_QUALITY = math.nan  # not a lossy WebP, or a header this reader does not understand
_HEADER_BYTES = 64  # the quantiser sits in the first few bytes of the first partition


class _BoolDecoder:
    """RFC 6386 section 7.3, reading at most the bytes it was given (zeros past their end)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 2
        self.value = int.from_bytes(data[:2].ljust(2, b"\0"), "big")
        self.range, self.bit_count = 255, 0

    def bool(self, prob: int = 128) -> int:
        split = 1 + (((self.range - 1) * prob) >> 8)
        big_split = split << 8
        if self.value >= big_split:
            bit, self.range, self.value = 1, self.range - split, self.value - big_split
        else:
            bit, self.range = 0, split
        while self.range < 128:
            self.value, self.range = self.value << 1, self.range << 1
            self.bit_count += 1
            if self.bit_count == 8:
                self.bit_count = 0
                self.value |= self.data[self.pos] if self.pos < len(self.data) else 0
                self.pos += 1
        return bit

    def literal(self, n: int) -> int:
        out = 0
        for _ in range(n):
            out = (out << 1) | self.bool()
        return out

    def signed(self, n: int) -> int:
        """An optional signed field: a flag, then n magnitude bits and a sign (0 when the flag is clear)."""
        if not self.bool():
            return 0
        value = self.literal(n)
        return -value if self.bool() else value


def _vp8_chunk(data: bytes) -> bytes | None:
    """The payload of the first 'VP8 ' chunk of a RIFF/WEBP file (simple or extended), or None."""
    if len(data) < 20 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    pos = 12
    while pos + 8 <= len(data):
        tag, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if tag == b"VP8 ":
            return data[pos + 8:pos + 8 + min(size, 10 + _HEADER_BYTES)]
        if tag in (b"VP8L", b"ANIM"):
            return None  # lossless, or an animation: no single quantiser to report
        pos += 8 + size + (size & 1)
    return None


def vp8_quantisers(data: bytes) -> tuple[int, ...] | None:
    """The quantiser index (0-127) of every segment of a lossy WebP's key frame, or None when there is none.

    Without segmentation the tuple holds the base index alone; with it, each segment's index (absolute, or the base
    plus the segment's delta, as the header says). Pure; reads only the header bytes."""
    frame = _vp8_chunk(data)
    if frame is None or len(frame) < 11:
        return None
    tag = frame[0] | (frame[1] << 8) | (frame[2] << 16)
    if tag & 1 or frame[3:6] != b"\x9d\x01\x2a":  # an inter frame, or no key-frame start code: not a still image
        return None
    d = _BoolDecoder(frame[10:])
    d.literal(2)  # colour space, clamping type
    segment_q: list[int] | None = None
    absolute = False
    if d.bool():  # segmentation enabled
        update_map, update_data = d.bool(), d.bool()
        if update_data:
            absolute = bool(d.bool())
            segment_q = [d.signed(7) for _ in range(4)]
            for _ in range(4):
                d.signed(6)  # loop-filter level per segment
        if update_map:
            for _ in range(3):
                if d.bool():
                    d.literal(8)
    d.literal(1 + 6 + 3)  # filter type, loop-filter level, sharpness
    if d.bool() and d.bool():  # loop-filter deltas enabled and updated
        for _ in range(8):
            d.signed(6)
    d.literal(2)  # log2 of the number of DCT partitions
    base = d.literal(7)
    if segment_q is None:
        return (base,)
    return tuple(min(127, max(0, q if absolute else base + q)) for q in segment_q)


def quality_from_index(index: float) -> float:
    """The libwebp quality (0-100) whose base quantiser index is `index` (libwebp's mapping, inverted; pure)."""
    c = 1.0 - min(127.0, max(0.0, index)) / 127.0
    linear = c ** 3
    q = linear * 1.5 if linear < 0.5 else (linear + 1.0) / 2.0
    return 100.0 * q


def webp_quality(data: bytes) -> float:
    """The libwebp quality a lossy WebP was saved at, estimated from its mean segment quantiser; MISSING_QUALITY
    for anything else (lossless WebP, animation, not a WebP, unreadable header)."""
    q = vp8_quantisers(data)
    if not q:
        return MISSING_QUALITY
    return round(quality_from_index(sum(q) / len(q)), 1)
