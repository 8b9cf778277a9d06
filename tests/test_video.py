"""Video decoding, frame selection, tracking and lip ROI (udfd/video.py, udfd/lips.py): pure functions on arrays,
and the decoding edge on generated clips and bad files."""

from __future__ import annotations

import wave
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

import udfd.video as video_module
from tests.conftest import face_clip, write_video
from udfd.config import VideoSettings
from udfd.errors import MediaError, UdfdError
from udfd.lips import LIP_LANDMARKS, fallback_lip_box, lip_box
from udfd.video import (
    MotionPool,
    flow_grey,
    flow_grey_from_luma,
    flow_magnitude,
    sample_video,
    select_frames,
    track_faces,
    uniform_indices,
)

# -- pure ------------------------------------------------------------------------------------------------------


def test_uniform_indices() -> None:
    assert uniform_indices(0, 5) == []
    assert uniform_indices(3, 5) == [0, 1, 2]
    idx = uniform_indices(300, 60)
    assert len(idx) == 60 and idx[0] == 0 and idx[-1] == 299 and idx == sorted(set(idx))


def test_select_frames_top_k_in_temporal_order() -> None:
    mags = [0.0, 2.0, 0.5, 5.0, 3.0, 1.5, 4.0]
    idx, fell_back = select_frames(mags, k=3, theta=1.0)
    assert not fell_back and idx == [3, 4, 6]  # the three largest, in time order


def test_select_frames_ties_prefer_earlier_frames() -> None:
    idx, _ = select_frames([0.0, 2.0, 2.0, 2.0], k=2, theta=1.0)
    assert idx == [1, 2]


def test_select_frames_falls_back_to_uniform() -> None:
    mags = [0.0] + [0.2] * 98 + [9.0]
    idx, fell_back = select_frames(mags, k=10, theta=1.0)
    assert fell_back and idx == uniform_indices(100, 10)


def test_flow_magnitude_measures_a_shift() -> None:
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 256, (140, 140), dtype=np.uint8), (0, 0), 2)
    still = flow_magnitude(base[:128, :128], base[:128, :128])
    moved = flow_magnitude(base[:128, :128], base[:128, 3:131])
    assert still < 0.05
    assert 2.0 < moved < 4.0  # a 3-pixel horizontal shift


def test_motion_pool_gives_the_sequential_magnitudes_in_order_and_bounds_what_waits() -> None:
    rng = np.random.default_rng(1)
    base = cv2.GaussianBlur(rng.integers(0, 256, (160, 200), dtype=np.uint8), (0, 0), 2)
    greys = [np.ascontiguousarray(base[:128, s:s + 128]) for s in (0, 3, 3, 7, 1, 12, 12, 5, 9, 0)]
    expected = [0.0] + [flow_magnitude(a, b) for a, b in zip(greys, greys[1:], strict=False)]
    got, most_waiting = [], 0
    with MotionPool(workers=2, depth=3) as pool:
        for i, grey in enumerate(greys):
            got += pool.add(grey, payload=f"frame {i}")
            most_waiting = max(most_waiting, i + 1 - len(got))
        got += pool.finish()
    assert [i for i, _, _ in got] == list(range(len(greys)))  # every frame once, oldest first
    assert [payload for _, _, payload in got] == [f"frame {i}" for i in range(len(greys))]
    assert [m for _, m, _ in got] == pytest.approx(expected, abs=1e-9)  # the same numbers as measuring in order
    assert most_waiting <= 3  # at most `depth` frames (and their payloads) held at once
    assert pool.finish() == []


def test_flow_grey_uses_the_roi_and_does_not_mutate() -> None:
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[:, 100:] = 255
    before = frame.copy()
    assert flow_grey(frame, (100, 0, 200, 100), 32).min() == 255
    assert flow_grey(frame, None, 32).shape == (32, 32)
    assert np.array_equal(frame, before)


def test_track_faces_follows_two_people_and_a_newcomer() -> None:
    left = [(10 + 4 * t, 10, 60 + 4 * t, 60) for t in range(5)]
    right = [(200 - 3 * t, 20, 250 - 3 * t, 70) for t in range(5)]
    frames = [[left[t], right[t]] if t != 2 else [right[t], left[t]] for t in range(5)]
    frames[4].append((120, 150, 160, 190))  # someone new in the last frame
    tracks = track_faces(frames)
    assert len(tracks) == 3
    as_boxes = [[frames[t][j] for t, j in tr] for tr in tracks]
    assert left in as_boxes and right in as_boxes
    assert [(120, 150, 160, 190)] in as_boxes


def test_track_faces_empty() -> None:
    assert track_faces([[], []]) == []


