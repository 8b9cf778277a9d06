"""The Evidence panel: what the file itself says about its origin (udfd.provenance), as Markdown for the app.

Shown apart from the detectors' scores. Only the fields that matter for provenance are shown (the JSON carries
the rest); every value comes from an untrusted file, so it is escaped before it reaches the Markdown renderer.
"""

from __future__ import annotations

import html
import re
from typing import Any

from udfd.provenance import ABSENCE, Provenance

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")


def escape(text: Any) -> str:
    """A value from a file as inert Markdown text: HTML escaped, Markdown punctuation backslashed, one line."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(" ".join(str(text).split()), quote=False))


def evidence_markdown(provenance: Provenance | None) -> str:
    """The Evidence panel for one verdict's provenance (None: not checked)."""
    if provenance is None:
        return "### Evidence\nProvenance was not checked for this file."
    lines = ["### Evidence (what the file itself says)"]
    if provenance.strong:
        lines.append("**Strong evidence, which decides the overall label:** "
                     + "; ".join(escape(s) for s in provenance.strong))
    lines += [_c2pa_line(provenance), _watermark_line(provenance), *_metadata_lines(provenance)]
    if provenance.reported and not provenance.strong:
        lines.append("*Reported evidence is shown beside the detectors' scores but does not decide the label: anyone "
                     "can write it into a file. A manifest that fails validation counts for nothing.*")
    elif not provenance.strong:
        lines.append(f"*No provenance evidence: the verdict rests on the detectors. Note that {ABSENCE}.*")
    return "\n\n".join(lines)


def _c2pa_line(p: Provenance) -> str:
    c = p.c2pa
    if c.status != "found":
        return f"**C2PA Content Credentials:** {_status(c.status, c.reason)}"
    parts = [f"claim generator {escape(c.claim_generator) or 'not named'}"]
    if c.actions:
        parts.append("actions " + ", ".join(escape(a) for a in c.actions))
    if c.digital_source_types:
        parts.append("digital source type " + ", ".join(escape(t) for t in c.digital_source_types)
                     + (" (AI generated)" if c.declares_ai else ""))
    parts.append(f"signer {escape(c.signer) or 'not named'}")
    if c.signing_time:
        parts.append(f"signed {escape(c.signing_time)}")
    failures = "; ".join(escape(f) for f in c.validation_failures)
    validation = f"validation **{escape(c.validation_state) or 'unknown'}**" + (f" ({failures})" if failures else "")
    return f"**C2PA Content Credentials:** present: {', '.join(parts)}; {validation}"


def _watermark_line(p: Provenance) -> str:
    w = p.watermark
    if w.status == "found":
        text = f"found: {escape(w.scheme)}, payload {escape(w.payload)}, {w.bit_errors} bit errors"
    else:
        text = _status(w.status, w.reason)
        if w.status == "absent":
            text = "none of " + ", ".join(escape(s) for s in w.checked) + " found"
    if w.not_checked:
        text += "; not checked: " + ", ".join(escape(s) for s in w.not_checked)
    return f"**Invisible watermark:** {text}"


def _metadata_lines(p: Provenance) -> list[str]:
    m = p.metadata
    if m.status != "found":
        return [f"**Generator metadata:** {_status(m.status, m.reason)}"]
    return ["**Generator metadata:**"] + [
        f"- {escape(f.source)} {escape(f.name)}"
        + (f" (written by {escape(f.generator)})" if f.generator else "") + f": {escape(f.value)}"
        for f in m.fields
    ]


def _status(status: str, reason: str) -> str:
    if status == "absent":
        return "absent"
    word = "not checked" if status == "not_checked" else "error"
    return f"{word}: {escape(reason)}" if reason else word
