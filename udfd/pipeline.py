"""media -> faces -> detectors -> Verdict. The only orchestration in the library."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from udfd.aggregate import aggregate
from udfd.compare import Comparison, agreement, compare_rows
from udfd.config import Settings
from udfd.detectors.base import Detector
from udfd.errors import UdfdError
from udfd.explain import explain_methods, explain_verdict
from udfd.faces import FaceDetector, detect_faces, get_face_detector, scale_box, search_faces
from udfd.jpeg import COMPRESSED_QUALITY
from udfd.lips import get_lip_cropper
from udfd.loader import load_detector
from udfd.media import decode_image, image_limits, read_image
from udfd.noise import NOISY_FACE, noise_level
from udfd.perturb import tta_views
from udfd.plain import counted
from udfd.provenance import Provenance, apply_evidence, provenance_of
from udfd.types import Box, FaceCrop, FaceVerdict, Image, Overall, Score, Verdict, VideoSummary
from udfd.video import Progress, SampledVideo, sample_video, track_faces
from udfd.webp import COMPRESSED_WEBP_QUALITY, WEBP_EFFECT

log = logging.getLogger(__name__)

MIN_FACE_SIDE = 24  # px: a smaller face crop has too little detail for any detector (its verdict is uncertain)


def load_detectors(settings: Settings, names: Sequence[str] | None = None) -> list[Detector]:
    return [load_detector(n, settings=settings) for n in (names or settings.detectors)]


def analyze_image(
    source: str | os.PathLike | bytes | Image,
    *,
    settings: Settings | None = None,
    detectors: Sequence[Detector] | None = None,
    name: str | None = None,
    provenance: Provenance | None = None,
) -> Verdict:
    """Analyse one image: every face found is scored by every detector; the first detector decides, unless the
    file carries strong provenance evidence (`udfd.provenance.apply_evidence`).

    `source` is a path, raw bytes or an already decoded `Image`; for an `Image`, pass the file's `provenance`
    (`udfd.provenance.read_provenance`) or it is reported as not checked. Raises `MediaError` for bad files and
    `ModelUnavailableError` when a configured model cannot be loaded. Many files: `udfd.batch.analyze_many`
    (the same three steps, faces of several files per detector call).
    """
    settings = settings or Settings()
    prepared = prepare_image(source, settings=settings, name=name, provenance=provenance)
    dets = list(detectors) if detectors is not None else load_detectors(settings)
    scores = score_faces(dets, [f.pixels for f in prepared.faces], tta=settings.tta)
    return image_verdict(prepared, dets, scores, settings=settings)


@dataclass(frozen=True)
class PreparedImage:
    """An image decoded, its provenance read and its faces found: ready for the detectors."""

    image: Image
    provenance: Provenance
    faces: tuple[FaceCrop, ...]
    timings_ms: dict[str, float]  # decode, provenance, faces
    faces_found: int | None = None  # faces detected before the max_faces cap (None: as many as `faces`)
    tiles: int = 0  # tiles the tiled second pass looked at (0: it did not run)


@dataclass(frozen=True)
class FaceScores:
    """Every detector's score of every face of a batch (one list per detector, in face order), the first
    detector's TTA spread and ensemble member scores per face, and each detector's time for the batch."""

    per_detector: dict[str, list[Score]]
    spreads: list[float]
    members: list[dict[str, float]]
    timings_ms: dict[str, float]

    def take(self, start: int, stop: int, *, share: float = 1.0) -> FaceScores:
        """The scores of faces start..stop-1; timings scaled by `share` (that slice's part of the batch)."""
        return FaceScores({k: v[start:stop] for k, v in self.per_detector.items()}, self.spreads[start:stop],
                          self.members[start:stop], {k: v * share for k, v in self.timings_ms.items()})


def prepare_image(
    source: str | os.PathLike | bytes | Image, *, settings: Settings, name: str | None = None,
    provenance: Provenance | None = None,
) -> PreparedImage:
    """Decode (unless `source` is an `Image`), read provenance (unless given) and find the faces. Thread-safe."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    image = _decode(source, settings=settings, name=name)
    timings["decode"] = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    provenance = provenance or provenance_of(source, max_bytes=settings.max_file_bytes, pixels=image.pixels)
    timings["provenance"] = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    search = search_faces(image.pixels, settings.faces, detector=get_face_detector(settings.faces))
    timings["faces"] = (time.perf_counter() - t0) * 1000
    return PreparedImage(image, provenance, search.crops, timings, faces_found=search.found, tiles=search.tiles)


def score_faces(dets: Sequence[Detector], crops: Sequence[np.ndarray], *, tta: bool = False,
                device: str = "cpu") -> FaceScores:
    """Every detector once over all `crops` (one batch each); with `tta`, the first detector also scores each
    crop's test-time views (its spread widens the uncertain band); an ensemble first brings its members' scores.
    `device`: where the detectors' modules are (`udfd.scan.core.place`); each preprocessed batch is moved there."""
    if not dets:
        raise UdfdError("no detector configured: set UDFD_DETECTORS (e.g. UDFD_DETECTORS=vit)")
    crops = list(crops)
    per_detector: dict[str, list[Score]] = {}
    timings: dict[str, float] = {}
    spreads = [0.0] * len(crops)
    members: list[dict[str, float]] = [{} for _ in crops]
    for k, det in enumerate(dets):
        t0 = time.perf_counter()
        if k == 0 and tta:
            per_detector[det.name], spreads = _score_with_tta(det, crops, device)
        elif k == 0 and hasattr(det, "predict_with_members"):  # an ensemble: its members' scores come along
            per_detector[det.name], members = det.predict_with_members(_on(det.preprocess(crops), device))
        else:
            per_detector[det.name] = det.predict(_on(det.preprocess(crops), device))
        timings[det.name] = (time.perf_counter() - t0) * 1000
    return FaceScores(per_detector, spreads, members, timings)


def image_verdict(prepared: PreparedImage, dets: Sequence[Detector], scores: FaceScores, *,
                  settings: Settings) -> Verdict:
    """The Verdict of one prepared image from its faces' scores (`scores` holds exactly its faces). Pure."""
    image, faces, provenance = prepared.image, prepared.faces, prepared.provenance
    timings = dict(prepared.timings_ms) | scores.timings_ms
    per_detector = scores.per_detector
    h, w = image.pixels.shape[:2]
    compression = heavy_compression(image)
    compressed = compression is not None
    large = large_face_limit(dets[0]) if dets else None
    face_verdicts = tuple(
        _face_verdict(face, [s[i] for s in per_detector.values()], band=settings.uncertain_band,
                      disagreement=settings.disagreement, spread=scores.spreads[i],
                      box=scale_box(face.box, (w, h), image.size), members=scores.members[i],  # boxes in file pixels
                      compressed=compressed, large_face=large[0] if large else None)
        for i, face in enumerate(faces)
    )
    notes: list[str] = []
    if (w, h) != image.size:
        notes.append(f"analysed at {w}\N{MULTIPLICATION SIGN}{h}, reduced from the file's "
                     f"{image.size[0]}\N{MULTIPLICATION SIGN}{image.size[1]} (UDFD_WORK_SIDE); boxes are in the "
                     "file's pixels")
    if not faces[0].face_found:
        notes.append("no face found: the whole image was scored as one face, so the verdict is uncertain "
                     "(cannot tell)")
    elif len(faces) > 1:
        notes.append(f"{len(faces)} faces found: the overall verdict is the most-fake face")
    notes += _face_count_notes(prepared, settings.faces.max_faces)
    if any(face_verdicts[i].uncertain_reason == "small_face" for i in range(len(faces))):
        notes.append(f"a face smaller than {MIN_FACE_SIDE} px is too small to judge: its verdict is uncertain")
    if any(face_verdicts[i].uncertain_reason == "compressed" for i in range(len(faces))):
        notes.append(compression)
    if large and any(face_verdicts[i].uncertain_reason == "large_face" for i in range(len(faces))):
        measured = f" ({dets[0].name} {large[1]})" if large[1] else ""
        notes.append(f"a large face (at least {large[0]} px) called fake: at that size the fake verdicts of "
                     f"{dets[0].name} do not tell a real portrait from a generated one{measured}, so this verdict is "
                     "uncertain")
    if any(face_verdicts[i].uncertain_reason == "noisy" for i in range(len(faces))):
        notes.append("a face in a grainy photo: sensor noise looks like manipulation to the default detectors "
                     "(with noise of 2 % they call 45 % of real photos fake), so its verdict is uncertain")
    notes += _provenance_notes(provenance)
    timings["total"] = sum(timings.values())
    return Verdict(
        file=image.source,
        kind="image",
        faces=face_verdicts,
        overall=apply_evidence(_overall(face_verdicts, dets[0].threshold), provenance),
        model_versions={d.name: d.version for d in dets},
        timings_ms=timings,
        width=image.size[0],
        height=image.size[1],
        notes=tuple(notes),
        provenance=provenance,
    )


def _face_count_notes(prepared: PreparedImage, max_faces: int) -> list[str]:
    """What the Verdict says about the face search: the tiled second pass, and a face count capped at max_faces."""
    faces = prepared.faces
    if not faces[0].face_found:
        return []
    notes = []
    if prepared.tiles:
        notes.append(f"faces were also searched in {prepared.tiles} overlapping tiles of the image at a higher "
                     "resolution (a large image with few or small faces, e.g. a group photo)")
    found = len(faces) if prepared.faces_found is None else prepared.faces_found
    if found > len(faces):
        notes.append(f"{found} faces were found; only the {len(faces)} largest faces were analysed (UDFD_MAX_FACES="
                     f"{max_faces}): the verdict says nothing about the other {found - len(faces)}")
    elif len(faces) >= max_faces and prepared.faces_found is None:
        notes.append(f"only the {max_faces} largest faces were analysed (UDFD_MAX_FACES): there may be more in "
                     "the image")
    return notes


def _provenance_notes(provenance: Provenance) -> list[str]:
    if not provenance.strong:
        return []
    return ["the label rests on provenance evidence in the file, not on the detectors (whose fake_prob is kept): "
            + "; ".join(provenance.strong)]


def compare_image(
    source: str | os.PathLike | bytes | Image,
    *,
    detectors: Sequence[Detector],
    settings: Settings | None = None,
    unavailable: Mapping[str, str] | None = None,
    explain: bool = True,
    name: str | None = None,
    provenance: Provenance | None = None,
) -> Comparison:
    """Run every given detector on every face; with `explain`, each explainable detector's default heat-maps.

    The Verdict inside is decided by the first detector, as in `analyze_image` (strong provenance evidence
    included; pass `provenance` when `source` is an already decoded `Image`). `unavailable` (name -> reason)
    is carried through so that callers can show which detectors were left out and why.
    """
    settings = settings or Settings()
    image = _decode(source, settings=settings, name=name)
    provenance = provenance or provenance_of(source, max_bytes=settings.max_file_bytes, pixels=image.pixels)
    verdict = analyze_image(image, settings=settings, detectors=detectors, provenance=provenance)
    rows = compare_rows(verdict, {d.name: d.threshold for d in detectors})
    heatmaps = []
    if explain:
        for det in detectors:
            if explain_methods(det):
                heatmaps += explain_verdict(image.pixels, verdict, det)
    return Comparison(verdict=verdict, rows=rows, agreement=agreement(rows), heatmaps=tuple(heatmaps),
                      unavailable=dict(unavailable or {}))


def _decode(source: str | os.PathLike | bytes | Image, *, settings: Settings, name: str | None) -> Image:
    if isinstance(source, Image):
        return source
    if isinstance(source, bytes):
        return decode_image(source, name=name or "<upload>", **image_limits(settings))
    return read_image(source, max_file_bytes=settings.max_file_bytes, **image_limits(settings))


def _on(batch: object, device: str) -> object:
    """A preprocessed batch on `device` (a tensor moved; on "cpu", or for a batch that cannot move, as it is)."""
    return batch.to(device) if device != "cpu" and hasattr(batch, "to") else batch


def _score_with_tta(det: Detector, crops: list[np.ndarray], device: str = "cpu") -> tuple[list[Score], list[float]]:
    """Scores of the crops themselves, and per crop the spread (max - min) of its score over the crop and its
    test-time views (flip, JPEG 90), all in one batch."""
    views = [v for crop in crops for v in tta_views(crop)]
    scores = det.predict(_on(det.preprocess([*crops, *views]), device))
    own, extra = scores[:len(crops)], scores[len(crops):]
    per = len(views) // len(crops)
    spreads = []
    for i, s in enumerate(own):
        probs = [s.fake_prob, *(e.fake_prob for e in extra[i * per:(i + 1) * per])]
        spreads.append(max(probs) - min(probs))
    return own, spreads


def uncertainty(scores: Sequence[Score], *, band: float, disagreement: float | None = None,
                spread: float = 0.0) -> str:
    """Why a face verdict is uncertain ("band", "tta", "disagreement"), or "" when it is not. Pure.

    The first score decides. "band": its fake_prob lies within `band` of its threshold; "tta": within
    `band + spread` (the spread of its test-time-augmented scores) but not within `band`; "disagreement": some
    detectors call the face fake and others real, with fake_probs at least `disagreement` apart.
    """
    primary = scores[0]
    margin = abs(primary.fake_prob - primary.threshold)
    if margin < band:
        return "band"
    if margin < band + spread:
        return "tta"
    probs = [s.fake_prob for s in scores]
    if disagreement is not None and len({s.is_fake for s in scores}) > 1 and max(probs) - min(probs) >= disagreement:
        return "disagreement"
    return ""


def input_reason(face: FaceCrop) -> str:
    """Why a face's score has nothing behind it, whatever its value: "no_face" (no face was found, the whole image
    or frame was scored), "small_face" (a crop under MIN_FACE_SIDE px, upscaled to the detector's size) or "noisy"
    (sensor noise above `udfd.noise.NOISY_FACE`, which the detectors mistake for manipulation); "" when the input
    is fine. Such verdicts are "cannot tell" (uncertain). Pure."""
    if not face.face_found:
        return "no_face"
    if min(face.pixels.shape[:2]) < MIN_FACE_SIDE:
        return "small_face"
    if noise_level(face.pixels) > NOISY_FACE:
        return "noisy"
    return ""


def heavy_compression(image: Image) -> str | None:
    """Why this picture is too compressed to judge, as the verdict's note, or None. Pure.

    A JPEG at or below `udfd.jpeg.COMPRESSED_QUALITY` (from its tables, or from the 8×8 blocks left in the pixels of
    a file saved losslessly after it), or a lossy WebP at or below `udfd.webp.COMPRESSED_WEBP_QUALITY`."""
    quality = image.compression_quality
    if quality is not None and quality <= COMPRESSED_QUALITY:
        what = (f"a heavily compressed JPEG (quality about {quality:.0f})" if image.jpeg_quality is not None else
                f"a {image.format} file whose pixels carry the 8\N{MULTIPLICATION SIGN}8 blocks of a heavily "
                f"compressed JPEG (quality about {quality:.0f})")
        return (f"{what}: compression rewrites the texture the default detectors read (re-encoded at quality 70, "
                "they call 6 % of real photos fake, at quality 50 13 %), so its verdict is uncertain")
    webp = image.webp_quality
    if webp is not None and webp <= COMPRESSED_WEBP_QUALITY:
        return (f"a lossy WebP (quality about {webp:.0f}): its compression rewrites the texture the default "
                f"detectors read (re-encoded as WebP at quality {COMPRESSED_WEBP_QUALITY} or below, {WEBP_EFFECT}), "
                "so its verdict is uncertain")
    return None


def large_face_limit(detector: Detector) -> tuple[int, str] | None:
    """(least face side in pixels, what was measured) when the detector's config declares that its "fake" verdicts
    on faces at least that large in still images are not to be trusted (`limits.large_face` in its config.json),
    else None. Pure. Video frames are not covered: the measurement behind such a limit is on still images."""
    meta = getattr(detector, "meta", None)
    limit = (meta.get("limits") or {}).get("large_face") if isinstance(meta, dict) else None
    if not isinstance(limit, dict) or not isinstance(limit.get("min_side"), int | float):
        return None
    return int(limit["min_side"]), str(limit.get("measured", ""))


def face_side(face: FaceCrop) -> int:
    """The face box's longer side, in the pixels the detectors were given."""
    x0, y0, x1, y1 = face.box
    return max(x1 - x0, y1 - y0)


def _face_verdict(face: FaceCrop, scores: list[Score], *, band: float, disagreement: float | None = None,
                  spread: float = 0.0, box: Box | None = None, members: dict[str, float] | None = None,
                  compressed: bool = False, large_face: int | None = None) -> FaceVerdict:
    primary = scores[0]
    large = large_face is not None and primary.is_fake and face.face_found and face_side(face) >= large_face
    reason = (uncertainty(scores, band=band, disagreement=disagreement, spread=spread) or input_reason(face)
              or ("compressed" if compressed else "") or ("large_face" if large else ""))
    return FaceVerdict(
        box=face.box if box is None else box,
        face_found=face.face_found,
        confidence=round(face.confidence, 4),
        scores={s.detector: round(s.fake_prob, 6) for s in scores},
        label="fake" if primary.is_fake else "real",
        fake_prob=round(primary.fake_prob, 6),
        uncertain=bool(reason),
        uncertain_reason=reason,
        members=dict(members or {}),
    )


def _overall(faces: Sequence[FaceVerdict], threshold: float) -> Overall:
    worst = max(faces, key=lambda f: f.fake_prob)
    return Overall(label=worst.label, fake_prob=worst.fake_prob, uncertain=worst.uncertain, threshold=threshold)


# -- video ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoAnalysis:
    """A video verdict plus what the app shows: the used frames, faces per frame, tracks, lip sequences."""

    verdict: Verdict
    sample: SampledVideo
    faces: tuple[tuple[FaceCrop, ...], ...]  # per used frame
    tracks: tuple[tuple[tuple[int, int], ...], ...]  # per face in the verdict: (frame position, face index)
    lips: tuple[np.ndarray | None, ...]  # per face in the verdict: the (T, 64, 64, 3) lip crops, if computed


def analyze_video(
    source: str | os.PathLike,
    *,
    settings: Settings | None = None,
    detectors: Sequence[Detector] | None = None,
    progress: Progress | None = None,
) -> Verdict:
    """Analyse one video file; see `run_video` (this returns only the Verdict)."""
    return run_video(source, settings=settings, detectors=detectors, progress=progress).verdict


def run_video(
    source: str | os.PathLike,
    *,
    settings: Settings | None = None,
    detectors: Sequence[Detector] | None = None,
    progress: Progress | None = None,
) -> VideoAnalysis:
    """Frames chosen by motion -> faces tracked across them -> every detector -> one verdict per track.

    Image detectors score every tracked face in every used frame (batched); video detectors score each track's
    lip sequence. The first detector decides (`settings.video_detectors`); the video's verdict is its most-fake
    track among tracks seen in at least a quarter of the frames with faces.
    """
    settings = settings or Settings()
    report = progress or (lambda fraction, what: None)
    t0 = time.perf_counter()
    provenance = provenance_of(source, max_bytes=settings.video.max_file_bytes, kind="video")
    provenance_ms = (time.perf_counter() - t0) * 1000
    dets = list(detectors) if detectors is not None else load_detectors(settings, settings.video_detectors)
    if not dets:
        raise UdfdError("no detector configured: set UDFD_VIDEO_DETECTORS (e.g. lip_lstm,vit)")
    face_detector = get_face_detector(settings.faces)
    timings: dict[str, float] = {}
    sample = sample_video(source, settings.video, progress=lambda f, w: report(0.5 * f, w),
                          roi_finder=lambda frame: faces_region(frame, settings, face_detector))
    timings |= sample.timings_ms  # decode, motion (the rest of sampling is bookkeeping)
    timings["provenance"] = provenance_ms

    t0 = time.perf_counter()
    frame_faces, tracks, found = track_video_faces(
        sample.frames, settings, progress=lambda f, w: report(0.5 + 0.3 * f, w), face_detector=face_detector)
    timings["faces"] = (time.perf_counter() - t0) * 1000

    lips: list[np.ndarray | None] = [None] * len(tracks)
    lips_found = 0
    if any(d.modality == "video" for d in dets):
        t0 = time.perf_counter()
        lips, lips_found = lip_sequences(frame_faces, tracks, found, settings.video.lip_size)
        timings["lips"] = (time.perf_counter() - t0) * 1000
    report(0.85, "scoring")

    track_scores: dict[str, list[Score | None]] = {}
    frame_scores: dict[str, tuple[float | None, ...]] = {}
    for det in dets:
        t0 = time.perf_counter()
        if det.modality == "video":
            track_scores[det.name] = _score_sequences(det, lips)
        else:
            track_scores[det.name], frame_scores[det.name] = _score_frames(det, frame_faces, tracks,
                                                                           rule=settings.video.track_rule)
        timings[det.name] = (time.perf_counter() - t0) * 1000
    report(1.0, "done")

    verdicts = []
    for i, track in enumerate(tracks):
        scores = [s[i] for s in track_scores.values() if s[i] is not None]
        t, j = track[len(track) // 2]
        verdicts.append(_face_verdict(frame_faces[t][j], scores, band=settings.uncertain_band,
                                      disagreement=settings.disagreement))
    with_faces = sum(1 for faces in frame_faces if faces[0].face_found)
    eligible = [i for i, tr in enumerate(tracks) if found[i] and len(tr) >= max(2, 0.25 * with_faces)]
    eligible = eligible or list(range(len(tracks)))
    summary = _video_summary(sample, tracks, track_scores, frame_scores, eligible, lips_found)
    timings["total"] = sum(timings.values())
    verdict = Verdict(
        file=sample.source, kind="video", faces=tuple(verdicts),
        overall=apply_evidence(_overall([verdicts[i] for i in eligible], dets[0].threshold), provenance),
        model_versions={d.name: d.version for d in dets}, timings_ms=timings,
        width=sample.info.width, height=sample.info.height,
        notes=tuple(_video_notes(sample, tracks, found, dets, eligible) + _provenance_notes(provenance)),
        video=summary, provenance=provenance,
    )
    return VideoAnalysis(verdict, sample, tuple(frame_faces), tuple(tuple(tr) for tr in tracks), tuple(lips))


def faces_region(frame: np.ndarray, settings: Settings, face_detector: FaceDetector) -> Box | None:
    """The box around every face in `frame` (where motion is measured), or None without a face."""
    faces = [f for f in detect_faces(frame, settings.faces, detector=face_detector, tiled=False) if f.face_found]
    if not faces:
        return None
    return (min(f.box[0] for f in faces), min(f.box[1] for f in faces),
            max(f.box[2] for f in faces), max(f.box[3] for f in faces))


def track_video_faces(
    frames: Sequence[np.ndarray], settings: Settings, *, progress: Progress | None = None,
    face_detector: FaceDetector | None = None,
) -> tuple[list[tuple[FaceCrop, ...]], list[list[tuple[int, int]]], list[bool]]:
    """Faces in every frame, linked into tracks (longest first), and whether each track is a real face.

    With no face in any frame, one track of whole frames stands in (face found: False), as for images.
    """
    face_detector = face_detector or get_face_detector(settings.faces)
    frame_faces = []
    for t, frame in enumerate(frames):
        frame_faces.append(tuple(detect_faces(frame, settings.faces, detector=face_detector, tiled=False)))
        if progress:
            progress((t + 1) / len(frames), "finding faces")
    tracks = track_faces([[f.box for f in faces if f.face_found] for faces in frame_faces])
    if not tracks:
        tracks = [[(t, 0) for t in range(len(frame_faces))]]
    tracks.sort(key=len, reverse=True)
    found = [frame_faces[tr[0][0]][tr[0][1]].face_found for tr in tracks]
    return frame_faces, tracks, found


def lip_sequences(frame_faces: Sequence[Sequence[FaceCrop]], tracks: Sequence[Sequence[tuple[int, int]]],
                   found: Sequence[bool], size: int) -> tuple[list[np.ndarray | None], int]:
    cropper = get_lip_cropper()
    out: list[np.ndarray | None] = []
    mesh = 0
    for track, has_face in zip(tracks, found, strict=True):
        if not has_face:
            out.append(None)
            continue
        crops = []
        for t, j in track:
            lip, ok = cropper.lip_crop(frame_faces[t][j].pixels, size=size)
            crops.append(lip)
            mesh += ok
        out.append(np.stack(crops))
    return out, mesh


def _score_sequences(det: Detector, lips: Sequence[np.ndarray | None]) -> list[Score | None]:
    present = [i for i, seq in enumerate(lips) if seq is not None]
    scores: list[Score | None] = [None] * len(lips)
    if present:
        for i, s in zip(present, det.predict(det.preprocess([lips[i] for i in present])), strict=True):
            scores[i] = s
    return scores


def _score_frames(det: Detector, frame_faces: Sequence[Sequence[FaceCrop]],
                  tracks: Sequence[Sequence[tuple[int, int]]], *, rule: str = "mean"
                  ) -> tuple[list[Score | None], tuple[float | None, ...]]:
    """Image detector on every tracked face (batches of 32): per-track score (`rule`, udfd.aggregate) and
    per-frame maximum."""
    keys = [key for track in tracks for key in track]
    probs: dict[tuple[int, int], float] = {}
    for start in range(0, len(keys), 32):
        chunk = keys[start:start + 32]
        batch = det.preprocess([frame_faces[t][j].pixels for t, j in chunk])
        probs |= {k: s.fake_prob for k, s in zip(chunk, det.predict(batch), strict=True)}
    track_scores: list[Score | None] = [
        Score(det.name, aggregate([probs[k] for k in track], rule), det.threshold) for track in tracks
    ]
    per_frame: list[float | None] = [None] * len(frame_faces)
    for (t, _), p in probs.items():
        per_frame[t] = p if per_frame[t] is None else max(per_frame[t], p)
    return track_scores, tuple(per_frame)


def _video_summary(sample: SampledVideo, tracks: Sequence[Sequence[tuple[int, int]]],
                   track_scores: dict[str, list[Score | None]], frame_scores: dict[str, tuple[float | None, ...]],
                   eligible: Sequence[int], lips_found: int) -> VideoSummary:
    video_scores: dict[str, dict[str, float]] = {}
    for name, scores in track_scores.items():
        values = [scores[i].fake_prob for i in eligible if scores[i] is not None]
        entry = {"score": max(values)} if values else {}
        frames = [v for v in frame_scores.get(name, ()) if v is not None]
        if frames:
            entry |= {"frame_mean": float(np.mean(frames)), "frame_max": float(np.max(frames))}
        video_scores[name] = entry
    return VideoSummary(
        fps=sample.info.fps, duration_s=sample.info.duration_s, frames_decoded=sample.info.frame_count,
        frames_used=sample.indices, selection=sample.selection, truncated=sample.truncated,
        motion=tuple(float(sample.magnitudes[i]) for i in sample.indices), frame_scores=frame_scores,
        video_scores=video_scores, tracks=tuple(tuple(t for t, _ in track) for track in tracks),
        lips_found=lips_found, frames_declared=sample.info.declared_frames,
    )


def _video_notes(sample: SampledVideo, tracks: Sequence[Sequence[tuple[int, int]]], found: Sequence[bool],
                 dets: Sequence[Detector], eligible: Sequence[int]) -> list[str]:
    notes = []
    if sample.truncated:
        was = "was" if sample.info.frame_count == 1 else "were"
        notes.append(f"only the first {counted(sample.info.frame_count, 'frame')} {was} analysed (video length limit)")
    elif sample.info.ended_early:
        notes.append(f"the file ended early: {sample.info.frame_count} of the {sample.info.declared_frames} frames "
                     "it declares could be decoded (damaged or cut file); only those were analysed")
    if sample.selection == "uniform_fallback":
        was = "was" if len(sample.indices) == 1 else "were"
        notes.append(f"too few frames with motion above the threshold: {counted(len(sample.indices), 'frame')} "
                     f"spread uniformly {was} used instead of the optical-flow selection")
    if not any(found):
        notes.append("no face found in any used frame: whole frames were scored, so the verdict is uncertain"
                     + ("; video detectors need a face and were not applied" if any(d.modality == "video"
                                                                                    for d in dets) else ""))
    elif len(tracks) > 1:
        notes.append(f"{len(tracks)} face tracks; the verdict is the most-fake of the {len(eligible)} seen in "
                     "at least a quarter of the frames with faces")
    return notes
