"""Video analysis end to end on generated clips of real faces: pipeline, Video tab, CLI and training smoke run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch

from tests.conftest import face_clip, write_video
from udfd.config import Settings, VideoSettings
from udfd.detectors.lip_lstm import LipLSTMDetector
from udfd.detectors.vit import ViTDetector
from udfd.pipeline import analyze_video, run_video

SETTINGS = replace(Settings(), video=VideoSettings(frames=6))


@pytest.fixture(scope="module")
def tiny_dets() -> list:
    torch.manual_seed(0)
    lip = LipLSTMDetector.create(LipLSTMDetector.tiny_arch)
    vit = ViTDetector.create(ViTDetector.tiny_arch)
    for d in (lip, vit):
        d.module().eval()
    return [lip, vit]


@pytest.fixture()
def face_video(tmp_path: Path, face_rgb: np.ndarray) -> Path:
    return write_video(tmp_path / "talk.mp4", face_clip(face_rgb, 10))


def test_run_video_scores_tracks_and_frames(face_video: Path, tiny_dets: list) -> None:
    analysis = run_video(face_video, settings=SETTINGS, detectors=tiny_dets)
    v = analysis.verdict
    assert v.kind == "video" and v.file == "talk.mp4"
    assert len(v.faces) == 1 and v.faces[0].face_found
    s = v.video
    assert len(s.frames_used) == len(analysis.sample.frames) == 6
    assert set(s.frame_scores) == {"vit"} and len(s.frame_scores["vit"]) == 6
    assert all(p is not None and 0 <= p <= 1 for p in s.frame_scores["vit"])
    assert set(s.video_scores) == {"lip_lstm", "vit"}
    assert v.overall.fake_prob == pytest.approx(v.faces[0].scores["lip_lstm"], abs=1e-6)  # the first decides
    assert s.video_scores["vit"]["frame_max"] >= s.video_scores["vit"]["frame_mean"]
    assert analysis.lips[0].shape == (len(analysis.tracks[0]), 64, 64, 3)
    d = json.loads(json.dumps(v.to_dict()))
    assert d["video"]["frames_used"] == list(s.frames_used) and d["kind"] == "video"
    assert {"decode", "motion", "faces", "lips", "lip_lstm", "vit", "total"} <= set(d["timings_ms"])


def test_two_people_are_two_tracks_and_the_most_fake_decides(tmp_path: Path, face_rgb: np.ndarray,
                                                              tiny_dets: list) -> None:
    path = write_video(tmp_path / "two.mp4", face_clip(face_rgb, 10, size=(480, 240), faces=2))
    v = analyze_video(path, settings=SETTINGS, detectors=tiny_dets[1:])
    assert len(v.faces) == 2
    assert v.overall.fake_prob == pytest.approx(max(f.fake_prob for f in v.faces))
    assert any("2 face tracks" in n for n in v.notes)


def test_no_face_scores_whole_frames_and_says_so(tmp_path: Path, tiny_dets: list) -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (64, 80, 3), dtype=np.uint8) for _ in range(5)]
    v = analyze_video(write_video(tmp_path / "noise.mp4", frames), settings=SETTINGS, detectors=tiny_dets)
    assert len(v.faces) == 1 and not v.faces[0].face_found
    assert set(v.faces[0].scores) == {"vit"}, "the lip model needs a face and is not applied"
    assert v.video.video_scores["lip_lstm"] == {}
    assert any("no face found" in n and "not applied" in n for n in v.notes)


def test_video_tab_outputs_and_errors(face_video: Path, tiny_dets: list, tmp_path: Path) -> None:
    from udfd.ui.video import analyze

    label, table, figure, gallery, lips, verdict, notes = analyze(str(face_video), SETTINGS, tiny_dets)
    o = verdict["overall"]
    assert label == o["label"] + (" (uncertain)" if o["uncertain"] else "")
    assert [row[0] for row in table["data"]] == ["lip_lstm", "vit"]
    assert figure is not None and 1 <= len(gallery) <= 6
    assert all(img.ndim == 3 for img, _ in gallery) and all(caption.startswith("frame ") for _, caption in gallery)
    assert lips.shape[0] % 64 == 0 and lips.shape[1] == 8 * 64
    assert "frames decoded" in notes
    bogus = tmp_path / "movie.mp4"
    bogus.write_text("not a movie\n")
    with pytest.raises(gr.Error) as err:
        analyze(str(bogus), SETTINGS, tiny_dets)
    assert "movie.mp4" in err.value.message and str(tmp_path) not in err.value.message


def test_cli_predict_and_evaluate_videos(tmp_path: Path, face_rgb: np.ndarray, tiny_vit_dir: Path,
                                         capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from udfd.cli.main import main

    for label in ("real", "fake"):
        (tmp_path / "v" / label / "src").mkdir(parents=True)
        write_video(tmp_path / "v" / label / "src" / f"{label}.mp4", face_clip(face_rgb, 6, seed=label == "fake"))
    monkeypatch.setenv("UDFD_MODEL_VIT", f"local-dir:{tiny_vit_dir}")
    monkeypatch.setenv("UDFD_VIDEO_FRAMES", "4")
    assert main(["predict", str(tmp_path / "v"), "--json", "--detector", "vit"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [d["kind"] for d in lines] == ["video", "video"]
    assert all(len(d["video"]["frames_used"]) == 4 for d in lines)
    assert main(["evaluate", str(tmp_path / "v"), "--json", "--detector", "vit"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "video" and report["overall"]["n"] == 2 and len(report["per_video"]) == 2
    assert "confusion" in report["overall"] and "brier" in report["overall"]


@pytest.mark.slow
def test_train_video_smoke_cv_checkpoint_and_push(tmp_path: Path, shared_faces: Path) -> None:
    from tests.test_hub import FakeHfApi
    from training.train_video import main
    from udfd.loader import clear_cache, load_detector
    from udfd.media import read_image

    faces = sorted((shared_faces / "real" / "lfw").glob("*.jpg"))[:6]
    for i, f in enumerate(faces):
        label = "fake" if i % 2 else "real"
        folder = tmp_path / "videos" / label / ("src" if i < 4 else "other")
        folder.mkdir(parents=True, exist_ok=True)
        write_video(folder / f"clip{i}.mp4", face_clip(read_image(f).pixels, 8, seed=i))
    api = FakeHfApi()
    out = tmp_path / "lip"
    arch = json.dumps({k: v for k, v in LipLSTMDetector.tiny_arch.items() if k not in ("image_size", "seq_len")})
    main(["--data", str(tmp_path / "videos"), "--output", str(out), "--epochs", "2", "--seq-len", "4",
          "--frames-per-video", "6", "--windows-per-video", "2", "--roi-size", "16", "--arch", arch,
          "--cache-dir", str(tmp_path / "cache"), "--mixed-precision", "no", "--version", "t1",
          "--push-to-hub", "--hub-model-id", "org/lip"], hf_api=api)
    for name in ("config.json", "model.safetensors", "README.md", "eval_results.json"):
        assert (out / name).is_file(), name
    results = json.loads((out / "eval_results.json").read_text())["results"]
    assert results["cross-validation (out of fold)"]["n"] == 6
    assert "cross-validation" in (out / "README.md").read_text()
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]
    # Cross-source: train on the other sources, test on one.
    cross = tmp_path / "cross"
    main(["--data", str(tmp_path / "videos"), "--output", str(cross), "--epochs", "1", "--seq-len", "4",
          "--frames-per-video", "6", "--roi-size", "16", "--arch", arch, "--cache-dir", str(tmp_path / "cache"),
          "--mixed-precision", "no", "--test-source", "other"])
    cross_results = json.loads((cross / "eval_results.json").read_text())["results"]
    assert cross_results["test (other)"]["n"] == 2
    clear_cache()
    det = load_detector(f"local-dir:{out}", settings=Settings())
    assert det.modality == "video" and det.version.endswith("t1")
    v = analyze_video(tmp_path / "videos" / "real" / "src" / "clip0.mp4", settings=SETTINGS, detectors=[det])
    assert 0 <= v.overall.fake_prob <= 1


@pytest.mark.slow
@pytest.mark.integration
def test_served_analyze_video_endpoint(tiny_settings, face_video: Path, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    import app
    from tests.conftest import serve

    settings = replace(tiny_settings, video=VideoSettings(frames=4), video_detectors=("vit",))
    with serve(app.build_app(settings)) as url:
        client = Client(url, verbose=False, analytics_enabled=False, download_files=str(tmp_path / "dl"))
        label, table, _plot, gallery, _lips, verdict, notes = client.predict(
            handle_file(face_video), "vit", [], api_name="/analyze_video")
        assert verdict["kind"] == "video" and verdict["file"] == "talk.mp4"
        assert len(verdict["video"]["frames_used"]) == 4
        assert label["label"].split()[0] in {"real", "fake"} and [r[0] for r in table["data"]] == ["vit"]
        assert gallery and "frames decoded" in notes
        bogus = tmp_path / "clip.mp4"
        bogus.write_bytes(b"\x00" * 2048)
        with pytest.raises(AppError, match="clip.mp4"):
            client.predict(handle_file(bogus), "vit", [], api_name="/analyze_video")
        with pytest.raises(AppError, match="Upload a video first"):
            client.predict(None, "vit", [], api_name="/analyze_video")
        # still serving after the bad uploads, images included
        assert client.predict(handle_file(face_video), "vit", [], api_name="/analyze_video")[5]["kind"] == "video"


@pytest.mark.slow
def test_video_tab_flag_is_stored_with_the_video_hash(tiny_settings, face_video: Path, tmp_path: Path) -> None:
    import hashlib

    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    import app
    from tests.conftest import serve
    from udfd.config import FeedbackSettings
    from udfd.feedback.store import read_records

    store = tmp_path / "flags"
    settings = replace(tiny_settings, video=VideoSettings(frames=4), video_detectors=("vit",),
                       feedback=FeedbackSettings(dir=store, protector=f"local-dir:{tmp_path / 'none'}"))
    with serve(app.build_app(settings)) as url:
        client = Client(url, verbose=False, analytics_enabled=False, download_files=str(tmp_path / "dl"))
        with pytest.raises(AppError, match="Analyse a video first"):
            client.predict("Correct", False, api_name="/flag_video")
        verdict = client.predict(handle_file(face_video), "vit", [], api_name="/analyze_video")[5]
        message = client.predict("Wrong — it is fake", True, api_name="/flag_video")
        assert "recorded as **fake**" in message and "face crop was stored" in message
    records = read_records(store).records
    assert len(records) == 1
    rec = records[0]
    assert rec.media_sha256 == hashlib.sha256(face_video.read_bytes()).hexdigest()
    assert rec.user_label == "fake" and rec.predicted_label == verdict["overall"]["label"] and rec.consent
    assert rec.scores == verdict["faces"][0]["scores"]
    assert rec.protector_decision == "unscreened" and "not screened" in rec.reason


def test_video_flag_is_screened_with_the_protectors_own_detector(tiny_settings, face_video: Path, tmp_path: Path,
                                                                  tiny_dets: list) -> None:
    """lip_lstm decides the video, but the protector reads vit features: the flag is screened with vit."""
    from udfd.config import FeedbackSettings
    from udfd.feedback.protector import Protector, ProtectorConfig
    from udfd.feedback.store import new_record, open_store
    from udfd.ui.feedback import StoreFlaggingCallback
    from udfd.ui.video import last_verdict, run

    lip, vit = tiny_dets
    vit.name = "vit"
    low, high = vit.features(vit.preprocess([np.zeros((32, 32, 3), np.uint8)]))
    protector = Protector.create(ProtectorConfig(low_dim=low.shape[1], high_dim=high.shape[1], detector="vit",
                                                 min_agreement=0.0))
    store, _, _ = open_store(FeedbackSettings(dir=tmp_path / "fb"))
    callback = StoreFlaggingCallback(SETTINGS, {"vit": vit}, store=store, protector=protector)
    analysis = run(str(face_video), SETTINGS, [lip, vit])
    last = last_verdict(analysis, lip)
    assert last["detector"] == "lip_lstm" and last["face"].ndim == 3

    record = new_record(media_sha256=last["sha256"], model="lip_lstm", revision=lip.version, scores=last["scores"],
                        predicted_label=last["predicted"], user_label="real", consent=False)
    from udfd.ui.video import screening_detector

    assert screening_detector(callback, {"lip_lstm": lip, "vit": vit}, "lip_lstm") is vit
    assert screening_detector(callback, {"lip_lstm": lip}, "lip_lstm") is lip  # vit not loaded: unscreened later
    stored = callback.flag_face(record, vit, last["face"], consent=False)
    assert stored.protector_decision == "accepted" and stored.protector_score is not None
    assert stored.model == "lip_lstm" and stored.image_file is None
