"""UDFD — deepfake detection for faces in images and videos.

Public API: `analyze_image`, `analyze_video`, `load_detector`, `list_detectors`.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["analyze_image", "analyze_video", "list_detectors", "load_detector"]


def analyze_image(source: Any, **kwargs: Any) -> Any:
    """Analyse one image (path, bytes or decoded `Image`) -> `Verdict`. See `udfd.pipeline.analyze_image`."""
    from udfd.pipeline import analyze_image as _analyze

    return _analyze(source, **kwargs)


def analyze_video(source: Any, **kwargs: Any) -> Any:
    """Analyse one video file -> `Verdict` with a `video` summary. See `udfd.pipeline.run_video`."""
    from udfd.pipeline import analyze_video as _analyze

    return _analyze(source, **kwargs)


def load_detector(name_or_ref: str, **kwargs: Any) -> Any:
    """Load (once per process) a detector by short name or `hf-hub:` / `local-dir:` reference."""
    from udfd.loader import load_detector as _load

    return _load(name_or_ref, **kwargs)


def list_detectors() -> dict[str, str]:
    """Configured short names -> model references (after `UDFD_MODEL_<NAME>` overrides)."""
    from udfd.config import Settings

    return dict(Settings.from_env().models)
