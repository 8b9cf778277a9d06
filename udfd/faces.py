"""Face detection: image pixels -> margin-expanded square `FaceCrop`s.

Backends (MediaPipe BlazeFace, OpenCV Haar, OpenCV YuNet) implement the `FaceDetector` protocol and return raw
detections; `detect_faces` turns them into square crops that always lie inside the image (shifted, never padded
with black, see DESIGN.md "Padding is a cue"). Images that are already tight face crops are retried on a grey
canvas, and an image with no face at all comes back as one whole-image `FaceCrop` with `face_found=False`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from udfd.config import FaceSettings
from udfd.errors import ModelUnavailableError, UdfdError
from udfd.types import Box, FaceCrop, Verdict

logger = logging.getLogger(__name__)

Landmarks = tuple[tuple[float, float], ...]
_SCORE_FLOOR = 0.3  # backends keep detections from here; detect_faces applies FaceSettings.min_confidence
_NMS_IOU = 0.3
_CONTEXT_SIDE = 512  # the tight-crop retry works on a copy no larger than this, plus its grey border
_CONTEXT_GREY = 127
# Detectors only ever see a copy no larger than this: MediaPipe's OpenCV aborts the process (not an exception)
# on a side >= 32767, and its models look at 128-192 px anyway. udfd.media already decodes to Settings.work_side.
_DETECT_SIDE = 4096


def square_box(box: Box, *, margin: float, width: int, height: int) -> Box:
    """Expand `box` to a square whose side is the longer box side plus `margin` of it on each side.

    The square is shifted (not cropped, not padded) so it lies inside a `width` x `height` image; a square longer
    than the image's short side shrinks to that side.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin)
    side_px = int(min(max(round(side), 1), width, height))
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    left = int(min(max(round(cx - side_px / 2.0), 0), width - side_px))
    top = int(min(max(round(cy - side_px / 2.0), 0), height - side_px))
    return (left, top, left + side_px, top + side_px)


def scale_box(box: Box, src: tuple[int, int], dst: tuple[int, int]) -> Box:
    """`box` in an image of size `src` (width, height) -> the same region in an image of size `dst`, clipped to
    it and at least one pixel wide. Pure."""
    (sw, sh), (dw, dh) = src, dst
    if (sw, sh) == (dw, dh):
        return box
    fx, fy = dw / sw, dh / sh
    x0 = min(max(round(box[0] * fx), 0), dw - 1)
    y0 = min(max(round(box[1] * fy), 0), dh - 1)
    x1 = min(max(round(box[2] * fx), x0 + 1), dw)
    y1 = min(max(round(box[3] * fy), y0 + 1), dh)
    return (x0, y0, x1, y1)


def verdict_boxes(verdict: Verdict, pixels: np.ndarray) -> list[Box]:
    """The boxes of `verdict` (in the file's pixels) on `pixels`, the possibly reduced image it was computed on."""
    height, width = pixels.shape[:2]
    src = (verdict.width, verdict.height) if verdict.width > 0 and verdict.height > 0 else (width, height)
    return [scale_box(face.box, src, (width, height)) for face in verdict.faces]


def crop(pixels: np.ndarray, box: Box) -> np.ndarray:
    """Return a contiguous copy of `pixels[y0:y1, x0:x1]`; the box must lie inside the image."""
    x0, y0, x1, y1 = box
    height, width = pixels.shape[:2]
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(f"box {box} is empty or outside a {width}x{height} image")
    return np.ascontiguousarray(pixels[y0:y1, x0:x1]).copy()


