"""The annotated image: one box per face, coloured by verdict and labelled in words. No Gradio: the evidence report
(udfd/ui/report.py, also written by `udfd predict --report`) draws it too."""

from __future__ import annotations

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from udfd.faces import verdict_boxes
from udfd.types import Verdict
from udfd.ui.style import COLOURS, TEXT_COLOURS, box_text, verdict_key


def draw_verdict(pixels: np.ndarray, verdict: Verdict) -> np.ndarray:
    """A copy of `pixels` with one box per face, coloured by verdict and labelled like "face 1: fake 0.87"."""
    canvas = PILImage.fromarray(pixels.copy())
    draw = ImageDraw.Draw(canvas)
    short = min(canvas.size)
    width = max(2, round(short / 200))
    font = ImageFont.load_default(size=max(12, round(short / 28)))
    for i, (face, box) in enumerate(zip(verdict.faces, verdict_boxes(verdict, pixels), strict=True), start=1):
        key = verdict_key(face.label, face.uncertain)
        colour = COLOURS[key]
        x0, y0, x1, y1 = box
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=colour, width=width)
        who = f"face {i}" if face.face_found else "whole image"
        text = box_text(who, face.label, face.fake_prob, face.uncertain)
        left, top, right, bottom = draw.textbbox((x0, y0), text, font=font)
        # Above the box when there is room, otherwise just inside its top edge.
        dy = (bottom - top + 2 * width) if y0 >= bottom - top + 2 * width else 0
        draw.rectangle((left, top - dy, right + 2 * width, bottom - dy + width), fill=colour)
        draw.text((x0 + width, y0 - dy), text, fill=TEXT_COLOURS[key], font=font)
    return np.asarray(canvas)
