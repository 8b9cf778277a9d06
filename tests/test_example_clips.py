"""The Video tab's example clips (examples/*.mp4, made by training/make_examples.py): they exist, stay small, decode
with OpenCV, are what the script makes, and give a verdict with a face through the video pipeline and the tab."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import pytest

from training.make_examples import CLIP_FPS, CLIP_SECONDS, CLIP_SIDE, CLIPS, ken_burns
from udfd.config import PROJECT_ROOT, Settings
from udfd.pipeline import load_detectors, run_video
from udfd.ui.video import example_clips

EXAMPLES = PROJECT_ROOT / "examples"
CLIP_FILES = [EXAMPLES / name for name in CLIPS.values()]
FRAMES = round(CLIP_SECONDS * CLIP_FPS)


@pytest.fixture(scope="module")
def video_dets() -> list:
    """The app's default video detectors (the embedded checkpoints), as the Video tab loads them."""
    settings = Settings()
    return load_detectors(settings, settings.video_detectors)


@pytest.mark.parametrize("clip", CLIP_FILES, ids=lambda p: p.name)
def test_clip_is_small_and_decodes(clip: Path) -> None:
    assert clip.is_file() and clip.stat().st_size <= 1024 * 1024
    cap = cv2.VideoCapture(str(clip))
    try:
        assert cap.isOpened()
        assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(CLIP_FPS)
        frames = []
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(bgr)
    finally:
        cap.release()
    assert len(frames) == FRAMES and frames[0].shape == (CLIP_SIDE, CLIP_SIDE, 3)
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 5  # the picture moves


def test_ken_burns_is_deterministic_moves_and_stays_inside_the_photo() -> None:
    photo = np.random.default_rng(0).integers(0, 256, (448, 448, 3), dtype=np.uint8)
    a, b = ken_burns(photo), ken_burns(photo)
    assert len(a) == FRAMES and all(x.shape == (CLIP_SIDE, CLIP_SIDE, 3) for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], a[FRAMES // 2])
    # A photo whose border is one colour: no reflected border may enter the frame (the pan stays inside).
    framed = np.zeros((448, 448, 3), np.uint8)
    framed[:, :] = 200
    framed[:4, :], framed[-4:, :], framed[:, :4], framed[:, -4:] = 0, 0, 0, 0
    assert min(int(f.min()) for f in ken_burns(framed)) > 100


def test_the_committed_clips_are_what_the_script_makes_of_the_committed_stills(tmp_path: Path) -> None:
    """Zoom, pan and VP9 encoding are byte-deterministic: each clip is remade from its committed still, exactly."""
    from PIL import Image

    from training.make_examples import write_clip

    for still, clip in CLIPS.items():
        made = tmp_path / clip
        write_clip(made, ken_burns(np.asarray(Image.open(EXAMPLES / still).convert("RGB"))))
        assert hashlib.sha256(made.read_bytes()).hexdigest() == hashlib.sha256((EXAMPLES / clip).read_bytes()).hexdigest(), clip


def test_the_script_remakes_the_committed_examples(shared_faces: Path, tmp_path: Path) -> None:
    """The real photos and the attribution come back byte for byte; the face swap to within a few grey levels, since
    FaceMesh's landmarks differ in their last bits from one CPU to another (seen: 0.8 % of the pixels off by at most 5
    on an AMD EPYC against the committed file), which moves the warp by a fraction of a pixel."""
    from PIL import Image

    from training.make_examples import main

    main(["--fairface", str(shared_faces / "real" / "fairface"), "--out", str(tmp_path)])
    for name in ("real_fairface_0098.jpg", "real_fairface_0224.jpg", "README.md"):
        assert (tmp_path / name).read_bytes() == (EXAMPLES / name).read_bytes(), name
    swap = next(n for n in CLIPS if n.startswith("fake_"))
    made, kept = (np.asarray(Image.open(d / swap).convert("RGB")).astype(int) for d in (tmp_path, EXAMPLES))
    diff = np.abs(made - kept)
    assert made.shape == kept.shape and diff.max() <= 24 and diff.mean() < 0.5 and (diff > 0).mean() < 0.05


@pytest.mark.parametrize("clip", CLIP_FILES, ids=lambda p: p.name)
def test_clip_gives_a_verdict_with_a_face(clip: Path, video_dets: list) -> None:
    analysis = run_video(clip, settings=Settings(), detectors=video_dets)
    v = analysis.verdict
    assert v.kind == "video" and v.file == clip.name
    assert v.faces and all(f.face_found for f in v.faces)
    assert v.overall.label in ("real", "fake") and 0.0 <= v.overall.fake_prob <= 1.0
    assert v.video.frames_decoded == FRAMES
    for det in video_dets:  # image detectors, scoring a face in every used frame
        assert all(p is not None for p in v.video.frame_scores[det.name])


def test_video_tab_examples_answer_from_the_start_up_cache(video_dets: list, tmp_path: Path) -> None:
    with gr.Blocks():
        video_in = gr.Video()
        outs = [gr.Label(), gr.Dataframe(), gr.Plot(), gr.Gallery(), gr.Image(), gr.JSON(), gr.Markdown(), gr.State()]
        examples = example_clips(video_in, outs, Settings(), video_dets)
    assert examples is not None
    assert sorted(Path(row[0]).name for row in examples.examples) == sorted(p.name for p in CLIP_FILES)
    copy = tmp_path / CLIP_FILES[0].name  # Gradio hands the example over from its cache, under the same name
    copy.write_bytes(CLIP_FILES[0].read_bytes())
    label, table, *_, verdict, _notes, last = examples.fn(str(copy))
    assert verdict["kind"] == "video" and verdict["faces"] and verdict["overall"]["label"] in ("real", "fake")
    assert verdict["overall"]["label"] in label
    assert table["data"][0][0] == video_dets[0].name and last["detector"] == video_dets[0].name
    with pytest.raises(gr.Error, match="Not one of the example clips"):
        examples.fn(str(tmp_path / "other.mp4"))
