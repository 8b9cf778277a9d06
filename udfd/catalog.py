"""What a visitor is told about each detector: a human name, one line on what it is and what it learnt from, and
its measured skill, read from the checkpoint's own config (`udfd.display`, `udfd.loso_mean`). Pure.
"""

from __future__ import annotations

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
        summary += " (served from its embedded copy: the preferred reference could not be loaded)"
    return DetectorInfo(name=name, title=display.get("title") or name.replace("_", " "), summary=summary,
                        skill=skill, card=card or display.get("card", ""))
