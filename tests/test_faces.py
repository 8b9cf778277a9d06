"""Tests for udfd.faces: pure box helpers, the detect_faces contract, and real-face integration checks."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from udfd.config import FaceSettings
from udfd.errors import ModelUnavailableError, UdfdError
from udfd.faces import (
    FaceDetector,
    HaarFaceDetector,
    MediaPipeFaceDetector,
    YuNetFaceDetector,
    crop,
    detect_faces,
    get_face_detector,
    nms,
    square_box,
)
from udfd.types import FaceCrop

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FACES = DATA / "faces"
LFW = FACES / "real" / "lfw"
WEIGHTS = DATA.parent / "weights" / "yunet"
# yunet_n_dynamic.onnx does not load in OpenCV 4.11 (dynamic "Shape" node); the fixed-size export accepts any input
# size there, so it is the one the detection tests use.
YUNET = WEIGHTS / "yunet_s_640_640.onnx"
YUNET_DYNAMIC = WEIGHTS / "yunet_n_dynamic.onnx"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}

needs_data = pytest.mark.skipif(not FACES.is_dir(), reason=f"dev face data not found at {FACES}")


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _lfw(n: int) -> list[np.ndarray]:
    return [_read_rgb(p) for p in sorted(LFW.glob("*.jpg"))[:n]]


class StubDetector:
    """Returns fixed raw detections, whatever the image."""

    def __init__(self, faces: list[tuple[tuple[int, int, int, int], float]]) -> None:
        self.faces = faces
        self.calls = 0

    def detect(self, pixels: np.ndarray) -> list[FaceCrop]:
        self.calls += 1
        return [FaceCrop(crop(pixels, box), box, conf) for box, conf in self.faces]


@pytest.fixture(scope="module")
def mediapipe_detector() -> Iterator[MediaPipeFaceDetector]:
    detector = MediaPipeFaceDetector()
    yield detector
    detector.close()


# --- square_box / crop / nms ------------------------------------------------------------------------------------


def test_square_box_applies_margin_on_each_side() -> None:
    # longer side 50, margin 0.2 on each side -> 70, centred on (125, 120)
    assert square_box((100, 100, 150, 140), margin=0.2, width=400, height=400) == (90, 85, 160, 155)
    assert square_box((100, 100, 150, 140), margin=0.0, width=400, height=400) == (100, 95, 150, 145)


def test_square_box_shifts_inside_instead_of_padding() -> None:
    # the square would start at x=-10, y=0: it moves right and keeps its size
    assert square_box((0, 10, 50, 60), margin=0.2, width=200, height=200) == (0, 0, 70, 70)
    # same at the far corner
    assert square_box((150, 150, 200, 200), margin=0.2, width=200, height=200) == (130, 130, 200, 200)


def test_square_box_larger_than_image_shrinks_to_short_side() -> None:
    assert square_box((0, 0, 224, 224), margin=0.3, width=224, height=224) == (0, 0, 224, 224)
    x0, y0, x1, y1 = square_box((100, 20, 300, 180), margin=0.2, width=640, height=200)
    assert (y0, y1) == (0, 200) and x1 - x0 == 200 and x0 >= 0 and x1 <= 640


def test_square_box_tiny_image() -> None:
    assert square_box((2, 1, 8, 5), margin=0.2, width=10, height=6) == (2, 0, 8, 6)
    assert square_box((0, 0, 1, 1), margin=0.2, width=1, height=1) == (0, 0, 1, 1)


def test_square_box_is_square_and_inside_for_random_boxes() -> None:
    rng = np.random.default_rng(0)
    for _ in range(500):
        width, height = (int(v) for v in rng.integers(1, 400, size=2))
        x0, x1 = sorted(int(v) for v in rng.integers(0, width + 1, size=2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, height + 1, size=2))
        margin = float(rng.uniform(0, 0.5))
        bx0, by0, bx1, by1 = square_box((x0, y0, x1, y1), margin=margin, width=width, height=height)
        side = bx1 - bx0
        assert side == by1 - by0 and side >= 1
        assert bx0 >= 0 and bx1 <= width and by0 >= 0 and by1 <= height
        assert side >= min(max(x1 - x0, y1 - y0), width, height)


def test_square_box_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="margin"):
        square_box((0, 0, 10, 10), margin=-0.1, width=100, height=100)
    with pytest.raises(ValueError, match="image size"):
        square_box((0, 0, 10, 10), margin=0.2, width=0, height=100)


def test_crop_returns_a_copy() -> None:
    image = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    out = crop(image, (1, 2, 4, 5))
    assert out.shape == (3, 3, 3)
    np.testing.assert_array_equal(out, image[2:5, 1:4])
    assert not np.shares_memory(out, image)
    with pytest.raises(ValueError, match="outside"):
        crop(image, (0, 0, 7, 5))


def test_nms_keeps_best_of_overlapping_and_separate_boxes() -> None:
    boxes = [(0, 0, 10, 10), (1, 1, 11, 11), (50, 50, 60, 60), (0, 0, 10, 9)]
    scores = [0.8, 0.9, 0.5, 0.3]
    assert nms(boxes, scores, 0.3) == [1, 2]
    assert nms(boxes, scores, 0.99) == [1, 0, 2, 3]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5) == []


def test_nms_threshold_is_exclusive() -> None:
    # IoU of these two is exactly 0.5: suppressed only above the threshold
    boxes = [(0, 0, 10, 10), (0, 0, 10, 5)]
    assert nms(boxes, [1.0, 0.5], 0.5) == [0, 1]
    assert nms(boxes, [1.0, 0.5], 0.49) == [0]


# --- detect_faces contract with a stub detector -----------------------------------------------------------------


def test_detect_faces_squares_filters_and_sorts() -> None:
    image = np.full((300, 400, 3), 90, np.uint8)
    stub = StubDetector([((10, 10, 30, 30), 0.9), ((100, 100, 200, 220), 0.8), ((300, 50, 340, 90), 0.4)])
    faces = detect_faces(image, FaceSettings(margin=0.1, min_confidence=0.5), detector=stub)
    assert [f.confidence for f in faces] == [0.8, 0.9]  # largest first, 0.4 dropped
    for face in faces:
        x0, y0, x1, y1 = face.box
        assert face.face_found and x1 - x0 == y1 - y0
        assert face.pixels.shape == (y1 - y0, x1 - x0, 3)
    assert faces[0].box == (78, 88, 222, 232)  # longer side 120 * 1.2 = 144, centred on (150, 160)
    assert len(detect_faces(image, FaceSettings(max_faces=1), detector=stub)) == 1


def test_detect_faces_without_face_returns_whole_image() -> None:
    image = np.random.default_rng(1).integers(0, 256, size=(120, 200, 3), dtype=np.uint8)
    stub = StubDetector([])
    faces = detect_faces(image, FaceSettings(), detector=stub)
    assert len(faces) == 1 and stub.calls == 2  # direct, then the tight-crop retry
    face = faces[0]
    assert not face.face_found and face.confidence == 0.0 and face.box == (0, 0, 200, 120)
    np.testing.assert_array_equal(face.pixels, image)
    assert not np.shares_memory(face.pixels, image)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((10, 10, 3), np.float32),
        np.zeros((0, 10, 3), np.uint8),
    ],
)
def test_detect_faces_rejects_non_rgb_uint8(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="image"):
        detect_faces(bad, FaceSettings(), detector=StubDetector([]))


def test_get_face_detector_caches_and_rejects_unknown_backends() -> None:
    first = get_face_detector(FaceSettings(backend="haar"))
    assert isinstance(first, FaceDetector) and first is get_face_detector(FaceSettings(backend="haar"))
    with pytest.raises(UdfdError, match=r"haar.*mediapipe.*yunet"):
        get_face_detector(FaceSettings(backend="dlib"))


@pytest.mark.parametrize("path", [None, "/nonexistent/yunet.onnx"])
def test_yunet_missing_model_names_the_setting(path: str | None) -> None:
    with pytest.raises(ModelUnavailableError, match="UDFD_YUNET_MODEL"):
        get_face_detector(FaceSettings(backend="yunet", yunet_model=path))


# --- real detectors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["blank", "noise"])
def test_mediapipe_finds_no_face_in_blank_or_noise(kind: str, mediapipe_detector: MediaPipeFaceDetector) -> None:
    rng = np.random.default_rng(2)
    image = np.full((240, 320, 3), 200, np.uint8) if kind == "blank" else rng.integers(0, 256, (240, 320, 3), np.uint8)
    faces = detect_faces(image, FaceSettings(), detector=mediapipe_detector)
    assert len(faces) == 1
    assert not faces[0].face_found and faces[0].box == (0, 0, 320, 240)


def _sample_sources(n: int, seed: int) -> list[tuple[str, Path]]:
    """`n` images spread evenly over every real and fake source; small sources give all they have."""
    rng = random.Random(seed)
    sources = {
        f"{d.parent.name}/{d.name}": sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for d in sorted(FACES.glob("*/*"))
        if d.is_dir()
    }
    picked: list[tuple[str, Path]] = []
    remaining = n
    by_size = sorted(sources, key=lambda s: len(sources[s]))
    for i, name in enumerate(by_size):
        take = min(remaining // (len(by_size) - i), len(sources[name]))
        picked += [(name, p) for p in rng.sample(sources[name], take)]
        remaining -= take
    return picked


@pytest.mark.integration
@needs_data
def test_mediapipe_finds_faces_in_real_and_fake_crops(mediapipe_detector: MediaPipeFaceDetector) -> None:
    sample = _sample_sources(200, seed=0)
    assert len(sample) == 200
    total, found = Counter(), Counter()
    for source, path in sample:
        faces = detect_faces(_read_rgb(path), FaceSettings(), detector=mediapipe_detector)
        total[source] += 1
        found[source] += faces[0].face_found
    rate = sum(found.values()) / len(sample)
    per_source = ", ".join(f"{s} {found[s]}/{total[s]}" for s in sorted(total))
    assert rate >= 0.95, f"face found in {rate:.1%} of {len(sample)} crops: {per_source}"


@pytest.mark.integration
@needs_data
def test_mediapipe_finds_several_faces_side_by_side(mediapipe_detector: MediaPipeFaceDetector) -> None:
    canvas = np.full((400, 900, 3), 128, np.uint8)
    regions = []
    for i, face in enumerate(_lfw(3)):
        x, y = 25 + 300 * i, 75
        canvas[y : y + 250, x : x + 250] = face
        regions.append((x, y, x + 250, y + 250))
    faces = [f for f in detect_faces(canvas, FaceSettings(), detector=mediapipe_detector) if f.face_found]
    assert len(faces) >= 3, [f.box for f in faces]
    hits = set()
    for face in faces:
        x0, y0, x1, y1 = face.box
        assert 0 <= x0 < x1 <= 900 and 0 <= y0 < y1 <= 400
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        hits |= {i for i, (rx0, ry0, rx1, ry1) in enumerate(regions) if rx0 <= cx < rx1 and ry0 <= cy < ry1}
    assert hits == {0, 1, 2}, [f.box for f in faces]


@pytest.mark.integration
@needs_data
def test_haar_finds_a_face_in_lfw() -> None:
    faces = detect_faces(_lfw(1)[0], FaceSettings(backend="haar"), detector=HaarFaceDetector())
    assert faces[0].face_found and faces[0].confidence == 1.0


@pytest.mark.integration
@needs_data
@pytest.mark.skipif(not YUNET.is_file(), reason=f"YuNet weights not found at {YUNET}")
def test_yunet_finds_a_face_with_landmarks() -> None:
    image = _lfw(1)[0]
    faces = detect_faces(
        image, FaceSettings(backend="yunet", yunet_model=str(YUNET)), detector=YuNetFaceDetector(YUNET)
    )
    assert faces[0].face_found and faces[0].confidence >= 0.5
    assert len(faces[0].landmarks) == 5


@pytest.mark.integration
@pytest.mark.skipif(not YUNET_DYNAMIC.is_file(), reason=f"YuNet weights not found at {YUNET_DYNAMIC}")
def test_yunet_dynamic_export_loads_or_fails_clearly() -> None:
    detector = YuNetFaceDetector(YUNET_DYNAMIC)
    image = np.zeros((64, 64, 3), np.uint8)
    if int(cv2.__version__.split(".")[0]) < 5:  # OpenCV 4 cannot import its dynamic "Shape" node
        with pytest.raises(ModelUnavailableError, match="could not be loaded"):
            detector.detect(image)
    else:
        assert detector.detect(image) == []


@pytest.mark.integration
@needs_data
@pytest.mark.parametrize("backend", ["mediapipe", "haar", "yunet"])
def test_detection_does_not_mutate_input(backend: str) -> None:
    if backend == "yunet" and not YUNET.is_file():
        pytest.skip(f"YuNet weights not found at {YUNET}")
    image = _lfw(1)[0].copy()
    image.flags.writeable = False
    before = image.copy()
    faces = detect_faces(image, FaceSettings(backend=backend, yunet_model=str(YUNET)))
    np.testing.assert_array_equal(image, before)
    assert all(not np.shares_memory(f.pixels, image) for f in faces)


@pytest.mark.integration
@needs_data
def test_mediapipe_is_thread_safe(mediapipe_detector: MediaPipeFaceDetector) -> None:
    images = _lfw(8)

    def run(image: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
        return [(f.box, f.confidence) for f in detect_faces(image, FaceSettings(), detector=mediapipe_detector)]

    sequential = [run(im) for im in images]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(run, images * 4))
    assert concurrent == sequential * 4
