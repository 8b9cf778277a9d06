"""The words a visitor may not know (fake probability, threshold, cannot tell, AUC, leave-one-source-out ...), each
with one plain explanation: shown on hover (`<abbr title=...>`, which Gradio's Markdown keeps) and listed in the
page's "What the words mean" accordion for touch screens, where nothing hovers. Pure: text in, text out.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

_LOSO = ("Leave one source out: each source of fakes (a generator or a data set) is left out of training in turn "
         "and the detector is tested on it, which shows how it does on a kind of fake it never saw.")
_AUC = ("AUC: how well a detector tells fakes from real faces, from 0 to 1 (the chance that it gives a fake a "
        "higher fake probability than a real face). 0.5 is a coin toss, 1 is perfect, below 0.5 is mostly wrong.")
_UNCERTAIN = ("The app does not decide this face: its fake probability is too close to the detector's threshold "
              "(within the uncertain band), no face or only a tiny one was found, the detectors disagree "
              "strongly, the photo is grainy or heavily compressed, or a large face was called fake where the "
              "detector is known to call real portraits fake too. The Verdict JSON says which (uncertain_reason).")

GLOSSARY: dict[str, str] = {
    "fake probability": ("The detector's estimate, from 0 to 1, that the face was manipulated or made by a "
                         "generator (fake_prob in the Verdict JSON). A model's opinion, not proof."),
    "threshold": ("The fake probability from which a detector says fake. Each detector has its own, chosen on "
                  "held-out data, so 0.46 can be fake for one detector and real for another."),
    "cannot tell": _UNCERTAIN,
    "uncertain": _UNCERTAIN,
    "scores": "Each detector's fake probability for this face; an ensemble also lists its members' in brackets.",
    "box": "Where the face is in the image, in pixels: left, top, right, bottom.",
    "face found": ("Whether a face was found. When none is, the whole picture is scored, which the detectors "
                   "were not trained for."),
    "face track": "The same face followed from frame to frame of the video.",
    "frame mean": "The mean fake probability of the face track over the frames used.",
    "frame max": "The highest fake probability of the face track in any one frame used.",
    "AUC": _AUC,
    "leave-one-source-out": _LOSO,
    "LOSO": _LOSO,
    "held-out sources": ("Sources of fakes and real faces kept out of training and used only to test the "
                         "detector (see leave-one-source-out)."),
    "chance": "No better than guessing: an AUC of 0.5.",
    "dev faces": ("The project's development set: real and fake faces from several public data sets and "
                  "generators, split into training, validation and test faces."),
    "pooled AUC": _AUC + " Pooled: measured on all the development faces together, not per held-out source.",
    "heat-map": "Where in the face the detector's decision came from: warm colours weigh most.",
    "provenance": ("What the file itself says about where it came from: a signed C2PA manifest, a watermark or a "
                   "generator's metadata. Its absence is not evidence of anything."),
}


def tip(term: str, shown: str | None = None) -> str:
    """`shown` (default `term`) with the glossary's explanation of `term` on hover."""
    return f'<abbr title="{html.escape(GLOSSARY[term], quote=True)}">{html.escape(shown or term)}</abbr>'


# Terms that mean the same wherever they appear in prose; the others (scores, box, ...) name table columns.
TABLE_ONLY = frozenset({"scores", "box", "face found", "frame mean", "frame max"})
# Code spans, link targets and HTML tags are left alone (an <abbr> there would show as text or break the link).
_SKIP = r"(`[^`\n]*`|\]\([^)\n]*\)|<[^>\n]*>)"
_TERMS = "|".join(re.escape(t) for t in sorted(set(GLOSSARY) - TABLE_ONLY, key=len, reverse=True))
_PATTERN = re.compile(_SKIP + r"|(?<![\w-])(" + _TERMS + r")(?![\w-])", re.I)


def explain(text: str) -> str:
    """`text` (Markdown prose) with the first use of each glossary term (table column names aside) given its
    explanation on hover; the rest as is. Longer terms win ("pooled AUC" before "AUC"); case is ignored and only
    whole words match."""
    seen: set[str] = set()

    def wrap(m: re.Match[str]) -> str:
        if m.group(1):
            return m.group(1)
        word = m.group(2)
        explanation = next(e for t, e in GLOSSARY.items() if t.lower() == word.lower())
        if explanation in seen:
            return word
        seen.add(explanation)
        return f'<abbr title="{html.escape(explanation, quote=True)}">{word}</abbr>'

    return _PATTERN.sub(wrap, text)


def key(terms: Iterable[str]) -> str:
    """One line under a table: its columns' words, each with its explanation on hover."""
    return "Hover a word for what it means: " + " · ".join(tip(t) for t in terms) + " (all of them: 'What the " \
        "words mean', at the bottom of the page)."


def glossary_markdown() -> str:
    """Every term and its explanation, for the "What the words mean" accordion (synonyms once)."""
    lines, done = [], set()
    for term, explanation in GLOSSARY.items():
        if explanation in done:
            continue
        done.add(explanation)
        also = [t for t, e in GLOSSARY.items() if e == explanation and t != term]
        lines.append(f"- **{term}**" + (f" ({', '.join(also)})" if also else "") + f": {explanation}")
    return "\n".join(lines)
