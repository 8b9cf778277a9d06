"""The downloadable evidence report: one Markdown file per analysis, to attach to a fact-check.

It says what was analysed (name, size, kind), when, the plain-language verdict, every face's scores, what the file
itself says about its origin (provenance), the models used with their measured skill, and the limits. Reports are
written to one private temporary folder that keeps at most `KEEP` files (the oldest go first).
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from udfd.catalog import DetectorInfo
from udfd.types import Verdict
from udfd.ui.style import WORDS, verdict_key

KEEP = 200
_DIR = Path(tempfile.gettempdir()) / "udfd-reports"


def report_markdown(verdict: Verdict, said: str, detectors: Sequence[DetectorInfo], *, when: datetime) -> str:
    """The report's text. Pure."""
    o = verdict.overall
    lines = [
        "# UDFD evidence report", "",
        f"**{said}**", "",
        f"- File: `{Path(verdict.file).name}` ({verdict.kind}, {verdict.width}×{verdict.height})",
        f"- Analysed: {when.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Overall: {WORDS[verdict_key(o.label, o.uncertain)]} — fake probability {o.fake_prob:.3f} at threshold "
        f"{o.threshold:.3f}; decided by {o.basis}" + (f" ({'; '.join(o.evidence)})" if o.evidence else ""),
        "", "## Faces", "", "| face | box | verdict | fake_prob | scores |", "|---|---|---|---:|---|",
    ]
    for i, f in enumerate(verdict.faces, start=1):
        scores = ", ".join(f"{k} {v:.3f}" for k, v in {**f.scores, **f.members}.items())
        why = f" ({f.uncertain_reason})" if f.uncertain_reason else ""
        lines.append(f"| {i if f.face_found else 'whole image'} | {', '.join(map(str, f.box))} | "
                     f"{WORDS[verdict_key(f.label, f.uncertain)]}{why} | {f.fake_prob:.3f} | {scores} |")
    lines += ["", "## What the file says about its origin", ""]
    prov = verdict.provenance.to_dict() if verdict.provenance is not None else None
    if prov:
        for key, value in prov.items():
            lines.append(f"- {key}: {value}")
        lines.append("- Absence of provenance is not evidence of anything.")
    else:
        lines.append("Not checked.")
    lines += ["", "## Models", ""]
    lines += [f"- {d.line} (version {verdict.model_versions.get(d.name, '?')})" for d in detectors]
    if verdict.notes:
        lines += ["", "## Notes", "", *(f"- {n}" for n in verdict.notes)]
    lines += ["", "## Limits", "",
              "A detector's probability is an opinion, not proof. Detectors miss manipulations unlike their training "
              "data and can be fooled by compression, filters or unusual faces. Read *cannot tell* literally.", ""]
    return "\n".join(lines)


def write_report(verdict: Verdict, said: str, detectors: Sequence[DetectorInfo]) -> str:
    """Write the report to the reports folder and return its path (the folder keeps the newest KEEP files)."""
    _DIR.mkdir(parents=True, exist_ok=True)
    stem = Path(verdict.file).stem[:40] or "upload"
    path = _DIR / f"udfd-report-{''.join(c if c.isalnum() or c in '-_' else '_' for c in stem)}-{uuid.uuid4().hex[:8]}.md"
    path.write_text(report_markdown(verdict, said, detectors, when=datetime.now(UTC)), encoding="utf-8")
    old = sorted(_DIR.glob("udfd-report-*.md"), key=lambda p: p.stat().st_mtime)[:-KEEP]
    for p in old:
        p.unlink(missing_ok=True)
    return str(path)
