"""Every available detector on every face, side by side: the records and the pure summaries (no I/O).

`udfd.pipeline.compare_image` produces a `Comparison`; the app and the API render it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from udfd.types import Heatmap, Label, Verdict


@dataclass(frozen=True)
class CompareRow:
    """One detector's verdict on one face (`face` counts from 1, in the Verdict's order)."""

    face: int
    detector: str
    version: str
    fake_prob: float
    threshold: float
    label: Label
    latency_ms: float


@dataclass(frozen=True)
class FaceAgreement:
    """How far the detectors agree on one face."""

    face: int
    n_detectors: int
    n_fake: int
    max_disagreement: float  # largest minus smallest fake_prob among the detectors
    most_fake: str
    least_fake: str

    @property
    def unanimous(self) -> bool:
        return self.n_fake in (0, self.n_detectors)


@dataclass(frozen=True)
class Comparison:
    verdict: Verdict
    rows: tuple[CompareRow, ...]
    agreement: tuple[FaceAgreement, ...]
    heatmaps: tuple[Heatmap, ...] = ()
    unavailable: Mapping[str, str] = field(default_factory=dict)  # detector -> why it cannot run here

    def to_dict(self) -> dict[str, Any]:
        """The Verdict JSON plus the comparison (rows, agreement, unavailable detectors)."""
        return {
            **self.verdict.to_dict(),
            "comparison": [
                {
                    "face": r.face,
                    "detector": r.detector,
                    "version": r.version,
                    "fake_prob": r.fake_prob,
                    "threshold": round(r.threshold, 6),
                    "label": r.label,
                    "latency_ms": round(r.latency_ms, 2),
                }
                for r in self.rows
            ],
            "agreement": [
                {
                    "face": a.face,
                    "n_detectors": a.n_detectors,
                    "n_fake": a.n_fake,
                    "max_disagreement": round(a.max_disagreement, 6),
                    "unanimous": a.unanimous,
                }
                for a in self.agreement
            ],
            "unavailable": dict(self.unavailable),
        }


def compare_rows(verdict: Verdict, thresholds: Mapping[str, float]) -> tuple[CompareRow, ...]:
    """One row per (face, detector) from a Verdict computed with every detector; `thresholds` by detector name."""
    rows = []
    for i, face in enumerate(verdict.faces, start=1):
        for name, prob in face.scores.items():
            threshold = float(thresholds[name])
            rows.append(
                CompareRow(
                    face=i,
                    detector=name,
                    version=verdict.model_versions.get(name, ""),
                    fake_prob=float(prob),
                    threshold=threshold,
                    label="fake" if prob >= threshold else "real",
                    latency_ms=float(verdict.timings_ms.get(name, 0.0)),
                )
            )
    return tuple(rows)


def agreement(rows: Sequence[CompareRow]) -> tuple[FaceAgreement, ...]:
    """Per face: how many detectors say fake, and the largest gap between two detectors' fake_prob."""
    out = []
    for face in sorted({r.face for r in rows}):
        mine = [r for r in rows if r.face == face]
        hi = max(mine, key=lambda r: r.fake_prob)
        lo = min(mine, key=lambda r: r.fake_prob)
        out.append(
            FaceAgreement(
                face=face,
                n_detectors=len(mine),
                n_fake=sum(r.label == "fake" for r in mine),
                max_disagreement=hi.fake_prob - lo.fake_prob,
                most_fake=hi.detector,
                least_fake=lo.detector,
            )
        )
    return tuple(out)


def agreement_markdown(comparison: Comparison) -> str:
    """A short human summary: per face, the vote and the widest disagreement; then the detectors left out."""
    lines = []
    for a in comparison.agreement:
        vote = "all agree" if a.unanimous else "split"
        line = (
            f"- **Face {a.face}:** {a.n_fake} of {a.n_detectors} detectors say fake ({vote}); "
            f"max disagreement {a.max_disagreement:.2f}"
        )
        if a.n_detectors > 1:
            line += f" (`{a.most_fake}` most fake, `{a.least_fake}` least)"
        lines.append(line)
    if comparison.unavailable:
        lines.append("\n**Unavailable detectors:**")
        lines += [f"- `{name}`: {reason}" for name, reason in comparison.unavailable.items()]
    return "\n".join(lines)
