"""Video decoding and frame selection.

`sample_video` is the edge: it is the only place that opens user video files. It reads the clip once,
front to back, measuring motion between consecutive frames (Farneback optical flow on a small grey copy of
the face region) and keeping only the frames that selection can still pick, so memory stays bounded whatever
the clip's length. For pixel formats whose conversion to colour costs more than decoding (GREY_PLANE_FORMATS)
motion is measured on the decoded luma plane instead, and a second reader converts only the selected frames.
Everything else here is pure: arrays in, arrays out.

Selection follows the facial-dynamics report: mean flow magnitude M̄ per consecutive pair, keep frames with
M̄ > θ, take the top K by M̄ in temporal order; when fewer than K frames pass, fall back to K frames spread
uniformly over the clip and say so.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from udfd.config import VideoSettings
from udfd.errors import MediaError, UdfdError
from udfd.media import check_dimensions
from udfd.types import Box

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".avi", ".mov", ".webm", ".mkv", ".m4v", ".mpg", ".mpeg"})
Selection = Literal["optical_flow", "uniform_fallback", "uniform"]
# Codec pixel formats (OpenCV's FOURCC of the decoded frames) whose first plane is full-size 8-bit luma and whose
# conversion to BGR has no fast path: FaceForensics++ clips are yuv444p, where decoding a 1280x720 frame took
# 1.2 ms and converting it to BGR 3.5 ms (2 cores). Motion is then measured on the luma plane (OpenCV's raw
# mode) and only the selected frames are converted; yuv420p (I420) converts cheaply and keeps one reader.
GREY_PLANE_FORMATS: frozenset[str] = frozenset({"444P"})
# Mean |grey from luma - grey from BGR| on frame 0 above which the luma path is not used. Measured: 0.25 on
# yuv444p clips, 1.1-1.4 on yuv420p ones (chroma subsampling), 6-13 had the limited range not been expanded.
LUMA_CHECK_TOLERANCE = 2.0


@dataclass(frozen=True)
class VideoInfo:
    fps: float
    frame_count: int  # frames actually decoded (up to the limits)
    duration_s: float
    width: int
    height: int
    declared_frames: int = 0  # what the container says it holds (0: not declared)

    @property
    def ended_early(self) -> bool:
        """The file gave fewer frames than it declares (damaged or cut), beyond a 2 % rounding slack."""
        return self.declared_frames > self.frame_count + max(1, self.declared_frames // 50)


@dataclass(frozen=True)
class SampledVideo:
    """The frames chosen for analysis (RGB uint8, downscaled to at most `VideoSettings.max_side`)."""

    source: str
    sha256: str
    info: VideoInfo
    indices: tuple[int, ...]
    frames: tuple[np.ndarray, ...]
    magnitudes: np.ndarray  # mean flow magnitude into every decoded frame (frame 0: 0.0)
    selection: Selection
    truncated: bool
    flow_roi: Box | None  # region the flow was measured on, in downscaled frame pixels; None = whole frame
    # magnitudes are in pixels of the downscaled frame (flow measured at flow_size², scaled back)
    timings_ms: dict[str, float] = field(default_factory=dict)  # "decode" (incl. downscale), "motion"


# -- pure ---------------------------------------------------------------------------------------------------
def uniform_indices(n: int, k: int) -> list[int]:
    """k indices spread evenly over range(n) (all of them when n <= k)."""
    if n <= 0 or k <= 0:
        return []
    if n <= k:
        return list(range(n))
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, k)})


def select_frames(magnitudes: Sequence[float], *, k: int, theta: float) -> tuple[list[int], bool]:
    """Indices of the top-k frames by motion among those with magnitude > theta, in temporal order.

    Returns (indices, fell_back): with fewer than k frames above theta, k uniformly spread frames instead.
    Ties are broken by the earlier frame.
    """
    mags = np.asarray(magnitudes, dtype=np.float64)
    passing = [i for i in range(len(mags)) if mags[i] > theta]
    if len(passing) < k:
        return uniform_indices(len(mags), k), True
    top = sorted(passing, key=lambda i: (-mags[i], i))[:k]
    return sorted(top), False


def flow_grey(frame: np.ndarray, roi: Box | None, size: int, *, code: int = cv2.COLOR_RGB2GRAY) -> np.ndarray:
    """The grey (size, size) image the flow is measured on: `roi` of a colour frame (or all of it)."""
    if roi is not None:
        x0, y0, x1, y1 = roi
        frame = frame[y0:y1, x0:x1]
    grey = cv2.cvtColor(np.ascontiguousarray(frame), code)
    return cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)


def flow_grey_from_luma(luma: np.ndarray, roi: Box | None, size: int) -> np.ndarray:
    """`flow_grey` from a limited-range (16-235) luma plane: the same grey as converting the frame to BGR first."""
    if roi is not None:
        x0, y0, x1, y1 = roi
        luma = luma[y0:y1, x0:x1]
    small = cv2.resize(np.ascontiguousarray(luma), (size, size), interpolation=cv2.INTER_AREA)
    return cv2.convertScaleAbs(small, alpha=255 / 219, beta=-16 * 255 / 219)


def flow_magnitude(previous: np.ndarray, current: np.ndarray) -> float:
    """Mean Farneback optical-flow magnitude (pixels) between two grey frames of the same size."""
    flow = cv2.calcOpticalFlowFarneback(previous, current, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    return float(np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2).mean())


class MotionPool:
    """Flow of consecutive grey frames measured on worker threads, handed back in frame order.

    Farneback runs on one core (3.1 ms per 128² pair with one OpenCV thread or two) and releases the GIL, as does
    decoding, so the reader decodes frame i+1 while workers measure the pairs before it. `add(grey, payload)`
    returns the frames whose magnitude is known, oldest first, as (index, magnitude, payload); at most `depth`
    frames (and their payloads) wait at once, `finish()` returns the rest. Magnitudes are `flow_magnitude`'s (0.0
    for the first frame), the same numbers as measuring in the reader's thread. Use as a context manager (the
    workers stop on exit).
    """

    def __init__(self, *, workers: int | None = None, depth: int = 4) -> None:
        self._depth = max(1, depth)
        self._pool = ThreadPoolExecutor(max_workers=workers or max(1, min(2, os.cpu_count() or 1)),
                                        thread_name_prefix="udfd-motion")
        self._pending: deque[tuple[int, Future[float] | float, Any]] = deque()
        self._previous: np.ndarray | None = None
        self._next = 0
        self.wait_s = 0.0  # time the caller spent waiting for a magnitude

    def __enter__(self) -> MotionPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def add(self, grey: np.ndarray, payload: Any = None) -> list[tuple[int, float, Any]]:
        job: Future[float] | float = 0.0
        if self._previous is not None:
            job = self._pool.submit(flow_magnitude, self._previous, grey)
        self._previous = grey
        self._pending.append((self._next, job, payload))
        self._next += 1
        return self._ready(block_beyond=self._depth)

    def finish(self) -> list[tuple[int, float, Any]]:
        return self._ready(block_beyond=0)

    def _ready(self, *, block_beyond: int) -> list[tuple[int, float, Any]]:
        out = []
        while self._pending:
            i, job, payload = self._pending[0]
            if isinstance(job, Future) and not job.done() and len(self._pending) <= block_beyond:
                break
            t0 = time.perf_counter()
            magnitude = job.result() if isinstance(job, Future) else job
            self.wait_s += time.perf_counter() - t0
            self._pending.popleft()
            out.append((i, magnitude, payload))
        return out


def box_iou(a: Box, b: Box) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def track_faces(boxes_per_frame: Sequence[Sequence[Box]], *, min_iou: float = 0.3) -> list[list[tuple[int, int]]]:
    """Link face boxes across frames into tracks: each track is [(frame position, face index), ...].

    Greedy: in each frame, the best-overlapping pairs (box, live track) are linked first, IoU against the
    track's last box; a box that overlaps no track (IoU < min_iou, or whose centre is not inside the last box)
    starts a new track. Selected frames can be far apart, so the centre test catches a moved face too.
    """
    tracks: list[list[tuple[int, int]]] = []
    last: list[Box] = []
    for t, boxes in enumerate(boxes_per_frame):
        pairs = []
        for j, box in enumerate(boxes):
            for k, prev in enumerate(last):
                iou = box_iou(box, prev)
                cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
                inside = prev[0] <= cx <= prev[2] and prev[1] <= cy <= prev[3]
                if iou >= min_iou or inside:
                    pairs.append((iou + inside, j, k))
        used_boxes, used_tracks = set(), set()
        for _, j, k in sorted(pairs, reverse=True):
            if j in used_boxes or k in used_tracks or tracks[k][-1][0] == t:
                continue
            tracks[k].append((t, j))
            last[k] = boxes[j]
            used_boxes.add(j)
            used_tracks.add(k)
        for j, box in enumerate(boxes):
            if j not in used_boxes:
                tracks.append([(t, j)])
                last.append(box)
    return tracks


def analysis_frame(bgr: np.ndarray, max_side: int) -> np.ndarray:
    """A decoded BGR frame -> the RGB frame faces and detectors see (longer side at most max_side)."""
    return cv2.cvtColor(downscale(bgr, max_side), cv2.COLOR_BGR2RGB)


def downscale(frame: np.ndarray, max_side: int) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return frame
    return cv2.resize(frame, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


# -- edge ---------------------------------------------------------------------------------------------------
RoiFinder = Callable[[np.ndarray], Box | None]
Progress = Callable[[float, str], None]


def sample_video(
    path: str | os.PathLike,
    settings: VideoSettings,
    *,
    roi_finder: RoiFinder | None = None,
    progress: Progress | None = None,
) -> SampledVideo:
    """Decode `path` once and return the selected frames. Raises `MediaError` for anything unusable.

    `roi_finder(first_frame)` gives the region the flow is measured on (the face area); None = whole frame.
    """
    path = Path(path)
    name = path.name
    if settings.selection not in ("optical_flow", "uniform"):
        raise UdfdError(f"unknown frame selection {settings.selection!r}: use optical_flow or uniform")
    _check_file(path, settings)
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise MediaError(name, "not a readable video (unsupported container or codec, or a damaged file)")
        _check_frame_size(name, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
                          int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0))  # the container's claim, before decoding
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        fps = fps if np.isfinite(fps) and 0 < fps < 1000 else 0.0
        declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        limit = settings.max_frames
        if fps > 0:
            limit = min(limit, max(1, int(settings.max_seconds * fps)))
        expected = min(declared, limit) if declared > 0 else limit
        k = settings.frames
        uniform_wanted = set(uniform_indices(expected, k))
        flow_on = settings.selection == "optical_flow"
        decoded = None
        if flow_on and _pixel_format(cap) in GREY_PLANE_FORMATS:
            decoded = _sample_on_luma(path, cap, settings, limit=limit, expected=expected, roi_finder=roi_finder,
                                      progress=progress)
            if decoded is None:  # the luma plane did not match the colour frame: decode the usual way, from the start
                cap.release()
                cap = cv2.VideoCapture(str(path))
        if decoded is None:
            decoded = _sample_one_reader(name, cap, settings, limit=limit, expected=expected,
                                         uniform_wanted=uniform_wanted, roi_finder=roi_finder, progress=progress)
    finally:
        cap.release()
    mags, kept, roi, truncated = decoded.mags, decoded.kept, decoded.roi, decoded.truncated
    width, height, decode_s, motion_s = decoded.width, decoded.height, decoded.decode_s, decoded.motion_s
    n = len(mags)
    if n == 0:
        raise MediaError(name, "no video frames could be decoded (empty, audio-only or damaged file)")
    if flow_on:
        indices, fell_back = decoded.chosen or select_frames(mags, k=k, theta=settings.flow_threshold)
        selection: Selection = "uniform_fallback" if fell_back else "optical_flow"
    else:
        indices, selection = uniform_indices(n, k), "uniform"
    missing = [i for i in indices if i not in kept]
    if missing:  # the container declared a wrong frame count: read the few frames still needed
        kept |= _read_frames(path, set(missing), settings.max_side)
        indices = [i for i in indices if i in kept]
    if truncated:
        log.info("%s: analysed the first %d frames only (limits: %d frames, %.0f s)", name, n,
                 settings.max_frames, settings.max_seconds)
    info = VideoInfo(fps=fps, frame_count=n, duration_s=n / fps if fps else 0.0, width=width, height=height,
                     declared_frames=max(declared, 0))
    if not truncated and info.ended_early:
        log.warning("%s: only %d of the %d frames the file declares could be decoded", name, n, declared)
    return SampledVideo(
        source=name, sha256=_sha256(path), info=info, indices=tuple(indices),
        frames=tuple(kept[i] for i in indices), magnitudes=np.asarray(mags, np.float32), selection=selection,
        truncated=truncated, flow_roi=roi, timings_ms={"decode": decode_s * 1000, "motion": motion_s * 1000},
    )


@dataclass
class _Decoded:
    """What one decoding pass found. `chosen` is set when the pass already selected (indices, fell back)."""

    mags: list[float]
    kept: dict[int, np.ndarray]
    roi: Box | None
    truncated: bool
    width: int
    height: int
    decode_s: float
    motion_s: float
    chosen: tuple[list[int], bool] | None = None


@dataclass
class _First:
    """What the first decoded frame settles: its size, the analysed copy, and where the flow is measured."""

    width: int
    height: int
    frame: np.ndarray  # the analysed (RGB, downscaled) first frame
    roi: Box | None  # in analysed pixels
    roi_full: Box  # in decoded pixels
    scale: float  # flow_size pixels -> analysed pixels


def _first_frame(name: str, bgr: np.ndarray, settings: VideoSettings, roi_finder: RoiFinder | None,
                 flow_on: bool) -> _First:
    height, width = bgr.shape[:2]
    _check_frame_size(name, width, height)  # what was decoded, in case the container lied
    first = analysis_frame(bgr, settings.max_side)
    roi = roi_finder(first) if (roi_finder and flow_on) else None
    box = roi or (0, 0, first.shape[1], first.shape[0])
    ratio = width / first.shape[1]  # decoded pixels per analysed pixel
    roi_full = tuple(int(round(v * ratio)) for v in box)
    scale = float(np.sqrt((box[2] - box[0]) * (box[3] - box[1]))) / settings.flow_size
    return _First(width, height, first, roi, roi_full, scale)  # type: ignore[arg-type]


def _sample_one_reader(name: str, cap: cv2.VideoCapture, settings: VideoSettings, *, limit: int, expected: int,
                       uniform_wanted: set[int], roi_finder: RoiFinder | None, progress: Progress | None
                       ) -> _Decoded:
    """One pass of one reader: motion on every frame's grey face region, the frames selection may pick kept.

    Without flow, frames no uniform index wants are only decoded (grab), never converted.
    """
    k = settings.frames
    flow_on = settings.selection == "optical_flow"
    heap: list[tuple[float, int]] = []  # min-heap of (magnitude, -index): the k best frames above theta
    kept: dict[int, np.ndarray] = {}
    mags: list[float] = []
    head: _First | None = None
    truncated = False
    decode_s = motion_s = 0.0  # the first frame's motion time includes finding the face region

    def consider(i: int, magnitude: float, bgr: np.ndarray | None) -> None:
        """Frame i's motion is known (frames arrive in order): keep it if selection may still pick it."""
        nonlocal decode_s
        mags.append(magnitude)
        candidate = flow_on and magnitude > settings.flow_threshold and (
            len(heap) < k or (magnitude, -i) > heap[0])
        if candidate or i in uniform_wanted:  # only frames selection may still pick are converted and kept
            t2 = time.perf_counter()
            frame = head.frame if i == 0 else analysis_frame(bgr, settings.max_side)
            decode_s += time.perf_counter() - t2
        if candidate:
            heapq.heappush(heap, (magnitude, -i))
            kept[i] = frame
            if len(heap) > k:
                _, neg = heapq.heappop(heap)
                if -neg not in uniform_wanted:
                    kept.pop(-neg, None)
        if i in uniform_wanted:
            kept[i] = frame

    with MotionPool() as motion:
        n_read = 0
        while True:
            if n_read >= limit:
                truncated = bool(cap.grab())
                break
            i = n_read
            t0 = time.perf_counter()
            if flow_on or i == 0 or i in uniform_wanted:
                ok, bgr = cap.read()
                ok = ok and bgr is not None
            else:
                ok, bgr = cap.grab(), None
            if not ok:
                break
            n_read += 1
            t1 = time.perf_counter()
            decode_s += t1 - t0
            if i == 0:
                head = _first_frame(name, bgr, settings, roi_finder, flow_on)
            if flow_on:  # measured on the decoded frame's face region: no full-frame colour conversion needed
                grey = flow_grey(bgr, head.roi_full, settings.flow_size, code=cv2.COLOR_BGR2GRAY)
                motion_s += time.perf_counter() - t1
                done = motion.add(grey, bgr)
            else:
                done = [(i, 0.0, bgr)]
            for j, magnitude, frame_bgr in done:  # in pixels of the analysed frame, so θ does not depend on flow_size
                consider(j, magnitude * head.scale, frame_bgr)
            if progress and expected and i % 10 == 0:
                progress(min(1.0, (i + 1) / expected), "decoding and measuring motion")
        for j, magnitude, frame_bgr in motion.finish():
            consider(j, magnitude * head.scale, frame_bgr)
        motion_s += motion.wait_s
    if head is None:
        return _Decoded(mags, kept, None, truncated, 0, 0, decode_s, motion_s)
    return _Decoded(mags, kept, head.roi, truncated, head.width, head.height, decode_s, motion_s)


