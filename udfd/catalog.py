"""What a visitor is told about each detector: a human name, one line on what it is and what it learnt from, and
its measured skill, read from the checkpoint's own config (`udfd.display`, `udfd.loso_mean`), and where to read
its model card: the Hub page when the detector has a Hub reference, else the card's own summary (`card_summary`,
from the README.md that ships with the embedded copy). Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
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


def hub_card(refs: str | Sequence[str]) -> str:
    """The Hub page of the first `hf-hub:org/repo[@rev]` among `refs` ("a | b" or a list), "" when there is none."""
    items = refs.split("|") if isinstance(refs, str) else list(refs)
    hub = next((r.strip() for r in items if r.strip().startswith("hf-hub:")), "")
    return f"https://huggingface.co/{hub.removeprefix('hf-hub:').split('@')[0]}" if hub else ""


def describe(name: str, detector: Any, *, configured: str | Sequence[str] = "") -> DetectorInfo:
    """Read a loaded detector's display metadata (falls back to its family and name). `configured`: the references
    the detector was configured with (Settings.models); a Hub one gives the card link even when the embedded copy
    served (e.g. the Hub was unreachable at start-up, or the Space lists the published repo first)."""
    meta = getattr(detector, "meta", None) or {}
    display = meta.get("display", {}) if isinstance(meta, dict) else {}
    skill = display.get("skill", "")
    loso = meta.get("loso_mean") if isinstance(meta, dict) else None
    if not skill and isinstance(loso, int | float):
        skill = f"mean AUC on held-out sources {loso:.2f}"
    ref = str(getattr(detector, "loaded_from", "") or "")
    card = hub_card([ref]) or hub_card(configured)
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


_FRONT_MATTER = re.compile(r"\A---\n.*?\n---\n", re.S)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
SUMMARY_SECTIONS = ("Intended use and limitations", "Intended use", "Limitations", "Limits", "Status")


def card_summary(text: str) -> str:
    """The part of a model card (README.md) a visitor reads first, as Markdown: the paragraph under its title and
    its intended-use and limitations sections (SUMMARY_SECTIONS); "" when the card has none of them. Tables,
    metadata and the other sections stay in the full card."""
    body = _COMMENT.sub("", _FRONT_MATTER.sub("", text.replace("\r\n", "\n")))
    sections: dict[str, list[str]] = {}
    current = None
    for line in body.split("\n"):
        heading = re.match(r"^(#{1,2})\s+(.*)$", line)
        if heading:
            current = "" if heading.group(1) == "#" and "" not in sections else heading.group(2).strip()
            sections.setdefault(current, [])
        elif current is not None:
            sections[current].append(line)
    intro = "\n".join(sections.get("", [])).strip().split("\n\n")[0].strip()
    parts = [intro] if intro and not intro.startswith("|") else []
    for title in SUMMARY_SECTIONS:
        kept = "\n".join(sections.get(title, [])).strip()
        if kept:
            parts.append(f"**{title}**\n\n{kept}")
    return "\n\n".join(parts)
