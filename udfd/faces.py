"""Face detection: image pixels -> margin-expanded square `FaceCrop`s.

Backends (MediaPipe BlazeFace, OpenCV Haar, OpenCV YuNet) implement the `FaceDetector` protocol and return raw
detections; `detect_faces` turns them into square crops that always lie inside the image (shifted, never padded
with black, see DESIGN.md "Padding is a cue"). Images that are already tight face crops are retried on a grey
canvas, and an image with no face at all comes back as one whole-image `FaceCrop` with `face_found=False`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from udfd.config import FaceSettings
from udfd.errors import ModelUnavailableError, UdfdError
from udfd.types import Box, FaceCrop, FaceSearch, Verdict

logger = logging.getLogger(__name__)

Landmarks = tuple[tuple[float, float], ...]
_SCORE_FLOOR = 0.3  # backends keep detections from here; detect_faces applies FaceSettings.min_confidence
_NMS_IOU = 0.3
_SECOND_BELOW = 0.5  # = FaceSettings.min_confidence: below it a full-range face would be dropped anyway
_CONTEXT_SIDE = 512  # the tight-crop retry works on a copy no larger than this, plus its grey border
_CONTEXT_GREY = 127
# Detectors only ever see a copy no larger than this: MediaPipe's OpenCV aborts the process (not an exception)
# on a side >= 32767, and its models look at 128-192 px anyway. udfd.media already decodes to Settings.work_side.
_DETECT_SIDE = 4096
# The tiled second pass (group photos): tiles start at this side and grow until FaceSettings.max_tiles cover the
# image; it runs only when no face, or several faces none of which is at least this share of the longer side, were
# found.
_TILE_SIDE = 384
_TILE_BIG_FACE = 0.25
_EDGE = 2  # px: a detection this close to a tile's inner edge is a cut face
_CONTAIN = 0.6  # merge_faces: a box this much inside another (intersection over the smaller) is a duplicate


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
    """Finds faces in an RGB uint8 image; returns raw (not margin-expanded) boxes, largest first.

    A backend may also offer `detect_all(pixels)`, a slower search that favours finding every face (MediaPipe:
    both of its models); the tiled second pass uses it when present.
    """

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
    """BlazeFace through `mp.solutions.face_detection`: the short-range model (0), then the full-range one (1) only
    when the first finds no face scoring at least `second_below`; `order` swaps them, `both=True` always runs both.
    Detections are merged with NMS.

    The full-range model misses most tight face crops and partly hidden background faces that the short-range one
    finds, and the short-range one misses small faces in wide shots. On 640 images of the dev sources the
    short-range-first cascade found the faces of both models but one (benchmarks/results/face_search.json) at
    about half the time; full-range first lost 8-14. A graph is stateful and not thread-safe, so each call borrows
    one from a pool per model (created on first use, at most `parallel` per model): no lock is held while a graph
    runs (MediaPipe releases the GIL inside), so two requests detect faces at once.
    """

    def __init__(self, *, score_floor: float = _SCORE_FLOOR, nms_iou: float = _NMS_IOU, both: bool = False,
                 second_below: float = _SECOND_BELOW, order: tuple[int, int] = (0, 1), parallel: int = 2) -> None:
        if parallel < 1 or sorted(order) != [0, 1]:
            raise ValueError(f"parallel must be >= 1 and order a permutation of (0, 1), got {parallel}, {order}")
        self.score_floor = score_floor
        self.second_below = second_below
        self.order = order
        self.nms_iou = nms_iou
        self.both = both
        self.parallel = parallel
        self._lock = threading.Lock()  # guards the pools' bookkeeping only, never a running graph
        self._free: dict[int, list[Any]] = {1: [], 0: []}  # model_selection -> idle graphs
        self._made: dict[int, int] = {1: 0, 0: 0}
        self._ready = threading.Condition(self._lock)
        self._generation = 0

    def _new_graph(self, selection: int) -> Any:
        try:
            import mediapipe as mp
        except ImportError as e:
            raise ModelUnavailableError("mediapipe is not installed; pip install mediapipe==0.10.21") from e
        return mp.solutions.face_detection.FaceDetection(model_selection=selection,
                                                         min_detection_confidence=self.score_floor)

    def _process(self, selection: int, image: np.ndarray) -> Any:
        """One graph of model `selection` on `image`, borrowed from its pool and given back afterwards."""
        with self._ready:
            while not self._free[selection] and self._made[selection] >= self.parallel:
                self._ready.wait()
            graph = self._free[selection].pop() if self._free[selection] else None
            self._made[selection] += graph is None
            generation = self._generation
        healthy = False
        try:
            if graph is None:
                graph = self._new_graph(selection)
            result = graph.process(image)
            healthy = True
            return result
        finally:
            with self._ready:
                if healthy and generation == self._generation:
                    self._free[selection].append(graph)
                else:  # it failed, or `close` ran meanwhile: do not give it back
                    if graph is not None:
                        with contextlib.suppress(Exception):
                            graph.close()
                    self._made[selection] -= 1
                self._ready.notify()

    def detect(self, pixels: np.ndarray) -> list[FaceCrop]:
        return self._detect(pixels, both=self.both)

    def detect_all(self, pixels: np.ndarray) -> list[FaceCrop]:
        """Both models on `pixels`, always (the tiled second pass looks for every face, small ones included)."""
        return self._detect(pixels, both=True)

    def _detect(self, pixels: np.ndarray, *, both: bool) -> list[FaceCrop]:
        image = np.ascontiguousarray(pixels)
        height, width = image.shape[:2]
        results = [self._process(self.order[0], image)]
        if both or not any(float(d.score[0]) >= self.second_below for d in results[0].detections or ()):
            results.append(self._process(self.order[1], image))
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
        """Release the idle MediaPipe graphs (one still running is closed when it finishes); a later `detect`
        creates them again."""
        with self._ready:
            self._generation += 1
            for selection, graphs in self._free.items():
                for graph in graphs:
                    graph.close()
                self._made[selection] -= len(graphs)
                graphs.clear()
            self._ready.notify_all()


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


def _detect_bounded(detector: FaceDetector, image: np.ndarray, *, thorough: bool = False) -> list[FaceCrop]:
    """`detector.detect` (with `thorough`, its `detect_all` if it has one) on a copy of `image` no larger than
    `_DETECT_SIDE`, boxes mapped back to `image`."""
    detect = getattr(detector, "detect_all", detector.detect) if thorough else detector.detect
    height, width = image.shape[:2]
    scale = _DETECT_SIDE / max(height, width)
    if scale >= 1.0:
        return detect(image)
    small = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA)
    fx, fy = width / small.shape[1], height / small.shape[0]
    faces = detect(small)
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


def tile_grid(width: int, height: int, *, min_side: int, max_tiles: int) -> list[Box]:
    """Overlapping square tiles covering a `width` x `height` image, for the tiled second pass. Pure.

    Tiles overlap by half their side, so that any face up to half a tile wide lies whole inside one. The side
    starts at `min_side` and grows (x1.25) until at most `max_tiles` tiles cover the image; no tiles (an empty
    list) when a tile would cover most of the image anyway (the first pass already saw it at that resolution).
    """
    if max_tiles < 1 or min_side < 1:
        return []
    side = min_side
    while True:
        if side * 1.5 > max(width, height):
            return []
        stride = side // 2
        xs = _starts(width, side, stride)
        ys = _starts(height, side, stride)
        if len(xs) * len(ys) <= max_tiles:
            return [(x, y, min(x + side, width), min(y + side, height)) for y in ys for x in xs]
        side = int(side * 1.25) + 1


def _starts(length: int, side: int, stride: int) -> list[int]:
    """Tile origins along one axis: every `stride`, the last one flush with the far edge."""
    if length <= side:
        return [0]
    starts = list(range(0, length - side, stride))
    return [*starts, length - side]


def _tiling_helps(faces: list[FaceCrop], width: int, height: int, settings: FaceSettings) -> bool:
    """Whether the tiled pass can find faces the first pass missed: no face was found, or a group of them (two or
    more, fewer than `max_faces`) none of which is large. One face, or a large one (a portrait, a close-up, a
    person in a wide shot), is taken as the whole answer: tiling there would cost up to `max_tiles` detector runs
    for nothing on most photos. `tile_grid` then decides whether the image is large enough to tile."""
    if settings.max_tiles < 1 or len(faces) == 1 or len(faces) >= settings.max_faces:
        return False
    largest = max((max(f.box[2] - f.box[0], f.box[3] - f.box[1]) for f in faces), default=0)
    return largest < max(width, height) * _TILE_BIG_FACE


def _detect_tiled(detector: FaceDetector, image: np.ndarray, tiles: Sequence[Box]) -> list[FaceCrop]:
    """Detect in each tile at its own resolution; boxes mapped back to `image`. A detection touching a tile's
    inner edge is dropped: that face is cut there, and lies whole in an overlapping tile."""
    height, width = image.shape[:2]
    boxes, scores, points = [], [], []
    for x0, y0, x1, y1 in tiles:
        for face in _detect_bounded(detector, np.ascontiguousarray(image[y0:y1, x0:x1]), thorough=True):
            bx0, by0, bx1, by1 = face.box
            cut = ((bx0 <= _EDGE and x0 > 0) or (by0 <= _EDGE and y0 > 0)
                   or (bx1 >= x1 - x0 - _EDGE and x1 < width) or (by1 >= y1 - y0 - _EDGE and y1 < height))
            if cut:
                continue
            boxes.append((bx0 + x0, by0 + y0, bx1 + x0, by1 + y0))
            scores.append(face.confidence)
            points.append(tuple((x + x0, y + y0) for x, y in face.landmarks))
    return _to_faces(image, boxes, scores, points)


def merge_faces(faces: Sequence[FaceCrop], *, iou: float = _NMS_IOU, contain: float = _CONTAIN) -> list[FaceCrop]:
    """Drop duplicates among detections from several passes, highest confidence first: a face whose box overlaps
    a kept one by IoU above `iou`, or lies mostly inside it or around it (intersection over the smaller box
    above `contain`). Pure; the kept faces come back largest first."""
    order = sorted(faces, key=lambda f: f.confidence, reverse=True)
    kept: list[FaceCrop] = []
    for face in order:
        if not any(_overlap(face.box, k.box) > iou or _containment(face.box, k.box) > contain for k in kept):
            kept.append(face)
    return sorted(kept, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), reverse=True)


def _intersection(a: Box, b: Box) -> float:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def _area(box: Box) -> float:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def _overlap(a: Box, b: Box) -> float:
    inter = _intersection(a, b)
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def _containment(a: Box, b: Box) -> float:
    smaller = min(_area(a), _area(b))
    return _intersection(a, b) / smaller if smaller > 0 else 0.0


def search_faces(pixels: np.ndarray, settings: FaceSettings, *, detector: FaceDetector | None = None,
                 tiled: bool = True) -> FaceSearch:
    """Find faces in an RGB uint8 image: square crops, largest face first, and how the search went.

    The first pass looks at the whole image (a copy no larger than 4096 px); an image that is already a tight
    face crop is retried on a grey canvas. With `tiled`, a large image in which the first pass found no face, or
    several but fewer than `settings.max_faces` and no large one (a group photo, a crowd), gets a second pass over
    overlapping tiles at a higher effective resolution (at most `settings.max_tiles`, each searched with the
    backend's `detect_all` when it has one); the detections of both passes are merged (`merge_faces`). At most
    `settings.max_faces` faces with confidence >= `settings.min_confidence` are kept, the largest;
    `FaceSearch.found` says how many there were before that cap.

    Each crop's `box` is the detection made square with `settings.margin` and shifted inside the image; its
    `landmarks` are in original image coordinates. Without any face the result is one `FaceCrop` of the whole
    image with `face_found=False` and confidence 0.0, so the caller can still score it. `pixels` is not modified.
    """
    image = _check_rgb(pixels)
    if settings.max_faces < 1:
        raise UdfdError(f"max_faces must be at least 1 (UDFD_MAX_FACES), got {settings.max_faces}")
    height, width = image.shape[:2]
    detector = detector if detector is not None else get_face_detector(settings)

    def confident(faces: list[FaceCrop]) -> list[FaceCrop]:
        return [f for f in faces if f.confidence >= settings.min_confidence]

    found = confident(_detect_bounded(detector, image)) or confident(_detect_in_context(detector, image))
    tiles = tile_grid(width, height, min_side=_TILE_SIDE, max_tiles=settings.max_tiles) \
        if tiled and _tiling_helps(found, width, height, settings) else []
    if tiles:
        found = merge_faces([*found, *confident(_detect_tiled(detector, image, tiles))])
        logger.debug("tiled pass over %d tiles of a %dx%d image: %d faces", len(tiles), width, height, len(found))
    found.sort(key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), reverse=True)
    if not found:
        logger.debug("no face found in a %dx%d image; using the whole image", width, height)
        whole = FaceCrop(image.copy(), (0, 0, width, height), 0.0, face_found=False)
        return FaceSearch(crops=(whole,), found=0, tiles=len(tiles))
    crops = []
    for face in found[: settings.max_faces]:
        box = square_box(face.box, margin=settings.margin, width=width, height=height)
        crops.append(FaceCrop(crop(image, box), box, face.confidence, True, face.landmarks))
    return FaceSearch(crops=tuple(crops), found=len(found), tiles=len(tiles))


def detect_faces(pixels: np.ndarray, settings: FaceSettings, *, detector: FaceDetector | None = None,
                 tiled: bool = True) -> list[FaceCrop]:
    """The crops of `search_faces`: square face crops, largest first, or one whole-image `FaceCrop` with
    `face_found=False` when there is no face."""
    return list(search_faces(pixels, settings, detector=detector, tiled=tiled).crops)