def nms(boxes: np.ndarray | Sequence[Sequence[float]], scores: np.ndarray | Sequence[float], iou: float) -> list[int]:
    """Greedy non-maximum suppression; returns the indices kept, highest score first."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(b) != len(s):
        raise ValueError(f"{len(b)} boxes but {len(s)} scores")
    areas = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    order = np.argsort(-s, kind="stable")
    kept: list[int] = []
    while order.size:
        i, rest = int(order[0]), order[1:]
        kept.append(i)
        w = np.clip(np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]), 0, None)
        h = np.clip(np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]), 0, None)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[overlap <= iou]
    return kept


@runtime_checkable
class FaceDetector(Protocol):
    """Finds faces in an RGB uint8 image; returns raw (not margin-expanded) boxes, largest first."""

    def detect(self, pixels: np.ndarray) -> list[FaceCrop]: ...


def _to_faces(
    pixels: np.ndarray, boxes: Sequence[Sequence[float]], scores: Sequence[float], landmarks: Sequence[Landmarks]
) -> list[FaceCrop]:
    """Clip float boxes to the image, drop empty ones, sort by area (largest first)."""
    height, width = pixels.shape[:2]
    faces = []
    for (x0, y0, x1, y1), score, points in zip(boxes, scores, landmarks, strict=True):
        x0, y0, x1, y1 = (round(float(v)) for v in (x0, y0, x1, y1))
        box = (max(x0, 0), max(y0, 0), min(x1, width), min(y1, height))
        if box[2] > box[0] and box[3] > box[1]:
            faces.append(FaceCrop(crop(pixels, box), box, float(score), True, tuple(points)))
    return sorted(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), reverse=True)


class MediaPipeFaceDetector:
    """BlazeFace through `mp.solutions.face_detection`, full-range and short-range models merged with NMS.

    The full-range model misses most tight face crops that the short-range one finds, and the short-range one
    misses small faces in wide shots, so both run. Graphs are created on first use and are not thread-safe:
    one lock serialises them.
    """

    def __init__(self, *, score_floor: float = _SCORE_FLOOR, nms_iou: float = _NMS_IOU) -> None:
        self.score_floor = score_floor
        self.nms_iou = nms_iou
        self._lock = threading.Lock()
        self._graphs: list[Any] | None = None

    def _ensure_graphs(self) -> list[Any]:
        if self._graphs is None:
            try:
                import mediapipe as mp
            except ImportError as e:
                raise ModelUnavailableError("mediapipe is not installed; pip install mediapipe==0.10.21") from e
            solution = mp.solutions.face_detection
            self._graphs = [
                solution.FaceDetection(model_selection=sel, min_detection_confidence=self.score_floor) for sel in (1, 0)
            ]
        return self._graphs

    def detect(self, pixels: np.ndarray) -> list[FaceCrop]:
        image = np.ascontiguousarray(pixels)
        height, width = image.shape[:2]
        with self._lock:
            results = [graph.process(image) for graph in self._ensure_graphs()]
        boxes, scores, points = [], [], []
        for result in results:
            for det in result.detections or ():
                rel = det.location_data.relative_bounding_box
                x0, y0 = rel.xmin * width, rel.ymin * height
                boxes.append((x0, y0, x0 + rel.width * width, y0 + rel.height * height))
                scores.append(float(det.score[0]))
                points.append(tuple((k.x * width, k.y * height) for k in det.location_data.relative_keypoints))
        keep = nms(boxes, scores, self.nms_iou)
        return _to_faces(image, [boxes[i] for i in keep], [scores[i] for i in keep], [points[i] for i in keep])

    def close(self) -> None:
        """Release the MediaPipe graphs; a later `detect` creates them again."""
        with self._lock:
            for graph in self._graphs or ():
                graph.close()
            self._graphs = None


class HaarFaceDetector:
    """OpenCV's frontal-face Haar cascade. It gives no calibrated score: every detection has confidence 1.0."""

    def __init__(self, *, cascade: str = "haarcascade_frontalface_default.xml", min_neighbors: int = 5) -> None:
        self.cascade_path = Path(cv2.data.haarcascades) / cascade
        self.min_neighbors = min_neighbors
        self._lock = threading.Lock()
        self._cascade: cv2.CascadeClassifier | None = None

    def detect(self, pixels: np.ndarray) -> list[FaceCrop]:
        gray = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)
        min_side = max(24, min(gray.shape) // 10)
        with self._lock:
            if self._cascade is None:
                cascade = cv2.CascadeClassifier(str(self.cascade_path))
                if cascade.empty():
                    raise ModelUnavailableError(f"Haar cascade could not be loaded from {self.cascade_path}")
                self._cascade = cascade
            rects = self._cascade.detectMultiScale(
                gray, scaleFactor=1.1, minNeighbors=self.min_neighbors, minSize=(min_side, min_side)
            )
        boxes = [(x, y, x + w, y + h) for x, y, w, h in np.asarray(rects).reshape(-1, 4).tolist()]
        return _to_faces(pixels, boxes, [1.0] * len(boxes), [()] * len(boxes))


class YuNetFaceDetector:
    """OpenCV's YuNet (`cv2.FaceDetectorYN`) from an ONNX file; the net is loaded on first use."""

    def __init__(
        self, model_path: str | Path | None, *, score_floor: float = _SCORE_FLOOR, nms_iou: float = _NMS_IOU
    ) -> None:
        if not model_path or not Path(model_path).is_file():
            raise ModelUnavailableError(
                f"YuNet face detector model not found at {model_path!r}: set UDFD_YUNET_MODEL to the path of a "
                "YuNet ONNX file (e.g. face_detection_yunet_2023mar.onnx) or choose another face backend"
            )
        self.model_path = Path(model_path)
        self.score_floor = score_floor
        self.nms_iou = nms_iou
        self._lock = threading.Lock()
        self._net: Any = None

    def detect(self, pixels: np.ndarray) -> list[FaceCrop]:
        bgr = cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2BGR)
        height, width = bgr.shape[:2]
        with self._lock:
            if self._net is None:
                try:
                    self._net = cv2.FaceDetectorYN.create(
                        str(self.model_path), "", (width, height), self.score_floor, self.nms_iou, 100
                    )
                except cv2.error as e:
                    raise ModelUnavailableError(f"YuNet model {self.model_path} could not be loaded: {e}") from e
            self._net.setInputSize((width, height))
            _, rows = self._net.detect(bgr)
        rows = np.zeros((0, 15), np.float32) if rows is None else rows
        boxes = [(r[0], r[1], r[0] + r[2], r[1] + r[3]) for r in rows.tolist()]
        points = [tuple((r[i], r[i + 1]) for i in range(4, 14, 2)) for r in rows.tolist()]
        return _to_faces(pixels, boxes, rows[:, 14].tolist(), points)


