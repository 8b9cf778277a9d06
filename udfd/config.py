"""Typed settings. The environment is read once, in `Settings.from_env()`, at the edges (app, CLI)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_MODELS = PROJECT_ROOT / "models"

# Short names -> model references. Env `UDFD_MODEL_<NAME>` overrides one (e.g. UDFD_MODEL_VIT=hf-hub:org/repo).
DEFAULT_MODELS: dict[str, str] = {
    "vit": f"local-dir:{EMBEDDED_MODELS / 'udfd-vit-tiny'}",
    "cnn": f"local-dir:{EMBEDDED_MODELS / 'udfd-cnn'}",
    "mobilenet_v2": f"local-dir:{EMBEDDED_MODELS / 'udfd-mobilenet-v2'}",
    "ocvae": f"local-dir:{EMBEDDED_MODELS / 'udfd-ocvae'}",
}


@dataclass(frozen=True)
class FaceSettings:
    backend: str = "mediapipe"  # "mediapipe" | "haar" | "yunet"
    margin: float = 0.2  # extra border around the detected box, as a share of the box side
    min_confidence: float = 0.5
    max_faces: int = 20
    yunet_model: str | None = None  # path to a YuNet ONNX file when backend == "yunet"


@dataclass(frozen=True)
class FeedbackSettings:
    """Where flags go (see udfd/feedback.py) and how they are screened and pushed."""

    dir: Path = PROJECT_ROOT / ".udfd" / "feedback"
    repo: str | None = None  # private Hub dataset "org/name" to push to with CommitScheduler (needs a token)
    every_minutes: float = 10.0
    token: str | None = None  # None: huggingface_hub's own lookup (HF_TOKEN, `hf auth login`)
    protector: str = f"local-dir:{EMBEDDED_MODELS / 'udfd-protector'}"


@dataclass(frozen=True)
class Settings:
    detectors: tuple[str, ...] = ("vit",)
    models: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_MODELS))
    faces: FaceSettings = field(default_factory=FaceSettings)
    max_pixels: int = 50_000_000
    max_file_bytes: int = 50 * 1024 * 1024
    uncertain_band: float = 0.1  # |fake_prob - threshold| below this -> "uncertain"
    device: str = "cpu"
    feedback: FeedbackSettings = field(default_factory=FeedbackSettings)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        base = cls()
        models = dict(base.models)
        for key, value in env.items():
            if key.startswith("UDFD_MODEL_") and value:
                models[key.removeprefix("UDFD_MODEL_").lower()] = value
        dets = tuple(d.strip() for d in env.get("UDFD_DETECTORS", ",".join(base.detectors)).split(",") if d.strip())
        faces = replace(
            base.faces,
            backend=env.get("UDFD_FACE_BACKEND", base.faces.backend),
            margin=float(env.get("UDFD_FACE_MARGIN", base.faces.margin)),
            yunet_model=env.get("UDFD_YUNET_MODEL", base.faces.yunet_model),
        )
        return replace(
            base,
            detectors=dets,
            models=models,
            faces=faces,
            max_pixels=int(env.get("UDFD_MAX_PIXELS", base.max_pixels)),
            max_file_bytes=int(env.get("UDFD_MAX_FILE_BYTES", base.max_file_bytes)),
            uncertain_band=float(env.get("UDFD_UNCERTAIN_BAND", base.uncertain_band)),
            device=env.get("UDFD_DEVICE", base.device),
            feedback=FeedbackSettings(
                dir=Path(env.get("UDFD_FEEDBACK_DIR") or base.feedback.dir),
                repo=env.get("UDFD_FEEDBACK_REPO") or None,
                every_minutes=float(env.get("UDFD_FEEDBACK_EVERY_MINUTES", base.feedback.every_minutes)),
                token=env.get("HF_TOKEN") or None,
                protector=env.get("UDFD_PROTECTOR", base.feedback.protector),
            ),
        )
