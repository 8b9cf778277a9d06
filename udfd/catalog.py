"""What a visitor is told about each detector: a human name, one line on what it is and what it learnt from, and
its measured skill, read from the checkpoint's own config (`udfd.display`, `udfd.loso_mean`). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DetectorInfo:
    name: str  # the configured short name (API value)
    title: str  # the human name shown in the UI
    summary: str  # what it is and what it was trained on
    skill: str  # its measured skill, from its card ("" when none is recorded)
    card: str  # where its model card is (a Hub URL or the folder's README.md), "" when unknown

    @property
    def line(self) -> str:
        return " — ".join(x for x in (f"**{self.title}**", self.summary, self.skill) if x)


def describe(name: str, detector: Any) -> DetectorInfo:
    """Read a loaded detector's display metadata (falls back to its family and name)."""
    meta = getattr(detector, "meta", None) or {}
    display = meta.get("display", {}) if isinstance(meta, dict) else {}
    skill = display.get("skill", "")
    loso = meta.get("loso_mean") if isinstance(meta, dict) else None
    if not skill and isinstance(loso, int | float):
        skill = f"mean AUC on held-out sources {loso:.2f}"
    ref = str(getattr(detector, "loaded_from", "") or "")
    card = f"https://huggingface.co/{ref.removeprefix('hf-hub:').split('@')[0]}" if ref.startswith("hf-hub:") else ""
    family = getattr(detector, "family", "")
    summary = display.get("summary") or (f"{family} detector" if family else "")
    if getattr(detector, "fallback_reasons", ()):  # the loader fell back past a preferred (Hub) reference
        summary += f" (served from its embedded copy: {_fallback_note(detector)})"
    return DetectorInfo(name=name, title=display.get("title") or name.replace("_", " "), summary=summary,
                        skill=skill, card=card or display.get("card", ""))


def _fallback_note(detector: Any) -> str:
    return getattr(detector, "fallback_note", "") or "the preferred reference could not be loaded"


def fallback_notice(detectors: Mapping[str, Any]) -> str:
    """One line for the top of the app naming the detectors served from their embedded copy, and why ("" when
    none is): e.g. a Space that could not reach the Hub at start-up. Names and plain reasons only, no paths."""
    by_note: dict[str, list[str]] = {}
    for name, det in detectors.items():
        if getattr(det, "fallback_reasons", ()):
            by_note.setdefault(_fallback_note(det), []).append(name)
    if not by_note:
        return ""
    parts = [f"{', '.join(f'`{n}`' for n in names)}: {note} at start-up" for note, names in by_note.items()]
    return ("**Served from the copies embedded in the app:** " + "; ".join(parts)
            + ". Their scores come from those copies (see 'About the detectors').")