def test_lip_box_square_inside_and_covers_the_mouth() -> None:
    points = np.zeros((468, 2), np.float32)
    points[list(LIP_LANDMARKS)] = [(40, 70), (80, 70), (60, 64), (60, 80), (60, 70), (60, 72), (45, 70), (75, 70)]
    x0, y0, x1, y1 = lip_box(points, width=100, height=100)
    assert x1 - x0 == y1 - y0
    assert x0 <= 40 and x1 >= 80 and y0 <= 64 and y1 >= 80
    assert x0 >= 0 and y0 >= 0 and x1 <= 100 and y1 <= 100
    fx0, fy0, fx1, fy1 = fallback_lip_box(100, 100)
    assert fy0 > 40 and fx1 - fx0 == fy1 - fy0 and fy1 <= 100


# -- decoding edge ----------------------------------------------------------------------------------------------


def _moving_frames(n: int, size: tuple[int, int] = (96, 64)) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    pattern = cv2.GaussianBlur(rng.integers(0, 256, (size[1], size[0] * 3, 3), dtype=np.uint8), (0, 0), 1.5)
    # Motion grows with t: the last frames move most.
    offsets = np.cumsum([0] + [t for t in range(1, n)])
    return [np.ascontiguousarray(pattern[:, o % (size[0] * 2): o % (size[0] * 2) + size[0]]) for o in offsets]


def test_sample_video_selects_high_motion_frames(tmp_path: Path) -> None:
    path = write_video(tmp_path / "moving.mp4", _moving_frames(12))
    sample = sample_video(path, VideoSettings(frames=4, flow_threshold=0.5, flow_size=64))
    assert sample.info.frame_count == 12 and sample.info.fps == pytest.approx(10.0)
    assert len(sample.frames) == len(sample.indices) == 4
    assert sample.selection == "optical_flow"
    expected, _ = select_frames(sample.magnitudes, k=4, theta=0.5)
    assert list(sample.indices) == expected
    assert all(f.shape == (64, 96, 3) and f.dtype == np.uint8 for f in sample.frames)
    assert len(sample.sha256) == 64 and not sample.truncated


def test_sample_video_uniform_fallback_on_a_still_clip(tmp_path: Path) -> None:
    still = [np.full((48, 64, 3), 90, np.uint8)] * 10
    sample = sample_video(write_video(tmp_path / "still.mp4", still), VideoSettings(frames=4))
    assert sample.selection == "uniform_fallback" and list(sample.indices) == uniform_indices(10, 4)


@pytest.mark.parametrize(("ext", "codec"), [("avi", "MJPG"), ("mkv", "XVID"), ("mov", "mp4v"), ("webm", "VP80")])
def test_other_containers(tmp_path: Path, ext: str, codec: str) -> None:
    path = tmp_path / f"clip.{ext}"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), 10, (96, 64))
    for frame in _moving_frames(6):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    sample = sample_video(path, VideoSettings(frames=3))
    assert sample.info.frame_count == 6 and len(sample.frames) == 3


def test_one_frame_video_works(tmp_path: Path) -> None:
    sample = sample_video(write_video(tmp_path / "one.mp4", _moving_frames(1)), VideoSettings(frames=60))
    assert sample.indices == (0,) and len(sample.frames) == 1


def test_limits_truncate_and_say_so(tmp_path: Path) -> None:
    path = write_video(tmp_path / "long.mp4", _moving_frames(20))
    sample = sample_video(path, VideoSettings(frames=4, max_frames=8))
    assert sample.truncated and sample.info.frame_count == 8 and max(sample.indices) < 8
    by_seconds = sample_video(path, VideoSettings(frames=4, max_seconds=1.0))  # 10 fps -> 10 frames
    assert by_seconds.truncated and by_seconds.info.frame_count == 10


def test_uniform_selection_setting(tmp_path: Path) -> None:
    sample = sample_video(write_video(tmp_path / "m.mp4", _moving_frames(10)),
                          VideoSettings(frames=3, selection="uniform"))
    assert sample.selection == "uniform" and list(sample.indices) == uniform_indices(10, 3)
    with pytest.raises(UdfdError, match="unknown frame selection"):
        sample_video(tmp_path / "m.mp4", VideoSettings(selection="best"))


def test_uniform_selection_converts_the_same_frames_it_skips_decoding(tmp_path: Path) -> None:
    path = write_video(tmp_path / "m.mp4", _moving_frames(10))
    sample = sample_video(path, VideoSettings(frames=3, selection="uniform"))
    cap = cv2.VideoCapture(str(path))
    every = [cv2.cvtColor(cap.read()[1], cv2.COLOR_BGR2RGB) for _ in range(10)]
    cap.release()
    assert sample.info.frame_count == 10
    for i, frame in zip(sample.indices, sample.frames, strict=True):
        np.testing.assert_array_equal(frame, every[i])


def test_flow_grey_from_luma_gives_the_grey_of_the_colour_frame() -> None:
    rng = np.random.default_rng(3)
    grey = cv2.GaussianBlur(rng.integers(0, 256, (60, 80), dtype=np.uint8), (0, 0), 2)
    luma = np.round(16 + grey.astype(np.float64) * 219 / 255).astype(np.uint8)  # limited range, as decoded
    roi = (10, 5, 70, 55)
    expected = flow_grey(np.dstack([grey] * 3), roi, 32)
    got = flow_grey_from_luma(luma, roi, 32)
    assert got.shape == (32, 32) and got.dtype == np.uint8
    assert np.abs(got.astype(int) - expected).max() <= 2


