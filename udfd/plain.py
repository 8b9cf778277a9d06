"""The verdict in one plain sentence, for people rather than programs. Pure: a Verdict in, a string out.

Examples: "Likely manipulated — 3 of 4 detectors agree; the strongest signal is around the mouth.",
"Cannot tell — the score is too close to the detector's threshold.", "No sign of manipulation found — ...".
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from udfd.types import FaceVerdict, Heatmap, Verdict

NOT_PROOF = "a detector's score is an opinion, not proof"


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and `noun`, agreeing in number: "1 frame", "2 frames", "0 frames" (`plural` for irregular nouns)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"

WHY_UNCERTAIN = {
    "band": "the score is too close to the detector's threshold",
    "tta": "the score moves across the threshold when the image is flipped or re-compressed",
    "disagreement": "the detectors disagree",
    "no_face": "no face was found, so the whole picture was scored",
    "small_face": "the face is too small to judge",
    "noisy": "the photo is too grainy: noise looks like manipulation to the detectors",
    "compressed": "the photo is too heavily compressed (JPEG or WebP): compression artefacts look like manipulation "
                  "to the detectors",
    "large_face": "the face is large and sharp: the detector calls most real high-resolution portraits fake too",
}


def region_of(heatmap: Heatmap) -> str:
    """Where in the face crop a heat-map is strongest, in words (by thirds of the crop)."""
    values = np.asarray(heatmap.values, dtype=np.float64)
    if values.size == 0 or not np.isfinite(values).any():
        return ""
    y, x = np.unravel_index(int(np.nanargmax(values)), values.shape)
    row = min(2, int(3 * y / values.shape[0]))
    col = min(2, int(3 * x / values.shape[1]))
    if row == 0:
        return "around the forehead and eyes" if col == 1 else "around the hairline and temples"
    if row == 1:
        return "around the nose and cheeks" if col == 1 else "along the side of the face"
    return "around the mouth and chin" if col == 1 else "along the jaw"


def agreement(face: FaceVerdict, thresholds: Mapping[str, float] | None) -> tuple[int, int]:
    """(detectors calling this face fake, detectors with a score), each at its own threshold (0.5 if unknown)."""
    thresholds = thresholds or {}
    calls = [p >= thresholds.get(name, 0.5) for name, p in face.scores.items()]
    return sum(calls), len(calls)


def sentence(verdict: Verdict, *, thresholds: Mapping[str, float] | None = None,
             heatmaps: tuple[Heatmap, ...] = ()) -> str:
    """One sentence saying what the verdict means, and how sure it is."""
    overall = verdict.overall
    if overall.basis == "provenance":
        named = "; ".join(overall.evidence) or "its provenance record"
        return f"Generated or manipulated — the file itself says so ({named}), whatever the detectors score."
    if not verdict.faces:
        return "Cannot tell — nothing in the file could be scored."
    worst = max(verdict.faces, key=lambda f: f.fake_prob)
    if not any(f.face_found for f in verdict.faces):
        return ("Cannot tell — no face was found, so the whole picture was scored; the detectors are trained on "
                "faces and their score here means little.")
    if overall.uncertain or worst.uncertain:
        why = WHY_UNCERTAIN.get(worst.uncertain_reason, worst.uncertain_reason.replace("_", " ") or "the evidence is weak")
        return f"Cannot tell — {why} (fake probability {worst.fake_prob:.2f})."
    fake_votes, n = agreement(worst, thresholds)
    faces = f" (the most suspicious of {len(verdict.faces)} faces)" if len(verdict.faces) > 1 else ""
    if overall.label == "fake":
        votes = f"{fake_votes} of {n} detectors agree" if n > 1 else f"fake probability {worst.fake_prob:.2f}"
        where = ""
        # One map per face in the verdict's order (explain_verdict), else matched by box.
        mine = [heatmaps[verdict.faces.index(worst)]] if len(heatmaps) == len(verdict.faces) else \
            [h for h in heatmaps if tuple(h.box) == tuple(worst.box)]
        if mine:
            region = region_of(mine[0])
            where = f"; the strongest signal is {region}" if region else ""
        return f"Likely manipulated{faces} — {votes}{where}; {NOT_PROOF}."
    real_votes = n - fake_votes
    votes = f"{real_votes} of {n} detectors see none" if n > 1 else f"fake probability {worst.fake_prob:.2f}"
    return f"No sign of manipulation found — {votes}; {NOT_PROOF}."
