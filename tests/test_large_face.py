"""A "fake" on a face larger than the detector's declared limit is "cannot tell" (uncertain reason "large_face"):
the default calls most real high-resolution portraits fake (`limits.large_face` in models/udfd-ensemble/config.json,
measured by benchmarks/large_faces.py). The limit comes from the detector's own config, never from its name."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from udfd.pipeline import analyze_image, large_face_limit
from udfd.plain import WHY_UNCERTAIN
from udfd.types import Score

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT / "examples" / "real_fairface_0098.jpg"


class _Fixed:
    """A stand-in detector that gives every face the same score and may declare limits in its config (`meta`)."""

    version, threshold = "0", 0.5

    def __init__(self, fake_prob: float, meta: dict | None = None, name: str = "fixed") -> None:
        self.fake_prob, self.meta, self.name = fake_prob, meta or {}, name

    def preprocess(self, crops):
        import torch

        return torch.zeros(len(crops), 3, 4, 4)

    def predict(self, x):
        return [Score(self.name, self.fake_prob) for _ in range(x.shape[0])]


LIMIT = {"limits": {"large_face": {"min_side": 400, "measured": "called 10 of 13 large real test faces fake"}}}


def _jpeg(scale: float) -> bytes:
    img = Image.open(PHOTO).convert("RGB")
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _side(verdict) -> int:
    x0, y0, x1, y1 = verdict.faces[0].box
    return max(x1 - x0, y1 - y0)


def test_a_fake_call_on_a_face_over_the_declared_limit_is_cannot_tell(tiny_settings) -> None:
    settings = replace(tiny_settings, uncertain_band=0.0)
    big = analyze_image(_jpeg(2.2), settings=settings, detectors=[_Fixed(0.9, LIMIT)])
    assert _side(big) >= 400 and big.faces[0].face_found
    assert big.faces[0].label == "fake" and big.faces[0].uncertain_reason == "large_face" and big.overall.uncertain
    assert any("large face (at least 400 px) called fake" in n and "called 10 of 13" in n for n in big.notes)
    assert "portraits" in WHY_UNCERTAIN["large_face"]
    small = analyze_image(_jpeg(1.0), settings=settings, detectors=[_Fixed(0.9, LIMIT)])
    assert _side(small) < 400 and small.faces[0].uncertain_reason == "" and not small.overall.uncertain
    real = analyze_image(_jpeg(2.2), settings=settings, detectors=[_Fixed(0.1, LIMIT)])
    assert real.faces[0].label == "real" and real.faces[0].uncertain_reason == ""  # a "real" call stands
    undeclared = analyze_image(_jpeg(2.2), settings=settings, detectors=[_Fixed(0.9)])
    assert undeclared.faces[0].uncertain_reason == "" and not any("large face" in n for n in undeclared.notes)
    # only the deciding (first) detector's limit counts
    second = analyze_image(_jpeg(2.2), settings=settings, detectors=[_Fixed(0.9), _Fixed(0.9, LIMIT, name="other")])
    assert second.faces[0].uncertain_reason == ""


@pytest.mark.parametrize("meta", [{}, {"limits": None}, {"limits": {"large_face": "400"}},
                                  {"limits": {"large_face": {"measured": "no size"}}}, None])
def test_a_missing_or_malformed_limit_declares_nothing(meta) -> None:
    det = _Fixed(0.9)
    det.meta = meta
    assert large_face_limit(det) is None


def test_the_default_image_detector_declares_the_measured_limit() -> None:
    config = json.loads((ROOT / "models" / "udfd-ensemble" / "config.json").read_text())["udfd"]
    det = _Fixed(0.9, config)
    side, measured = large_face_limit(det)
    bench = json.loads((ROOT / "benchmarks" / "results" / "large_faces.json").read_text())
    over = [r for r in bench["rows"] if r["side"] >= side]
    reals = [r for r in over if not r["label"]]
    assert f"{sum(r['called_fake'] for r in reals)} of the {len(reals)} real faces of {side} px" in measured
    fakes = [r for r in over if r["label"]]
    assert f"{sum(r['called_fake'] for r in fakes)} of the {len(fakes)} fakes that large" in measured
    assert np.mean([r["called_fake"] for r in fakes]) > 0.9  # nearly every fake that large is called fake
    assert np.mean([r["called_fake"] for r in reals]) > 0.5  # the reason for the limit: most large reals too
