"""udfd.plain: the one-sentence verdict a visitor reads first."""

from __future__ import annotations

import numpy as np

from udfd.plain import region_of, sentence
from udfd.types import FaceVerdict, Heatmap, Overall, Verdict


def _face(p: float, *, found: bool = True, uncertain: str = "", scores: dict | None = None,
          box=(0, 0, 90, 90)) -> FaceVerdict:
    return FaceVerdict(box=box, face_found=found, confidence=0.9, scores=scores or {"a": p}, label="fake" if p >= 0.5
                       else "real", fake_prob=p, uncertain=bool(uncertain), uncertain_reason=uncertain)


def _verdict(*faces: FaceVerdict, basis: str = "detectors", evidence=()) -> Verdict:
    worst = max(faces, key=lambda f: f.fake_prob)
    return Verdict(file="x.jpg", kind="image", faces=faces, overall=Overall(worst.label, worst.fake_prob,
                   worst.uncertain, 0.5, basis=basis, evidence=tuple(evidence)), model_versions={}, timings_ms={})


def test_fake_says_how_many_detectors_agree_and_where() -> None:
    face = _face(0.9, scores={"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.2})
    values = np.zeros((90, 90))
    values[80, 45] = 1.0  # bottom middle
    text = sentence(_verdict(face), heatmaps=(Heatmap("a", "gradcam", values, (0, 0, 90, 90)),))
    assert text == ("Likely manipulated — 3 of 4 detectors agree; the strongest signal is around the mouth and chin; "
                    "a detector's score is an opinion, not proof.")


def test_uncertain_and_no_face_say_cannot_tell_with_the_reason() -> None:
    assert sentence(_verdict(_face(0.52, uncertain="band"))).startswith(
        "Cannot tell — the score is too close to the detector's threshold")
    assert sentence(_verdict(_face(0.9, found=False))).startswith("Cannot tell — no face was found")


def test_real_is_never_called_proof_and_thresholds_are_per_detector() -> None:
    face = _face(0.3, scores={"a": 0.3, "b": 0.4})
    assert sentence(_verdict(face)) == ("No sign of manipulation found — 2 of 2 detectors see none; a detector's "
                                        "score is an opinion, not proof.")
    assert "1 of 2" in sentence(_verdict(face), thresholds={"b": 0.35})


def test_provenance_evidence_wins_and_is_named() -> None:
    text = sentence(_verdict(_face(0.1), basis="provenance", evidence=["C2PA: trainedAlgorithmicMedia"]))
    assert text.startswith("Generated or manipulated — the file itself says so (C2PA: trainedAlgorithmicMedia)")


def test_region_names_each_third() -> None:
    values = np.zeros((9, 9))
    values[1, 4] = 1
    assert region_of(Heatmap("a", "m", values, (0, 0, 9, 9))) == "around the forehead and eyes"
    values[:] = 0
    values[4, 0] = 1
    assert region_of(Heatmap("a", "m", values, (0, 0, 9, 9))) == "along the side of the face"


def test_catalog_reads_display_metadata() -> None:
    from udfd.catalog import describe

    class Det:
        family = "timm"
        meta = {"display": {"title": "EfficientNet-Lite0", "summary": "ImageNet backbone fine-tuned on 17 sources"},
                "loso_mean": 0.8123}
        loaded_from = "hf-hub:org/udfd-effnet-lite0@abc"

    info = describe("effnet_lite0", Det())
    assert info.title == "EfficientNet-Lite0" and info.skill == "mean AUC on held-out sources 0.81"
    assert info.card == "https://huggingface.co/org/udfd-effnet-lite0"
    assert "EfficientNet-Lite0" in info.line and "0.81" in info.line


def test_catalog_says_when_a_detector_is_served_from_its_fallback() -> None:
    from udfd.catalog import describe

    class Det:
        meta = {"display": {"title": "CNN", "summary": "small"}}
        loaded_from = "local-dir:/srv/models/udfd-cnn"
        fallback_reasons = ("hf-hub:org/udfd-cnn: HF_HUB_OFFLINE is set",)

    info = describe("cnn", Det())
    assert "served from its embedded copy" in info.summary and "/srv" not in info.line
