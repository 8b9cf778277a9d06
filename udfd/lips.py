"""Lip region of interest: MediaPipe FaceMesh landmarks on a face crop -> square lip crop (the lip_lstm input).

`lip_box` is pure; `LipCropper` wraps the FaceMesh graph (created on first use, serialised by a lock).
When FaceMesh finds no mesh on a face crop, the lower-middle part of the crop stands in and the result says so.
"""

from __future__ import annotations

import threading
from typing import Any

import cv2
import numpy as np

from udfd.errors import ModelUnavailableError
from udfd.faces import crop, square_box
from udfd.types import Box

# Mouth corners (61, 291), outer lip top/bottom (0, 17), inner lip top/bottom (13, 14), inner corners (78, 308).
LIP_LANDMARKS: tuple[int, ...] = (61, 291, 0, 17, 13, 14, 78, 308)
LIP_MARGIN = 0.2


def lip_box(points: np.ndarray, *, width: int, height: int, margin: float = LIP_MARGIN) -> Box:
    """Square box around the lip landmarks of a (468, 2) pixel-coordinate mesh, inside a width×height image."""
    lips = np.asarray(points, np.float64)[list(LIP_LANDMARKS)]
    x0, y0 = np.floor(lips.min(axis=0)).astype(int)
    x1, y1 = np.ceil(lips.max(axis=0)).astype(int)
    x0, y0 = max(int(x0), 0), max(int(y0), 0)
    x1, y1 = max(min(int(x1), width), x0 + 1), max(min(int(y1), height), y0 + 1)
    return square_box((x0, y0, x1, y1), margin=margin, width=width, height=height)


def fallback_lip_box(width: int, height: int) -> Box:
    """Where the mouth sits in a margin-expanded square face crop when no mesh is found."""
    side = max(1, round(0.4 * min(width, height)))
    cx, cy = width / 2, 0.72 * height
    x0 = int(min(max(round(cx - side / 2), 0), width - side))
    y0 = int(min(max(round(cy - side / 2), 0), height - side))
    return (x0, y0, x0 + side, y0 + side)


class LipCropper:
    """FaceMesh (static-image mode, one face) over face crops."""

    def __init__(self, *, min_confidence: float = 0.3) -> None:
        self.min_confidence = min_confidence
        self._lock = threading.Lock()
        self._mesh: Any = None

    def landmarks(self, face: np.ndarray) -> np.ndarray | None:
        """(468, 2) landmark pixel coordinates in `face`, or None when no mesh is found."""
        image = np.ascontiguousarray(face)
        height, width = image.shape[:2]
        with self._lock:
            if self._mesh is None:
                try:
                    import mediapipe as mp
                except ImportError as e:
                    raise ModelUnavailableError("mediapipe is not installed; pip install mediapipe==0.10.21") from e
                self._mesh = mp.solutions.face_mesh.FaceMesh(
                    static_image_mode=True, max_num_faces=1, refine_landmarks=False,
                    min_detection_confidence=self.min_confidence,
                )
            result = self._mesh.process(image)
        if not result.multi_face_landmarks:
            return None
        marks = result.multi_face_landmarks[0].landmark
        return np.array([(p.x * width, p.y * height) for p in marks], np.float32)

    def lip_crop(self, face: np.ndarray, *, size: int = 64) -> tuple[np.ndarray, bool]:
        """(size×size RGB lip crop, mesh_found). `face` is not modified."""
        height, width = face.shape[:2]
        points = self.landmarks(face)
        box = lip_box(points, width=width, height=height) if points is not None else fallback_lip_box(width, height)
        lips = crop(face, box)
        interp = cv2.INTER_AREA if lips.shape[0] > size else cv2.INTER_LINEAR
        return cv2.resize(lips, (size, size), interpolation=interp), points is not None

    def close(self) -> None:
        with self._lock:
            if self._mesh is not None:
                self._mesh.close()
            self._mesh = None


_CROPPER = LipCropper()


def get_lip_cropper() -> LipCropper:
    """The shared cropper (one FaceMesh graph per process)."""
    return _CROPPER
