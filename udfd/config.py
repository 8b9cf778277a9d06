"""Typed settings. The environment is read once, in `Settings.from_env()`, at the edges (app, CLI)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from udfd.errors import UdfdError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_MODELS = PROJECT_ROOT / "models"

# Batching across files (udfd/batch.py), here so the CLI can show them without importing torch.
DEFAULT_WORKERS = 2
# Faces per detector call. On 2 CPU cores the default's ONNX members cost about the same per face at batch 1 and 8
# (benchmarks/results/bench_fast_new_members.json): there the gain is decoding and face detection overlapping the
# detectors (benchmarks/results/batch_throughput.json); bigger batches help eager and GPU models.
DEFAULT_BATCH_SIZE = 16

# Short names -> model references. Env `UDFD_MODEL_<NAME>` overrides one (e.g. UDFD_MODEL_VIT=hf-hub:org/repo).
DEFAULT_MODELS: dict[str, str] = {
    "vit": f"local-dir:{EMBEDDED_MODELS / 'udfd-vit-tiny'}",
    "cnn": f"local-dir:{EMBEDDED_MODELS / 'udfd-cnn'}",
    "mobilenet_v2": f"local-dir:{EMBEDDED_MODELS / 'udfd-mobilenet-v2'}",
    # timm family, EfficientNet-Lite0 from ImageNet (frozen backbone + head; issue 15); not in the defaults.
    "effnet_lite0": f"local-dir:{EMBEDDED_MODELS / 'udfd-effnet-lite0'}",
    # The same frozen Lite0 with one head per kind of fake (face swap, GAN, diffusion; training/kinds.py).
    "effnet_lite0_kinds": f"local-dir:{EMBEDDED_MODELS / 'udfd-effnet-lite0-kinds'}",
    # The calibrated ensemble (training/fit_ensemble.py): its members are loaded by their own short names.
    "ensemble": f"local-dir:{EMBEDDED_MODELS / 'udfd-ensemble'}",
    "ocvae": f"local-dir:{EMBEDDED_MODELS / 'udfd-ocvae'}",
    "lip_lstm": f"local-dir:{EMBEDDED_MODELS / 'udfd-lip-lstm'}",
    # No embedded checkpoint: CLIP weights cannot be fetched offline, so the app lists `clip` as unavailable
    # (with the reason) until UDFD_MODEL_CLIP points at a folder made by training/train_clip.py. See README.
    "clip": f"local-dir:{EMBEDDED_MODELS / 'udfd-clip'}",
    # The authors' MesoNet weights (Afchar et al. 2018), converted by training/convert_mesonet.py; not in the defaults.
    "mesonet4_df": f"local-dir:{EMBEDDED_MODELS / 'udfd-mesonet4-df'}",
    "mesonet4_f2f": f"local-dir:{EMBEDDED_MODELS / 'udfd-mesonet4-f2f'}",
    "mesoinception_df": f"local-dir:{EMBEDDED_MODELS / 'udfd-mesoinception-df'}",
    "mesoinception_f2f": f"local-dir:{EMBEDDED_MODELS / 'udfd-mesoinception-f2f'}",
    # Self-blended images (training/sbi.py, `--sbi only`): a face-swap specialist, below chance on GANs (its card).
    "sbi_lite0": f"local-dir:{EMBEDDED_MODELS / 'udfd-sbi-lite0'}",
    # Native-resolution spectrum statistics under per-kind logistic heads (no network; udfd.spectrum); an ensemble
    # member, weak alone (its card).
    "spectrum": f"local-dir:{EMBEDDED_MODELS / 'udfd-spectrum'}",
    # The face-swap specialist ensemble (sbi_lite0 + effnet_lite0, fitted and judged on the DFDC and LFW-swap folds).
    "ensemble_swap": f"local-dir:{EMBEDDED_MODELS / 'udfd-ensemble-swap'}",
}


@dataclass(frozen=True)
class FaceSettings:
    backend: str = "mediapipe"  # "mediapipe" | "haar" | "yunet"
    margin: float = 0.2  # extra border around the detected box, as a share of the box side
    min_confidence: float = 0.5
    # At most this many faces are analysed per image or frame, the largest (UDFD_MAX_FACES); the Verdict's notes
    # say when more were found. Bounds the detector work one request can cause.
    max_faces: int = 20
    # Tiled second pass for group photos (udfd.faces.search_faces): at most this many overlapping tiles, run only
    # on large images where the first pass found no face, or several (fewer than max_faces) and no large one; 0
    # turns it off (UDFD_FACE_TILES). Images only: video frames are searched in one pass.
    max_tiles: int = 36
    yunet_model: str | None = None  # path to a YuNet ONNX file when backend == "yunet"


@dataclass(frozen=True)
class VideoSettings:
    frames: int = 60  # K: frames analysed per video (the report's sequence length)
    selection: str = "optical_flow"  # "optical_flow" (top-K motion above flow_threshold) | "uniform"
    flow_threshold: float = 1.0  # θ on the mean Farneback magnitude, in pixels of the flow_size grid
    flow_size: int = 128  # the face region is resized to flow_size² grey before measuring flow
    max_side: int = 1280  # decoded frames are downscaled to this longer side
    max_seconds: float = 60.0  # only the first max_seconds / max_frames are analysed (the result says so)
    max_frames: int = 1800
    max_file_bytes: int = 500 * 1024 * 1024
    lip_size: int = 64
    # How a track's per-frame scores become its score (udfd.aggregate: mean | median | max | topk_mean), chosen
    # by per-clip AUC on the dev clips (training/video_rule.py; README "How a video is analysed")
    track_rule: str = "mean"


@dataclass(frozen=True)
class FeedbackSettings:
    """Where flags go (see udfd/feedback/store.py) and how they are screened and pushed."""

    dir: Path = PROJECT_ROOT / ".udfd" / "feedback"
    repo: str | None = None  # private Hub dataset "org/name" to push to with CommitScheduler (needs a token)
    every_minutes: float = 10.0
    token: str | None = None  # None: huggingface_hub's own lookup (HF_TOKEN, `hf auth login`)
    protector: str = f"local-dir:{EMBEDDED_MODELS / 'udfd-protector'}"
    flags_per_minute: float = 10.0  # per client (its address), with bursts of as many; beyond that a flag is refused


@dataclass(frozen=True)
class Settings:
    # The default image detector is the ensemble: best mean leave-one-source-out AUC (models/udfd-ensemble card).
    detectors: tuple[str, ...] = ("ensemble",)
    # The first decides a video's verdict. Deepfake videos are face swaps and reenactments, so the face-swap
    # specialist decides: ensemble_swap (sbi_lite0 + effnet_lite0) beats MesoNet-4 DF on the face-swap LOSO folds
    # (DFDC 0.628 vs 0.581, LFW swaps 0.611 vs 0.245) and on the 13 dev clips (per-clip AUC 0.81 vs 0.78, per-track
    # mean; one clip moves it by 0.03-0.11); lip_lstm has no cross-validated skill (0.42). README "Videos". Alone, so
    # that a 10 s 720p clip stays within 0.25x real time (0.20x; with mesonet4_df beside it 0.27x).
    video_detectors: tuple[str, ...] = ("ensemble_swap",)
    models: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_MODELS))
    faces: FaceSettings = field(default_factory=FaceSettings)
    video: VideoSettings = field(default_factory=VideoSettings)
    max_pixels: int = 50_000_000
    max_file_bytes: int = 50 * 1024 * 1024
    # Read from the header before decoding: a side above max_side or a long:short ratio above max_aspect is refused
    # (native face detectors abort on sides >= 32767). Accepted images are decoded reduced to at most work_side on
    # their longer side before any face detector sees them; boxes are reported in the file's own pixels.
    max_side: int = 16_384
    max_aspect: float = 20.0
    work_side: int = 4096
    uncertain_band: float = 0.1  # |fake_prob - threshold| below this -> "uncertain"
    # Detectors that call a face differently and whose fake_probs lie at least this far apart make it "uncertain"
    # (None: off, the default; only meaningful with more than one detector).
    disagreement: float | None = None
    # Test-time augmentation: the first detector also scores a flipped and a JPEG-90 copy of each face; the band
    # widens by the spread (max - min) of the three scores. Off by default (3x the model time).
    tta: bool = False
    threads: int = 0  # torch intra-op threads; 0: every core this process may use
    # Faster inference (UDFD_FAST): "auto" takes each checkpoint's measured mode (config.json udfd.fast), verified
    # at load against eager; "off" runs eager; or "int8" | "bf16" | "compile" | "channels_last" | "onnx" |
    # "onnx_int8", or "name:mode,..." per detector (see udfd/fast.py and `udfd bench --fast` for which keep verdicts)
    fast: str = "auto"
    # Where exported ONNX graphs are kept between runs (UDFD_CACHE_DIR; "off" disables). `from_env` defaults it to
    # $XDG_CACHE_HOME/udfd or ~/.cache/udfd; empty (the dataclass default) exports in memory at every start.
    cache_dir: str = ""
    # Seconds the Hugging Face Hub has to answer the first call about a Hub reference (UDFD_HUB_TIMEOUT); a Hub
    # that does not is marked unreachable for 5 min and the loader falls back to the next reference (udfd/hub.py).
    hub_timeout: float = 5.0
    device: str = "cpu"
    feedback: FeedbackSettings = field(default_factory=FeedbackSettings)
    concurrency: int = 2  # app: requests one endpoint runs at once (the rest wait in the queue)
    queue_size: int = 64  # app: requests waiting at most; beyond that a visitor is told the queue is full

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        base = cls()
        models = dict(base.models)
        detectors = ",".join(base.detectors)
        video_detectors = ",".join(base.video_detectors)
        if env.get("UDFD_MODELS_FILE"):  # e.g. space/detectors.json: the Space's names -> Hub repos
            spec = read_models_file(env["UDFD_MODELS_FILE"])
            models.update(spec.get("models", {}))
            detectors = ",".join(spec.get("detectors", base.detectors))
            video_detectors = ",".join(spec.get("video_detectors", base.video_detectors))
        for key, value in env.items():
            if key.startswith("UDFD_MODEL_") and value:
                models[key.removeprefix("UDFD_MODEL_").lower()] = value
        dets = _names(env.get("UDFD_DETECTORS", detectors))
        video_dets = _names(env.get("UDFD_VIDEO_DETECTORS", video_detectors))
        video = replace(
            base.video,
            frames=int(env.get("UDFD_VIDEO_FRAMES", base.video.frames)),
            selection=env.get("UDFD_VIDEO_SELECTION", base.video.selection),
            flow_threshold=float(env.get("UDFD_VIDEO_FLOW_THRESHOLD", base.video.flow_threshold)),
            max_seconds=float(env.get("UDFD_VIDEO_MAX_SECONDS", base.video.max_seconds)),
            max_frames=int(env.get("UDFD_VIDEO_MAX_FRAMES", base.video.max_frames)),
            max_file_bytes=int(env.get("UDFD_MAX_VIDEO_BYTES", base.video.max_file_bytes)),
            track_rule=env.get("UDFD_TRACK_RULE", base.video.track_rule),
        )
        faces = replace(
            base.faces,
            backend=env.get("UDFD_FACE_BACKEND", base.faces.backend),
            margin=float(env.get("UDFD_FACE_MARGIN", base.faces.margin)),
            max_faces=int(env.get("UDFD_MAX_FACES", base.faces.max_faces)),
            max_tiles=int(env.get("UDFD_FACE_TILES", base.faces.max_tiles)),
            yunet_model=env.get("UDFD_YUNET_MODEL", base.faces.yunet_model),
        )
        return replace(
            base,
            detectors=dets,
            video_detectors=video_dets,
            video=video,
            models=models,
            faces=faces,
            max_pixels=int(env.get("UDFD_MAX_PIXELS", base.max_pixels)),
            max_file_bytes=int(env.get("UDFD_MAX_FILE_BYTES", base.max_file_bytes)),
            max_side=int(env.get("UDFD_MAX_SIDE", base.max_side)),
            max_aspect=float(env.get("UDFD_MAX_ASPECT", base.max_aspect)),
            work_side=int(env.get("UDFD_WORK_SIDE", base.work_side)),
            uncertain_band=float(env.get("UDFD_UNCERTAIN_BAND", base.uncertain_band)),
            disagreement=float(env["UDFD_DISAGREEMENT"]) if env.get("UDFD_DISAGREEMENT") else None,
            tta=env.get("UDFD_TTA", "0").strip().lower() in ("1", "true", "yes", "on"),
            threads=int(env.get("UDFD_THREADS") or 0),
            fast=env.get("UDFD_FAST", base.fast).strip(),
            cache_dir=_cache_dir(env),
            hub_timeout=float(env.get("UDFD_HUB_TIMEOUT") or base.hub_timeout),
            device=env.get("UDFD_DEVICE", base.device),
            feedback=FeedbackSettings(
                dir=Path(env.get("UDFD_FEEDBACK_DIR") or base.feedback.dir),
                repo=env.get("UDFD_FEEDBACK_REPO") or None,
                every_minutes=float(env.get("UDFD_FEEDBACK_EVERY_MINUTES", base.feedback.every_minutes)),
                token=env.get("HF_TOKEN") or None,
                protector=env.get("UDFD_PROTECTOR", base.feedback.protector),
                flags_per_minute=float(env.get("UDFD_FLAGS_PER_MINUTE", base.feedback.flags_per_minute)),
            ),
            concurrency=int(env.get("UDFD_CONCURRENCY", base.concurrency)),
            queue_size=int(env.get("UDFD_QUEUE_SIZE", base.queue_size)),
        )


def _names(value: str) -> tuple[str, ...]:
    return tuple(d.strip() for d in value.split(",") if d.strip())


def read_models_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A detector config file: JSON {"detectors": [names], "models": {name: ref}}; relative paths are from the
    project root. `UDFD_MODEL_<NAME>` and `UDFD_DETECTORS` still override it."""
    file = Path(path) if Path(path).is_absolute() else PROJECT_ROOT / path
    try:
        spec = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UdfdError(f"cannot read the detector config UDFD_MODELS_FILE={path}: {e}") from e
    if (not isinstance(spec, dict) or not isinstance(spec.get("models", {}), dict)
            or not isinstance(spec.get("detectors", []), list)):
        raise UdfdError(f"{file}: expected {{\"detectors\": [...], \"models\": {{name: ref}}}}")
    # A model may list several references, tried in order (Hub first, the embedded folder as the fallback);
    # relative local-dir paths are from the project root, whatever the working directory.
    models = {}
    for name, value in spec.get("models", {}).items():
        refs = value if isinstance(value, list) else str(value).split("|")
        models[name] = " | ".join(_rooted(str(r).strip()) for r in refs if str(r).strip())
    return {**spec, "models": models}


def _rooted(ref: str) -> str:
    if ref.startswith("local-dir:") and not Path(ref.removeprefix("local-dir:")).expanduser().is_absolute():
        return f"local-dir:{PROJECT_ROOT / ref.removeprefix('local-dir:')}"
    return ref


def _cache_dir(env: dict[str, str]) -> str:
    value = env.get("UDFD_CACHE_DIR", "").strip()
    if value.lower() in ("off", "none", "0"):
        return ""
    return value or str(Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "udfd")