def _sample_on_luma(path: Path, cap: cv2.VideoCapture, settings: VideoSettings, *, limit: int, expected: int,
                    roi_finder: RoiFinder | None, progress: Progress | None) -> _Decoded | None:
    """Motion from a second reader's luma planes (no colour conversion), then `cap` converts only the selected
    frames. None (nothing decided, `cap` moved) when the luma plane does not give frame 0's grey."""
    name = path.name
    t0 = time.perf_counter()
    ok, bgr = cap.read()
    if not ok or bgr is None:
        return None  # the usual path says what is wrong with the file
    decode_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    head = _first_frame(name, bgr, settings, roi_finder, True)
    reference = flow_grey(bgr, head.roi_full, settings.flow_size, code=cv2.COLOR_BGR2GRAY)
    motion_s = time.perf_counter() - t1
    mags: list[float] = []
    truncated = False
    with _quiet_opencv(), MotionPool() as motion:  # OpenCV warns on every raw frame of a format it does not name
        planes = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_CONVERT_RGB, 0])  # ("treated as 8UC1")
        try:
            n_read = 0
            while True:
                if n_read >= limit:
                    truncated = bool(planes.grab())
                    break
                i = n_read
                t0 = time.perf_counter()
                ok, plane = planes.read()
                if not ok or plane is None:
                    if i == 0:
                        return None  # this build cannot give raw planes
                    break
                t1 = time.perf_counter()
                decode_s += t1 - t0
                if plane.dtype != np.uint8 or plane.shape != (head.height, head.width):
                    log.debug("%s: raw frame %d is %s %s, not luma; measuring motion on colour", name, i,
                              plane.dtype, plane.shape)
                    return None
                grey = flow_grey_from_luma(plane, head.roi_full, settings.flow_size)
                if i == 0 and np.abs(grey.astype(np.float32) - reference).mean() > LUMA_CHECK_TOLERANCE:
                    log.debug("%s: the luma plane does not match the colour frame; measuring motion on colour", name)
                    return None
                n_read += 1
                motion_s += time.perf_counter() - t1  # waiting for the workers is counted at the end
                mags.extend(magnitude * head.scale for _, magnitude, _ in motion.add(grey))
                if progress and expected and i % 10 == 0:
                    progress(0.9 * min(1.0, (i + 1) / expected), "decoding and measuring motion")
            mags.extend(magnitude * head.scale for _, magnitude, _ in motion.finish())
            motion_s += motion.wait_s
        finally:
            planes.release()
    indices, fell_back = select_frames(mags, k=settings.frames, theta=settings.flow_threshold)
    kept = {0: head.frame} if 0 in indices else {}
    wanted = set(indices)
    t0 = time.perf_counter()
    for i in range(1, max(indices, default=0) + 1):  # cap stands after frame 0
        if not cap.grab():
            break
        if i in wanted:
            ok, bgr = cap.retrieve()
            if ok and bgr is not None:
                kept[i] = analysis_frame(bgr, settings.max_side)
    decode_s += time.perf_counter() - t0
    if progress:
        progress(1.0, "reading the selected frames")
    return _Decoded(mags, kept, head.roi, truncated, head.width, head.height, decode_s, motion_s,
                    chosen=(indices, fell_back))


