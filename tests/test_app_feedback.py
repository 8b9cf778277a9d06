"""Flagging in the app: the FlaggingCallback over the store, and the served `/flag` endpoint."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image as PILImage  # noqa: E402

import app  # noqa: E402
from udfd.config import FeedbackSettings  # noqa: E402
from udfd.feedback.protector import Protector, ProtectorConfig  # noqa: E402
from udfd.feedback.store import read_records  # noqa: E402
from udfd.loader import load_detector  # noqa: E402
from udfd.ui.feedback import CONSENT_LABEL, make_callback  # noqa: E402


@pytest.fixture()
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "upload.png"
    PILImage.fromarray(np.random.default_rng(3).integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(path)
    return path


def _protector_dir(tmp_path: Path, settings, *, min_agreement: float) -> Path:
    det = load_detector("vit", settings=settings)
    low, high = det.features(det.preprocess([np.zeros((32, 32, 3), np.uint8)]))
    torch.manual_seed(0)
    cfg = ProtectorConfig(low_dim=low.shape[1], high_dim=high.shape[1], hidden=8, embed=4, detector="vit",
                          min_agreement=min_agreement)
    folder = tmp_path / "protector"
    Protector.create(cfg).save_pretrained(folder)
    return folder


def _settings(tiny_settings, tmp_path: Path, protector: Path | None):
    ref = f"local-dir:{protector}" if protector else f"local-dir:{tmp_path / 'no-protector'}"
    return dataclasses.replace(tiny_settings, feedback=FeedbackSettings(dir=tmp_path / "fb", protector=ref))


def test_callback_stores_the_recomputed_flag(tiny_settings, tmp_path: Path, picture: Path) -> None:
    settings = _settings(tiny_settings, tmp_path, _protector_dir(tmp_path, tiny_settings, min_agreement=0.0))
    dets = {"vit": load_detector("vit", settings=settings)}
    callback, status = make_callback(settings, dets)
    assert status.pushing_to is None and callback.protector is not None
    correct = callback.flag_record([str(picture), "vit", False], "Correct")
    wrong = callback.flag_record([{"path": str(picture)}, "vit", True], "Wrong — it is real")
    assert callback.flag([str(picture), None, False], "Wrong — it is fake") == 3

    records = {r.id: r for r in read_records(tmp_path / "fb").records}
    assert set(records) >= {correct.id, wrong.id} and len(records) == 3
    assert correct.user_label == correct.predicted_label  # "Correct" confirms the model's verdict
    assert wrong.user_label == "real"
    assert correct.image_file is None and wrong.image_file is not None  # the image only with consent
    stored = np.asarray(PILImage.open(tmp_path / "fb" / wrong.image_file))
    assert np.array_equal(stored, np.asarray(PILImage.open(picture).convert("RGB")))
    assert set(correct.scores) == {"vit"} and 0 <= correct.scores["vit"] <= 1
    assert correct.revision == dets["vit"].version
    assert len(correct.media_sha256) == 64
    # min_agreement 0: every flag agrees "enough" -> accepted, with the protector's probability and a reason
    assert all(r.protector_decision == "accepted" and 0 <= r.protector_score <= 1 for r in records.values())
    assert "protector agrees" in correct.reason


def test_strict_protector_marks_flags_suspicious(tiny_settings, tmp_path: Path, picture: Path) -> None:
    settings = _settings(tiny_settings, tmp_path, _protector_dir(tmp_path, tiny_settings, min_agreement=1.01))
    callback, _ = make_callback(settings, {"vit": load_detector("vit", settings=settings)})
    rec = callback.flag_record([str(picture), "vit", False], "Wrong — it is fake")
    assert rec.protector_decision == "suspicious" and "disagrees" in rec.reason
    assert len(read_records(tmp_path / "fb").records) == 1, "suspicious flags are stored too"


def test_without_protector_flags_are_stored_unscreened(tiny_settings, tmp_path: Path, picture: Path) -> None:
    settings = _settings(tiny_settings, tmp_path, None)
    callback, _ = make_callback(settings, {"vit": load_detector("vit", settings=settings)})
    rec = callback.flag_record([str(picture), "vit", False], "Correct")
    assert rec.protector_decision == "unscreened" and rec.protector_score is None
    assert "protector unavailable" in rec.reason


def test_bad_flags_are_user_errors(tiny_settings, tmp_path: Path, picture: Path) -> None:
    settings = _settings(tiny_settings, tmp_path, None)
    callback, _ = make_callback(settings, {"vit": load_detector("vit", settings=settings)})
    with pytest.raises(gr.Error, match="unknown feedback"):
        callback.flag_record([str(picture), "vit", False], "maybe")
    with pytest.raises(gr.Error, match="analyse an image first"):
        callback.flag_record([None, "vit", False], "Correct")
    with pytest.raises(gr.Error, match="unknown detector"):
        callback.flag_record([str(picture), "nope", False], "Correct")
    assert read_records(tmp_path / "fb").records == ()


def test_consent_box_is_unchecked_by_default(tiny_settings, tmp_path: Path) -> None:
    demo = app.build_app(_settings(tiny_settings, tmp_path, None))
    boxes = [b for b in demo.blocks.values() if isinstance(b, gr.Checkbox) and b.label == CONSENT_LABEL]
    assert len(boxes) == 1 and boxes[0].value is False
    labels = {b.value for b in demo.blocks.values() if isinstance(b, gr.Button)}
    assert {"Correct", "Wrong — it is real", "Wrong — it is fake"} <= labels


@pytest.mark.slow
def test_served_flag_endpoint(tiny_settings, tmp_path: Path, picture: Path) -> None:
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from tests.conftest import serve

    settings = _settings(tiny_settings, tmp_path, _protector_dir(tmp_path, tiny_settings, min_agreement=0.0))
    with serve(app.build_app(settings)) as url:
        client = Client(url, verbose=False, analytics_enabled=False, download_files=str(tmp_path / "dl"))
        verdict = client.predict(handle_file(picture), api_name="/analyze_image")[3]
        out = client.predict(handle_file(picture), "vit", "Wrong — it is real", True, api_name="/flag")
        assert out["user_label"] == "real" and out["image_stored"] is True
        assert out["predicted_label"] == verdict["overall"]["label"]
        assert out["protector_decision"] == "accepted"
        out2 = client.predict(handle_file(picture), "vit", "Correct", False, api_name="/flag")
        assert out2["user_label"] == verdict["overall"]["label"] and out2["image_stored"] is False
        with pytest.raises(AppError, match="unknown feedback"):
            client.predict(handle_file(picture), "vit", "nonsense", False, api_name="/flag")
        assert "/flag" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    records = read_records(tmp_path / "fb").records
    assert sorted(r.id for r in records) == sorted([out["id"], out2["id"]])


def test_protector_for_another_detector_version_is_reloaded_when_retrained(tiny_settings, tmp_path: Path,
                                                                           picture: Path) -> None:
    folder = _protector_dir(tmp_path, tiny_settings, min_agreement=0.0)
    stale = Protector.from_pretrained(folder).with_config(detector_version="old@1")
    stale.save_pretrained(folder)
    settings = _settings(tiny_settings, tmp_path, folder)
    det = load_detector("vit", settings=settings)
    callback, _ = make_callback(settings, {"vit": det})
    rec = callback.flag_record([str(picture), "vit", False], "Correct")
    assert rec.protector_decision == "unscreened" and "retrain it" in rec.reason
    stale.with_config(detector_version=det.version).save_pretrained(folder)  # what retrain.py writes
    rec = callback.flag_record([str(picture), "vit", False], "Correct")
    assert rec.protector_decision == "accepted"
