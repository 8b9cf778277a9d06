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


def test_training_crops_are_resized_as_the_detectors_resize_them(tmp_path, monkeypatch) -> None:
    """training/data.py's cached crops go through resize_face, so a small face is enlarged bilinearly in training
    as in the product (cv2's area mode, used before, enlarges in blocks: another texture than the model meets)."""
    from types import SimpleNamespace

    import training.data as data
    from udfd.config import FaceSettings
    from udfd.detectors.base import resize_face

    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (60, 50, 3), dtype=np.uint8)
    (tmp_path / "real" / "src").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "real" / "src" / "a.png"), cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    monkeypatch.setattr(data, "get_face_detector", lambda faces: None)
    monkeypatch.setattr(data, "detect_faces", lambda pixels, faces, detector=None: [
        SimpleNamespace(pixels=pixels, face_found=True)])
    samples = [data.Sample("real/src/a.png", 0, "src", "g")]
    crops = data.cached_crops(tmp_path, samples, faces=FaceSettings(), size=160, cache_dir=tmp_path / "cache")
    assert np.array_equal(crops[0], resize_face(small, 160))
    assert np.array_equal(resize_face(small, 160), cv2.resize(small, (160, 160), interpolation=cv2.INTER_LINEAR))
    assert not np.array_equal(crops[0], cv2.resize(small, (160, 160), interpolation=cv2.INTER_AREA))
    big = rng.integers(0, 256, (400, 300, 3), dtype=np.uint8)
    assert np.array_equal(resize_face(big, 160), cv2.resize(big, (160, 160), interpolation=cv2.INTER_AREA))


def test_area_mode_enlarges_with_area_and_a_model_records_its_mode() -> None:
    """`arch.resize: area` (loso_frozen.py's default crops): faces are enlarged with cv2's area mode in the
    product too, and the ensemble resizes once in its largest member's mode."""
    from udfd.detectors.base import resize_face
    from udfd.detectors.timm_classifier import TimmDetector

    rng = np.random.default_rng(2)
    small = rng.integers(0, 256, (50, 40, 3), dtype=np.uint8)
    assert np.array_equal(resize_face(small, 96, "area"), cv2.resize(small, (96, 96), interpolation=cv2.INTER_AREA))
    with pytest.raises(ValueError, match="resize mode"):
        resize_face(small, 96, "cubic")
    det = TimmDetector.create({**TimmDetector.tiny_arch, "image_size": 64, "resize": "area"})
    assert det.resize_mode == "area"
    want = resize_batch([small], 64, det.mean, det.std, "area")
    assert torch.equal(det.preprocess([small]), want)
    assert not torch.equal(want, resize_batch([small], 64, det.mean, det.std))
