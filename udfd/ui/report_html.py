"""The evidence report's typed inputs and their rendering as one self-contained HTML page. Pure: no file, no clock.

Every string is escaped with `html.escape` before it reaches the page (file names, metadata and provenance come
from an untrusted file; notes and model lines are escaped too, on principle). Images become `data:` URIs; the
page carries a Content-Security-Policy that allows nothing but those images and the inline style sheet, so that
even a missed escape could neither run a script nor fetch anything.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from PIL import Image as PILImage

from udfd import __version__
from udfd.catalog import DetectorInfo
from udfd.plain import WHY_UNCERTAIN
from udfd.provenance import ABSENCE, Provenance
from udfd.types import FaceVerdict, Verdict
from udfd.ui.style import WORDS, verdict_key

NOT_PROOF = ("A probability is not proof. A detector's score is an opinion learnt from the examples it was trained "
             "on: it misses manipulations unlike them and can be fooled by compression, filters or unusual faces. "
             "Read \u201ccannot tell\u201d literally, and weigh this report with other evidence.")
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
_CSS = """
body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:1rem auto;padding:0 1rem;color:#111;background:#fff}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccc}
.said{font-size:1.25rem;font-weight:600;padding:.75rem 1rem;border-left:.5rem solid #555;background:#f4f4f4}
.said.fake{border-color:#d55e00}.said.real{border-color:#0072b2}.said.uncertain{border-color:#f0e442}
.proof{padding:.5rem 1rem;border:2px solid #111}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;
vertical-align:top}th{background:#f4f4f4}code{word-break:break-all}img{max-width:100%;height:auto}
.face{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start;margin:1rem 0}figure{margin:0}
figcaption{font-size:.875rem;color:#444}footer{margin-top:2rem;font-size:.875rem;color:#444}
"""


@dataclass(frozen=True)
class FileFacts:
    """The analysed file as its sender named it, and its bytes' size and SHA-256."""

    name: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class FaceImages:
    """One face's crop and its heat-map overlay (None when not explained), both RGB uint8, already downscaled."""

    crop: np.ndarray
    heatmap: np.ndarray | None = None


@dataclass(frozen=True)
class ReportInputs:
    """Everything a report shows. `faces` has one entry per face of the verdict, or none (a video)."""

    verdict: Verdict
    said: str  # the plain-language sentence (udfd.plain)
    detectors: tuple[DetectorInfo, ...]
    file: FileFacts
    when: datetime  # when the analysis ran (timezone-aware)
    annotated: np.ndarray | None = None  # the image with its face boxes, downscaled; None for a video
    faces: tuple[FaceImages, ...] = ()
    explanation: str = ""  # how the heat-maps were made, or why there are none


def esc(value: object) -> str:
    """Any value as inert HTML text (quotes included, so that it is safe in attributes too)."""
    return html.escape(str(value), quote=True)


def data_uri(pixels: np.ndarray, *, quality: int = 85) -> str:
    """An RGB array as a JPEG `data:` URI."""
    buf = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(pixels)).convert("RGB").save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def report_html(r: ReportInputs) -> str:
    """The report as one HTML page."""
    v = r.verdict
    key = verdict_key(v.overall.label, v.overall.uncertain)
    when = r.when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>UDFD evidence report: {esc(r.file.name)}</title>", f"<style>{_CSS}</style></head><body>",
        "<h1>UDFD evidence report</h1>",
        f'<p class="said {key}" id="verdict">{esc(r.said)}</p>',
        f'<p class="proof"><strong>{esc(NOT_PROOF)}</strong></p>',
        "<h2>What was analysed</h2>", _file_table(r, when),
        *_images(r), *_faces(r), *_provenance(v.provenance), *_models(r),
    ]
    if v.notes:
        parts += ["<h2>Notes</h2><ul>", *(f"<li>{esc(n)}</li>" for n in v.notes), "</ul>"]
    parts += [f"<footer>Made by UDFD {esc(__version__)} on {esc(when)}. This page is self-contained: it runs no "
              "script and loads nothing from the network.</footer>", "</body></html>", ""]
    return "\n".join(parts)


def _file_table(r: ReportInputs, when: str) -> str:
    v, o = r.verdict, r.verdict.overall
    basis = "the file's own provenance record" if o.basis == "provenance" else "the detectors' scores"
    rows = [
        ("File name", esc(r.file.name)),
        ("Size", f"{r.file.size_bytes:,} bytes"),
        ("SHA-256", f'<code id="sha256">{esc(r.file.sha256)}</code>'),
        ("Kind", f"{esc(v.kind)}, {v.width}\u00d7{v.height} pixels" if v.width else esc(v.kind)),
        ("Analysed", esc(when)),
        *([("Video", f"{v.video.duration_s:.1f} s at {v.video.fps:.1f} frames per second; {len(v.video.frames_used)} "
                     f"of {v.video.frames_decoded} decoded frames scored ({esc(v.video.selection.replace('_', ' '))})"
                     + ("; only the start was analysed" if v.video.truncated else ""))] if v.video else []),
        ("Overall verdict", f"{esc(WORDS[verdict_key(o.label, o.uncertain)])} (label {esc(o.label)}; fake "
                            f"probability {o.fake_prob:.3f} at threshold {o.threshold:.3f}; decided by {basis}"
                            + (f": {esc('; '.join(o.evidence))}" if o.evidence else "") + ")"),
    ]
    return "<table>" + "".join(f"<tr><th scope=\"row\">{k}</th><td>{val}</td></tr>" for k, val in rows) + "</table>"


def _images(r: ReportInputs) -> list[str]:
    if r.annotated is None:
        return []
    alt = "The analysed image with a box around each face; the words on each box give its verdict and fake probability"
    return ["<h2>The image</h2>", f'<figure><img src="{data_uri(r.annotated)}" alt="{esc(alt)}">',
            "<figcaption>Box colour and words: the verdict for each face (blue: no sign of fake, vermillion: likely "
            "fake, yellow: cannot tell).</figcaption></figure>"]


def _faces(r: ReportInputs) -> list[str]:
    v = r.verdict
    out = ["<h2>Faces</h2>"]
    if not v.faces:
        out.append("<p>Nothing in the file could be scored.</p>")
    for i, face in enumerate(v.faces, start=1):
        who = f"Face {i}" if face.face_found else "The whole image (no face found)"
        out.append(f"<h3>{who}</h3><div class=\"face\">")
        if i <= len(r.faces):
            images = r.faces[i - 1]
            out.append(f'<figure><img src="{data_uri(images.crop)}" alt="{esc(who)}: the crop that was scored">'
                       "<figcaption>the crop that was scored</figcaption></figure>")
            if images.heatmap is not None:
                out.append(f'<figure><img src="{data_uri(images.heatmap)}" alt="{esc(who)}: heat-map">'
                           "<figcaption>heat-map</figcaption></figure>")
        out.append(_face_table(face) + "</div>")
    if r.explanation:
        out.append(f"<p>{esc(r.explanation)}</p>")
    return out


def _face_table(face: FaceVerdict) -> str:
    verdict = WORDS[verdict_key(face.label, face.uncertain)]
    if face.uncertain_reason:
        verdict += f" ({WHY_UNCERTAIN.get(face.uncertain_reason, face.uncertain_reason)})"
    rows = [("Verdict", esc(verdict)), ("Fake probability", f"{face.fake_prob:.3f}"),
            ("Box (x0, y0, x1, y1)", esc(", ".join(map(str, face.box)))),
            *((f"Score of {esc(name)}", f"{p:.3f}") for name, p in face.scores.items()),
            *((f"Ensemble member {esc(name)}", f"{p:.3f}") for name, p in face.members.items())]
    return "<table>" + "".join(f"<tr><th scope=\"row\">{k}</th><td>{val}</td></tr>" for k, val in rows) + "</table>"


def _provenance(p: Provenance | None) -> list[str]:
    out = ["<h2>What the file itself says about its origin</h2>"]
    if p is None:
        return [*out, "<p>Not checked for this file.</p>"]
    out.append(f"<p>{esc(p.summary[0].upper() + p.summary[1:])}.</p>")
    if p.strong:
        out += ["<p><strong>Strong evidence, which decides the overall verdict:</strong></p><ul>",
                *(f"<li>{esc(s)}</li>" for s in p.strong), "</ul>"]
    if p.reported:
        out += ["<p>Reported, but not strong enough to decide (anyone can write it into a file):</p><ul>",
                *(f"<li>{esc(s)}</li>" for s in p.reported), "</ul>"]
    c, w, m = p.c2pa, p.watermark, p.metadata
    rows = [("C2PA Content Credentials", _status(c.status, c.reason))]
    if c.status == "found":
        rows += [("C2PA claim generator", esc(c.claim_generator or "not named")),
                 ("C2PA actions", esc(", ".join(c.actions) or "none")),
                 ("C2PA digital source types", esc(", ".join(c.digital_source_types) or "none")
                  + (" (AI generated)" if c.declares_ai else "")),
                 ("C2PA signer", esc(c.signer or "not named")), ("C2PA signed", esc(c.signing_time or "no time")),
                 ("C2PA validation", esc(c.validation_state or "unknown")
                  + "".join(f"<br>{esc(f)}" for f in c.validation_failures))]
    if w.status == "found":
        rows.append(("Invisible watermark", f"found: {esc(w.scheme)}, payload {esc(w.payload)}, "
                                            f"{esc(w.bit_errors)} bit errors"))
    elif w.status == "absent":
        rows.append(("Invisible watermark", "none of " + esc(", ".join(w.checked) or "the known schemes") + " found"))
    else:
        rows.append(("Invisible watermark", _status(w.status, w.reason)))
    if w.not_checked:
        rows.append(("Watermarks not checked", esc(", ".join(w.not_checked))))
    rows.append(("Generator metadata", _status(m.status, m.reason) if m.status != "found" else "found"))
    rows += [(f"{esc(f.source)} {esc(f.name)}", esc(f.value) + (f" (written by {esc(f.generator)})"
                                                                 if f.generator else "")) for f in m.fields]
    out.append("<table>" + "".join(f"<tr><th scope=\"row\">{k}</th><td>{val}</td></tr>" for k, val in rows)
               + "</table>")
    if p.reported and not p.strong:  # otherwise the summary says it already
        out.append(f"<p>Note: {esc(ABSENCE)}.</p>")
    return out


def _status(status: str, reason: str) -> str:
    word = {"absent": "absent", "not_checked": "not checked", "found": "found"}.get(status, "error")
    return esc(word + (f": {reason}" if reason and status != "absent" else ""))


def _models(r: ReportInputs) -> list[str]:
    out = ["<h2>Models</h2><ul>"]
    infos = {d.name: d for d in r.detectors}
    for name in dict.fromkeys([*infos, *r.verdict.model_versions]):
        version = r.verdict.model_versions.get(name, "unknown")
        d = infos.get(name)
        if d is None:
            out.append(f"<li><strong>{esc(name)}</strong>, version <code>{esc(version)}</code></li>")
            continue
        text = " \u2014 ".join(x for x in (d.summary, d.skill) if x)
        card = (f' Model card: <a href="{esc(d.card)}">{esc(d.card)}</a>.' if d.card.startswith("https://")
                else " Its model card ships with the model (README.md).")
        out.append(f"<li><strong>{esc(d.title)}</strong> (<code>{esc(name)}</code>, version "
                   f"<code>{esc(version)}</code>)" + (f": {esc(text)}." if text else ".") + card + "</li>")
    return [*out, "</ul>"]
