"""Verdict colours and words shared by the tabs: a colour-blind-safe palette (Okabe & Ito) and a text label on every
box, so that no verdict is told by colour alone."""

from __future__ import annotations

# Vermillion / blue / yellow stay distinct under deuteranopia, protanopia and tritanopia (Okabe & Ito, 2008).
COLOURS = {"fake": (213, 94, 0), "real": (0, 114, 178), "uncertain": (240, 228, 66)}
TEXT_COLOURS = {"fake": (255, 255, 255), "real": (255, 255, 255), "uncertain": (0, 0, 0)}
WORDS = {"fake": "likely fake", "real": "no sign of fake", "uncertain": "cannot tell"}


def verdict_key(label: str, uncertain: bool) -> str:
    return "uncertain" if uncertain else label


def box_text(who: str, label: str, fake_prob: float, uncertain: bool) -> str:
    """The words drawn on a face box, e.g. "face 1: cannot tell (0.52)"."""
    return f"{who}: {WORDS[verdict_key(label, uncertain)]} ({fake_prob:.2f})"
