"""The Image tab's "About the detectors": one line per detector (udfd.catalog, its jargon explained on hover) with
a link to its model card on the Hub, or, for a detector served from the copy embedded in the app, the card's own
summary to read in place. Visitors never see a server path; the card is read here, at start-up (the edge).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gradio as gr

from udfd.catalog import DetectorInfo, card_summary
from udfd.hub import parse_ref
from udfd.ui.glossary import explain
from udfd.ui.public import hide_paths

log = logging.getLogger(__name__)
CARD_NAME = "README.md"


def local_card(detector: Any) -> str:
    """The summary of the model card next to an embedded detector's weights; "" when it was not loaded from a
    local folder or has no readable card (logged)."""
    ref = str(getattr(detector, "loaded_from", "") or "")
    if not ref.startswith("local-dir:"):
        return ""
    path = Path(parse_ref(ref).location) / CARD_NAME
    try:
        return card_summary(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        log.warning("the model card %s could not be read: %s", path, e)
        return ""


def detector_lines(infos: Mapping[str, DetectorInfo], unavailable: Mapping[str, str]) -> str:
    """The accordion's list: each detector's line with its jargon explained, and its card link when on the Hub."""
    lines = [f"- {explain(i.line)}" + (f" — [model card]({i.card})" if i.card.startswith("https://") else "")
             for i in infos.values()]
    lines += [f"- **{n}** — unavailable: {hide_paths(r)}" for n, r in unavailable.items()]
    return "\n".join(lines) or "No detector is available."


def build_about(infos: Mapping[str, DetectorInfo], detectors: Mapping[str, Any],
                unavailable: Mapping[str, str]) -> None:
    """Lay out the list, then one closed accordion per detector whose card is not on the Hub (inside the open
    "About the detectors" accordion)."""
    gr.Markdown(detector_lines(infos, unavailable), elem_id="about-detectors")
    for name, info in infos.items():
        if info.card.startswith("https://"):
            continue
        summary = local_card(detectors[name])
        if summary:
            with gr.Accordion(f"Model card: {info.title}", open=False):
                gr.Markdown(explain(hide_paths(summary)) + "\n\n*From the model card that ships with the detector (its README.md, "
                            "published with the app's source); the full card has its training data, scores and "
                            "configuration.*")
