"""udfd.detectors.base.resize_batch, the preprocessing every image family shares: the same numbers as normalising
the whole float batch at once ((x / 255 - mean) / std, channel-last, then to NCHW), for any crop size."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from udfd.detectors.base import resize_batch


def _reference(faces: list[np.ndarray], size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    out = np.empty((len(faces), size, size, 3), dtype=np.float32)
    for i, face in enumerate(faces):
        shrink = face.shape[0] > size or face.shape[1] > size
        out[i] = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    out = (out / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


@pytest.mark.parametrize(("size", "mean", "std"), [(224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
                                                   (256, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))])
def test_resize_batch_matches_the_batch_formula_exactly(size: int, mean: tuple[float, ...],
                                                        std: tuple[float, ...]) -> None:
    rng = np.random.default_rng(0)
    faces = [rng.integers(0, 256, (int(rng.integers(40, 400)), int(rng.integers(40, 400)), 3), dtype=np.uint8)
             for _ in range(6)]
    faces.append(faces[0][::2, 1::3])  # a non-contiguous view
    before = [f.copy() for f in faces]
    batch = resize_batch(faces, size, mean, std)
    assert batch.shape == (7, 3, size, size) and batch.dtype == torch.float32 and batch.is_contiguous()
    assert torch.equal(batch, _reference(faces, size, mean, std))
    assert all(np.array_equal(a, b) for a, b in zip(faces, before, strict=True))  # inputs untouched


def test_resize_batch_refuses_a_non_rgb_crop() -> None:
    with pytest.raises(ValueError, match="RGB crop"):
        resize_batch([np.zeros((8, 8), np.uint8)], 16, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert resize_batch([], 16, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)).shape == (0, 3, 16, 16)
