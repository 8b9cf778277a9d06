"""Frozen dataclasses that cross module boundaries.

Arrays inside these records are treated as read-only by convention; producers never mutate them after
construction and consumers copy before changing anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from udfd.provenance import Provenance

Box = tuple[int, int, int, int]
"""(x0, y0, x1, y1) in pixels of the original image, x1/y1 exclusive."""


@dataclass(frozen=True)
class Image:
    """A decoded image: RGB uint8 array (H, W, 3), with what decoding learned about the file.

    `pixels` may be a reduced copy of a large file (see `udfd.media`); `original_size` is the file's own
    (width, height) after EXIF orientation, None when it equals the pixels' size.
    """

    pixels: np.ndarray
    source: str
    sha256: str
    format: str
    original_mode: str
    original_size: tuple[int, int] | None = None
    jpeg_quality: float | None = None  # a JPEG's IJG quality estimated from its tables (udfd.jpeg); None otherwise
    # Another format's file whose pixels still carry a JPEG's 8×8 blocks (a PNG of a decoded JPEG): that JPEG's
    # quality as udfd.jpeg.pixel_jpeg_quality reads it; None when none is seen (or the file is a JPEG).
    jpeg_history: float | None = None
    webp_quality: float | None = None  # a lossy WebP's libwebp quality estimated from its VP8 header (udfd.webp)

    @property
    def compression_quality(self) -> float | None:
        """The quality of the last JPEG compression this picture is known to have been through, or None."""
        return self.jpeg_quality if self.jpeg_quality is not None else self.jpeg_history

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the file: the size `Verdict` boxes refer to."""
        return self.original_size or (int(self.pixels.shape[1]), int(self.pixels.shape[0]))


@dataclass(frozen=True)
class FaceCrop:
    """One face cut from an image.

    `pixels` is the square crop (RGB uint8) at native resolution; the detector resizes it.
    `face_found` is False when no face was detected and the whole image stands in for one.
    """

    pixels: np.ndarray
    box: Box
    confidence: float
    face_found: bool = True
    landmarks: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class FaceSearch:
    """What `udfd.faces.search_faces` found: the crops (at most `max_faces`, largest first; one whole-image crop
    with `face_found=False` when there is no face), how many faces were detected before that cap, and how many
    tiles the tiled second pass looked at (0: it did not run)."""

    crops: tuple[FaceCrop, ...]
    found: int
    tiles: int = 0

    @property
    def capped(self) -> bool:
        """More faces were detected than were kept."""
        return self.found > len(self.crops)


@dataclass(frozen=True)
class Score:
    """One detector's opinion on one face."""

    detector: str
    fake_prob: float
    threshold: float = 0.5

    @property
    def is_fake(self) -> bool:
        return self.fake_prob >= self.threshold


@dataclass(frozen=True)
class Heatmap:
    """A saliency / error map over one face crop, values in [0, 1], shape (H, W) of the crop."""

    detector: str
    method: str
    values: np.ndarray
    box: Box


Label = Literal["real", "fake"]


@dataclass(frozen=True)
class FaceVerdict:
    box: Box
    face_found: bool
    confidence: float
    scores: dict[str, float]
    label: Label
    fake_prob: float
    uncertain: bool
    # Why it is uncertain: "band" (near the threshold), "tta" (near it once the band is widened by the spread of
    # test-time-augmented scores), "disagreement" (detectors call it differently), "no_face" (no face found: the
    # whole image or frame was scored), "small_face" (a crop too small to judge), "noisy" (a grainy crop: sensor
    # noise the detectors mistake for manipulation), "compressed" (a JPEG at or below udfd.jpeg.COMPRESSED_QUALITY,
    # or a lossy WebP at or below udfd.webp.COMPRESSED_WEBP_QUALITY: compression rewrites the texture they read),
    # "large_face" (called fake at a face size the detector's config says its fake verdicts do not hold for:
    # udfd.pipeline.large_face_limit); "" when certain.
    uncertain_reason: str = ""
    # For an ensemble deciding: each member's own calibrated fake_prob for this face (shown beside its verdict).
    members: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["box"] = list(self.box)
        d["verdict"] = {"label": d.pop("label"), "fake_prob": d.pop("fake_prob"), "uncertain": d.pop("uncertain"),
                        "uncertain_reason": d.pop("uncertain_reason")}
        return d


