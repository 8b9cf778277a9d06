"""Compare: the pure summaries, `compare_image` over every family, and the UI helpers (no server)."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image as PILImage

import app
from udfd.compare import agreement, agreement_markdown, compare_rows
from udfd.config import FaceSettings, Settings
from udfd.detectors import families
from udfd.explain import explain_methods
from udfd.pipeline import compare_image
from udfd.types import FaceVerdict, Overall, Verdict
from udfd.ui.compare import comparison_bars, comparison_gallery, comparison_table, no_heatmap_note


def _verdict() -> Verdict:
    faces = (
        FaceVerdict(
            box=(0, 0, 10, 10),
            face_found=True,
            confidence=0.9,
            scores={"a": 0.9, "b": 0.2, "c": 0.55},
            label="fake",
            fake_prob=0.9,
            uncertain=False,
        ),
        FaceVerdict(
            box=(10, 0, 20, 10),
            face_found=True,
            confidence=0.8,
            scores={"a": 0.1, "b": 0.3, "c": 0.2},
            label="real",
            fake_prob=0.1,
            uncertain=False,
        ),
    )
    return Verdict(
        file="x.png",
        kind="image",
        faces=faces,
        overall=Overall("fake", 0.9, False, 0.5),
        model_versions={"a": "a@1", "b": "b@2", "c": "c@3"},
        timings_ms={"a": 1.5, "b": 2.5, "c": 3.5, "total": 9.0},
    )


def test_rows_use_each_detectors_own_threshold() -> None:
    rows = compare_rows(_verdict(), {"a": 0.5, "b": 0.25, "c": 0.6})
    assert [(r.face, r.detector) for r in rows] == [(1, "a"), (1, "b"), (1, "c"), (2, "a"), (2, "b"), (2, "c")]
    assert [r.label for r in rows] == ["fake", "real", "real", "real", "fake", "real"]
    assert [r.version for r in rows[:3]] == ["a@1", "b@2", "c@3"]
    assert [r.latency_ms for r in rows[:3]] == [1.5, 2.5, 3.5]


def test_agreement_counts_votes_and_the_widest_gap() -> None:
    face1, face2 = agreement(compare_rows(_verdict(), {"a": 0.5, "b": 0.25, "c": 0.6}))
    assert (face1.n_detectors, face1.n_fake, face1.unanimous) == (3, 1, False)
    assert face1.max_disagreement == pytest.approx(0.7)
    assert (face1.most_fake, face1.least_fake) == ("a", "b")
    assert (face2.n_fake, face2.max_disagreement) == (1, pytest.approx(0.2))
    unanimous = agreement(compare_rows(_verdict(), {"a": 0.05, "b": 0.05, "c": 0.05}))
    assert all(a.unanimous and a.n_fake == 3 for a in unanimous)


@pytest.fixture(scope="module")
def tiny_detectors() -> list:
    dets = []
    for fam, cls in sorted(families().items()):
        if cls.modality != "image":  # sequence models score videos, not face crops
            continue
        torch.manual_seed(0)
        det = cls.create(cls.tiny_arch)
        det.name = fam
        dets.append(det)
    return dets


def test_compare_image_runs_every_detector_on_every_face(tiny_detectors, tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    path = tmp_path / "noise.png"
    PILImage.fromarray(pixels).save(path)
    settings = Settings(faces=FaceSettings(backend="haar"))
    comparison = compare_image(path, detectors=tiny_detectors, settings=settings, unavailable={"vit_hub": "not cached"})
    names = [d.name for d in tiny_detectors]
    explained = [d.name for d in tiny_detectors if explain_methods(d)]  # spectrum reads no pixel map
    assert len(explained) < len(names)
    n_faces = len(comparison.verdict.faces)
    assert [r.detector for r in comparison.rows] == names * n_faces
    assert {(h.detector, h.box) for h in comparison.heatmaps} == {
        (n, f.box) for n in explained for f in comparison.verdict.faces
    }
    d = json.loads(json.dumps(comparison.to_dict()))
    assert set(d["faces"][0]["scores"]) == set(names)
    assert len(d["comparison"]) == len(names) * n_faces and d["unavailable"] == {"vit_hub": "not cached"}
    assert all(0.0 <= row["fake_prob"] <= 1.0 for row in d["comparison"])

    table = comparison_table(comparison)
    assert len(table["data"]) == len(names) * n_faces and len(table["headers"]) == len(table["data"][0])
    assert list(comparison_bars(comparison)["detector"]) == names * n_faces
    gallery = comparison_gallery(comparison, pixels)
    assert [caption.split(":")[0] for _, caption in gallery] == explained
    assert "`spectrum`" in no_heatmap_note({d.name: d for d in tiny_detectors}) and not no_heatmap_note({})
    assert all(img.shape == pixels.shape for img, _ in gallery)
    summary = agreement_markdown(comparison)
    assert "detectors say fake" in summary and "`vit_hub`: not cached" in summary

    plain = compare_image(path, detectors=tiny_detectors, settings=settings, explain=False)
    assert plain.heatmaps == ()
    assert [(r.detector, r.fake_prob) for r in plain.rows] == [(r.detector, r.fake_prob) for r in comparison.rows]


def test_image_tab_explanations(tiny_settings, tmp_path: Path) -> None:
    path = tmp_path / "noise.png"
    PILImage.fromarray(np.random.default_rng(1).integers(0, 256, size=(50, 70, 3), dtype=np.uint8)).save(path)
    verdict, views = (out := app.analyze(str(path), tiny_settings, explain="auto"))[3], out[5]
    assert len(views) == 1 + len(verdict["faces"])
    assert views[0][0].shape == (50, 70, 3) and "Grad-CAM overlay" in views[0][1]
    no_views = app.analyze(str(path), tiny_settings)[5]
    assert no_views == []
    with pytest.raises(gr.Error, match="not meaningful on a ViT"):
        app.analyze(str(path), tiny_settings, explain="fullgrad")
