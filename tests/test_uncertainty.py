"""The "uncertain" flag: threshold band (default), detector disagreement and test-time augmentation."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from udfd.config import Settings
from udfd.loader import load_detector
from udfd.perturb import tta_views
from udfd.pipeline import analyze_image, uncertainty
from udfd.types import Score


def _s(p: float, t: float = 0.5, name: str = "a") -> Score:
    return Score(detector=name, fake_prob=p, threshold=t)


def test_band_is_the_default_rule():
    assert uncertainty([_s(0.55)], band=0.1) == "band"
    assert uncertainty([_s(0.65)], band=0.1) == ""
    # a disagreeing second detector changes nothing unless disagreement is switched on
    assert uncertainty([_s(0.9), _s(0.05, name="b")], band=0.1) == ""


def test_disagreement_needs_opposite_labels_and_a_large_gap():
    strong = [_s(0.9), _s(0.05, name="b")]
    assert uncertainty(strong, band=0.1, disagreement=0.5) == "disagreement"
    assert uncertainty(strong, band=0.1, disagreement=0.9) == ""  # gap 0.85 < 0.9
    same_label = [_s(0.95), _s(0.3, t=0.2, name="b")]  # b calls it fake at its own threshold
    assert uncertainty(same_label, band=0.1, disagreement=0.5) == ""


def test_tta_spread_widens_the_band():
    assert uncertainty([_s(0.7)], band=0.1, spread=0.15) == "tta"
    assert uncertainty([_s(0.7)], band=0.1, spread=0.05) == ""
    assert uncertainty([_s(0.55)], band=0.1, spread=0.15) == "band"


def test_settings_from_env():
    s = Settings.from_env({"UDFD_DISAGREEMENT": "0.4", "UDFD_TTA": "1", "UDFD_THREADS": "3", "UDFD_FAST": "int8"})
    assert s.disagreement == 0.4 and s.tta and s.threads == 3 and s.fast == "int8"
    d = Settings.from_env({})
    assert d.disagreement is None and not d.tta and d.threads == 0 and d.fast == "auto"


def _png(seed: int) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (72, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tta_in_the_pipeline_widens_the_band_by_the_spread_of_the_views(tiny_settings, seed):
    det = load_detector("vit", settings=tiny_settings)
    crop = np.asarray(Image.open(io.BytesIO(_png(seed))).convert("RGB"))  # no face found: the whole image
    probs = [s.fake_prob for s in det.predict(det.preprocess([crop, *tta_views(crop)]))]
    spread = max(probs) - min(probs)
    margin = abs(probs[0] - det.threshold)
    assert spread > 0

    band = max(0.0, margin - spread / 2)  # outside the band, inside band + spread
    v = analyze_image(_png(seed), settings=replace(tiny_settings, tta=True, uncertain_band=band))
    plain = analyze_image(_png(seed), settings=replace(tiny_settings, uncertain_band=band))
    face = v.faces[0]
    assert face.fake_prob == pytest.approx(probs[0], abs=1e-6) == plain.faces[0].fake_prob  # band moves, not score
    assert (face.uncertain, face.uncertain_reason) == (True, "tta" if band < margin else "band")
    # Without TTA only the band can make it uncertain by score; no face was found, so it is uncertain anyway (issue 14)
    assert plain.faces[0].uncertain_reason == ("band" if margin < band else "no_face")
    assert v.to_dict()["faces"][0]["verdict"]["uncertain_reason"] == face.uncertain_reason