@dataclass(frozen=True)
class Overall:
    label: Label
    fake_prob: float
    uncertain: bool
    threshold: float
    # "provenance" when strong evidence in the file decided the label (udfd.provenance.apply_evidence), naming it
    # in `evidence`; "detectors" when the detectors' scores did. `fake_prob` stays the detectors' either way.
    basis: Literal["detectors", "provenance"] = "detectors"
    evidence: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """What the UI shows: the decision at the detector's own threshold, e.g. "fake (uncertain)". Shown as text
        rather than as real/fake percentages because a fake_prob of 0.46 is "fake" when the threshold is 0.36."""
        if self.basis == "provenance":
            return f"{self.label} (provenance evidence)"
        return f"{self.label} (uncertain)" if self.uncertain else self.label


@dataclass(frozen=True)
class VideoSummary:
    """What a video verdict adds: which frames were used and the scores over time.

    `frame_scores[detector]` has one value per used frame for image detectors (the most-fake face in that
    frame; None when no face was found there). `video_scores[detector]` holds "score" (the most-fake track,
    the value the verdict uses), and for image detectors "frame_mean" / "frame_max" over the per-frame scores.
    """

    fps: float
    duration_s: float
    frames_decoded: int
    frames_used: tuple[int, ...]
    selection: str  # "optical_flow" | "uniform_fallback" | "uniform"
    truncated: bool
    motion: tuple[float, ...]  # mean flow magnitude of each used frame
    frame_scores: dict[str, tuple[float | None, ...]]
    video_scores: dict[str, dict[str, float]]
    tracks: tuple[tuple[int, ...], ...]  # per face in `Verdict.faces`: the used-frame positions it appears in
    lips_found: int  # lip crops placed by FaceMesh landmarks (the rest fell back to the lower face)
    frames_declared: int = 0  # the frame count the container declares (0: none); more than decoded = ended early

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["frame_scores"] = {k: [None if v is None else round(v, 6) for v in vs] for k, vs in self.frame_scores.items()}
        d["video_scores"] = {k: {m: round(v, 6) for m, v in vs.items()} for k, vs in self.video_scores.items()}
        d["motion"] = [round(v, 4) for v in self.motion]
        d["frames_used"] = list(self.frames_used)
        d["tracks"] = [list(t) for t in self.tracks]
        return d


@dataclass(frozen=True)
class Verdict:
    """The result of analysing one file: see DESIGN.md "Verdict JSON"."""

    file: str
    kind: Literal["image", "video"]
    faces: tuple[FaceVerdict, ...]
    overall: Overall
    model_versions: dict[str, str]
    timings_ms: dict[str, float]
    width: int = 0
    height: int = 0
    notes: tuple[str, ...] = field(default=())
    video: VideoSummary | None = None
    provenance: Provenance | None = None  # what the file says about its origin (udfd.provenance)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "file": self.file,
            "kind": self.kind,
            "width": self.width,
            "height": self.height,
            "faces": [f.to_dict() for f in self.faces],
            "overall": asdict(self.overall),
            "model_versions": dict(self.model_versions),
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
            "notes": list(self.notes),
            "provenance": self.provenance.to_dict() if self.provenance is not None else None,
        }
        if self.video is not None:
            out["video"] = self.video.to_dict()
        return out


ProtectorDecision = Literal["accepted", "suspicious", "unscreened"]


@dataclass(frozen=True)
class FeedbackRecord:
    """A visitor's flag on a verdict, as stored by `udfd.feedback.store.FeedbackStore` (one JSONL line each).

    `model`/`revision` name the detector that produced the verdict (`revision` is its version string);
    `scores` holds every detector's fake_prob for the flagged face; `predicted_label` is the verdict the user
    saw and `user_label` the label they gave. `protector_score` is the protector's fake_prob (None when the
    flag was not screened). `image_file` is set by the store, relative to its root, only when the user
    consented and an image was given.
    """

    id: str
    time: str
    media_sha256: str
    model: str
    revision: str
    scores: dict[str, float]
    user_label: Label
    protector_decision: ProtectorDecision
    protector_score: float | None
    reason: str
    consent: bool
    predicted_label: Label | None = None
    image_file: str | None = None