_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_level = 0


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV logs errors only while any caller is inside (the level is process-wide: counted, not nested)."""
    global _quiet_depth, _quiet_level
    with _quiet_lock:
        if _quiet_depth == 0:
            _quiet_level = cv2.getLogLevel()
            cv2.setLogLevel(2)  # errors only
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                cv2.setLogLevel(_quiet_level)


def _pixel_format(cap: cv2.VideoCapture) -> str:
    """The decoded frames' pixel format as FOURCC text ("I420", "444P", ...); "" when the backend does not say."""
    if cap.getBackendName() != "FFMPEG":
        return ""
    code = int(cap.get(cv2.CAP_PROP_CODEC_PIXEL_FORMAT) or 0)
    return code.to_bytes(4, "little").decode("ascii", "replace") if code > 0 else ""


def _check_frame_size(name: str, width: int, height: int) -> None:
    """Frames too large or too elongated to analyse are refused (same side and aspect limits as images)."""
    if width <= 0 or height <= 0:  # not declared by the container: checked again on the first decoded frame
        return
    problem = check_dimensions(width, height, what="video frame")
    if problem:
        raise MediaError(name, problem)


def _check_file(path: Path, settings: VideoSettings) -> None:
    name = path.name
    try:
        size = path.stat().st_size
    except OSError as e:
        raise MediaError(name, f"cannot be read ({e.strerror or e})") from e
    if not path.is_file():
        raise MediaError(name, "is not a regular file")
    if size == 0:
        raise MediaError(name, "is empty")
    if size > settings.max_file_bytes:
        raise MediaError(name, f"is {size / 2**20:.0f} MiB; the limit is {settings.max_file_bytes / 2**20:.0f} MiB "
                               "(UDFD_MAX_VIDEO_BYTES)")


def _read_frames(path: Path, wanted: set[int], max_side: int) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    cap = cv2.VideoCapture(str(path))
    try:
        i = 0
        while wanted - out.keys():
            ok, bgr = cap.read()
            if not ok:
                break
            if i in wanted:
                out[i] = analysis_frame(bgr, max_side)
            i += 1
    finally:
        cap.release()
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def iter_video_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand folders recursively into their video files (sorted); named files are kept as given."""
    files: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files.extend(sorted(f for f in path.rglob("*") if f.suffix.lower() in VIDEO_EXTENSIONS and f.is_file()))
        else:
            files.append(path)
    return files