_BACKENDS: dict[str, Callable[[FaceSettings], FaceDetector]] = {
    "mediapipe": lambda settings: MediaPipeFaceDetector(),
    "haar": lambda settings: HaarFaceDetector(),
    "yunet": lambda settings: YuNetFaceDetector(settings.yunet_model),
}
_DETECTORS: dict[tuple[str, str | None], FaceDetector] = {}
_DETECTORS_LOCK = threading.Lock()


def get_face_detector(settings: FaceSettings) -> FaceDetector:
    """Return the shared detector for `settings.backend` (one per backend and model path)."""
    factory = _BACKENDS.get(settings.backend)
    if factory is None:
        raise UdfdError(f"unknown face backend {settings.backend!r}; valid backends: {', '.join(sorted(_BACKENDS))}")
    key = (settings.backend, settings.yunet_model)
    with _DETECTORS_LOCK:
        if key not in _DETECTORS:
            _DETECTORS[key] = factory(settings)
        return _DETECTORS[key]


def _check_rgb(pixels: np.ndarray) -> np.ndarray:
    if not isinstance(pixels, np.ndarray) or pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        shape = getattr(pixels, "shape", None)
        raise ValueError(f"expected an RGB uint8 image of shape (H, W, 3), got {shape} {getattr(pixels, 'dtype', '')}")
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ValueError(f"empty image of shape {pixels.shape}")
    return pixels


def _detect_bounded(detector: FaceDetector, image: np.ndarray) -> list[FaceCrop]:
    """`detector.detect` on a copy of `image` no larger than `_DETECT_SIDE`, boxes mapped back to `image`."""
    height, width = image.shape[:2]
    scale = _DETECT_SIDE / max(height, width)
    if scale >= 1.0:
        return detector.detect(image)
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA)
    fx, fy = width / small.shape[1], height / small.shape[0]
    faces = detector.detect(small)
    boxes = [(f.box[0] * fx, f.box[1] * fy, f.box[2] * fx, f.box[3] * fy) for f in faces]
    points = [tuple((x * fx, y * fy) for x, y in f.landmarks) for f in faces]
    return _to_faces(image, boxes, [f.confidence for f in faces], points)


def _detect_in_context(detector: FaceDetector, image: np.ndarray) -> list[FaceCrop]:
    """Detect on a small copy of `image` centred on a grey canvas, boxes mapped back to `image`.

    An image that is already a tight face crop shows a face too large for the detectors' anchors; with
    surrounding context the same face is found.
    """
    height, width = image.shape[:2]
    scale = min(1.0, _CONTEXT_SIDE / max(height, width))
    small = (
        image
        if scale == 1.0
        else cv2.resize(
            image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
        )
    )
    pad = max(small.shape[:2]) // 2
    canvas = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(_CONTEXT_GREY,) * 3)

    def back(x: float, y: float) -> tuple[float, float]:
        return (x - pad) / scale, (y - pad) / scale

    boxes, scores, points = [], [], []
    for face in detector.detect(canvas):
        x0, y0, x1, y1 = face.box
        boxes.append((*back(x0, y0), *back(x1, y1)))
        scores.append(face.confidence)
        points.append(tuple(back(x, y) for x, y in face.landmarks))
    return _to_faces(image, boxes, scores, points)


def detect_faces(pixels: np.ndarray, settings: FaceSettings, *, detector: FaceDetector | None = None) -> list[FaceCrop]:
    """Find faces in an RGB uint8 image and return square crops, largest face first.

    Each crop's `box` is the detection made square with `settings.margin` and shifted inside the image; its
    `landmarks` are in original image coordinates. At most `settings.max_faces` faces with confidence
    >= `settings.min_confidence` are kept. Without any face the result is one `FaceCrop` of the whole image
    with `face_found=False` and confidence 0.0, so the caller can still score it. `pixels` is not modified.
    """
    image = _check_rgb(pixels)
    height, width = image.shape[:2]
    detector = detector if detector is not None else get_face_detector(settings)

    def select(faces: list[FaceCrop]) -> list[FaceCrop]:
        kept = [f for f in faces if f.confidence >= settings.min_confidence]
        kept.sort(key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), reverse=True)
        return kept[: settings.max_faces]

    found = select(_detect_bounded(detector, image)) or select(_detect_in_context(detector, image))
    if not found:
        logger.debug("no face found in a %dx%d image; using the whole image", width, height)
        return [FaceCrop(image.copy(), (0, 0, width, height), 0.0, face_found=False)]
    crops = []
    for face in found:
        box = square_box(face.box, margin=settings.margin, width=width, height=height)
        crops.append(FaceCrop(crop(image, box), box, face.confidence, True, face.landmarks))
    return crops