def _luma_for(monkeypatch: pytest.MonkeyPatch, path: Path) -> list[bool]:
    """Route this clip's pixel format through the luma path; the list records whether each call used it."""
    cap = cv2.VideoCapture(str(path))
    fmt = video_module._pixel_format(cap)
    cap.release()
    if not fmt:
        pytest.skip("this OpenCV build does not report the pixel format")
    monkeypatch.setattr(video_module, "GREY_PLANE_FORMATS", frozenset({fmt}))
    used: list[bool] = []
    original = video_module._sample_on_luma

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        out = original(*args, **kwargs)
        used.append(out is not None)
        return out

    monkeypatch.setattr(video_module, "_sample_on_luma", spy)
    return used


@pytest.mark.parametrize("max_frames", [1800, 8])
def test_luma_path_selects_what_the_colour_path_selects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        max_frames: int) -> None:
    bright = [f // 2 + 128 for f in _moving_frames(12)]  # far from mid-grey: the luma range must be expanded
    path = write_video(tmp_path / "moving.mp4", bright)
    settings = VideoSettings(frames=4, flow_threshold=0.5, flow_size=64, max_frames=max_frames)
    colour = sample_video(path, settings)
    used = _luma_for(monkeypatch, path)
    luma = sample_video(path, settings)
    assert used == [True]
    assert luma.indices == colour.indices and luma.selection == colour.selection == "optical_flow"
    assert luma.truncated == colour.truncated == (max_frames == 8)
    assert luma.info == colour.info
    np.testing.assert_allclose(luma.magnitudes, colour.magnitudes, atol=0.05 * float(colour.magnitudes.max()))
    for a, b in zip(luma.frames, colour.frames, strict=True):
        np.testing.assert_array_equal(a, b)  # the selected frames are converted exactly as before


def test_luma_path_falls_back_when_the_plane_does_not_match(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_video(tmp_path / "moving.mp4", _moving_frames(12))
    settings = VideoSettings(frames=4, flow_threshold=0.5, flow_size=64)
    colour = sample_video(path, settings)
    used = _luma_for(monkeypatch, path)
    monkeypatch.setattr(video_module, "LUMA_CHECK_TOLERANCE", -1.0)  # no luma plane can pass
    sample = sample_video(path, settings)
    assert used == [False]
    assert sample.indices == colour.indices
    np.testing.assert_array_equal(sample.magnitudes, colour.magnitudes)
    for a, b in zip(sample.frames, colour.frames, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("content", [b"", b"this is not a video at all\n" * 10, bytes(range(256)) * 64])
def test_bad_files_give_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(content)
    with pytest.raises(MediaError) as e:
        sample_video(path, VideoSettings())
    assert e.value.file == "clip.mp4"
    assert any(w in e.value.reason for w in ("empty", "not a readable video", "no video frames"))


def test_audio_only_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "voice.mp4"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.zeros(8000, np.int16).tobytes())
    with pytest.raises(MediaError, match="not a readable video|no video frames"):
        sample_video(path, VideoSettings())


def test_truncated_file_keeps_the_frames_it_has(tmp_path: Path) -> None:
    path = write_video(tmp_path / "cut.mp4", _moving_frames(30))
    data = path.read_bytes()
    cut = tmp_path / "cut_half.mp4"
    cut.write_bytes(data[: len(data) // 2])
    try:
        sample = sample_video(cut, VideoSettings(frames=4))
    except MediaError as e:  # a cut mp4 can lose its index (moov atom at the end): then a clear error
        assert "not a readable video" in e.reason or "no video frames" in e.reason
    else:
        assert 1 <= len(sample.frames) <= 4


def test_size_limit_and_missing_file(tmp_path: Path) -> None:
    path = write_video(tmp_path / "m.mp4", _moving_frames(4))
    with pytest.raises(MediaError, match="limit"):
        sample_video(path, VideoSettings(max_file_bytes=10))
    with pytest.raises(MediaError, match="cannot be read"):
        sample_video(tmp_path / "nope.mp4", VideoSettings())


def test_face_clip_has_a_face_track(tmp_path: Path, face_rgb: np.ndarray) -> None:
    from udfd.config import Settings
    from udfd.pipeline import lip_sequences, track_video_faces

    settings = replace(Settings(), video=VideoSettings(frames=6))
    sample = sample_video(write_video(tmp_path / "face.mp4", face_clip(face_rgb, 8)), settings.video)
    frame_faces, tracks, found = track_video_faces(sample.frames, settings)
    assert found[0] and len(tracks[0]) >= 5
    lips, mesh = lip_sequences(frame_faces, tracks[:1], found[:1], 64)
    assert lips[0].shape == (len(tracks[0]), 64, 64, 3) and lips[0].dtype == np.uint8
    assert mesh >= len(tracks[0]) - 1  # FaceMesh places the lips on a clear frontal face
