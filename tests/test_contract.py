"""One contract test over every registered detector family (STYLE.md rule 11)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from udfd.detectors import families
from udfd.detectors.base import Detector
from udfd.hub import read_config
from udfd.types import Score


def _faces(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = [(40, 40), (97, 61), (250, 250), (12, 20)]
    return [rng.integers(0, 256, size=(*sizes[i % 4], 3), dtype=np.uint8) for i in range(n)]


@pytest.fixture(params=sorted(families()))
def detector(request: pytest.FixtureRequest) -> Detector:
    torch.manual_seed(0)
    cls = families()[request.param]
    det = cls.create(cls.tiny_arch)
    det.module().eval()
    return det


def test_implements_protocol(detector: Detector) -> None:
    assert isinstance(detector, Detector)
    assert detector.modality in ("image", "video")


def test_scores_are_probabilities(detector: Detector) -> None:
    scores = detector.predict(detector.preprocess(_faces(6)))
    assert len(scores) == 6
    assert all(isinstance(s, Score) for s in scores)
    probs = np.array([s.fake_prob for s in scores])
    assert np.all(np.isfinite(probs)) and np.all((probs >= 0) & (probs <= 1))


def test_inputs_not_mutated(detector: Detector) -> None:
    faces = _faces(3)
    before = [f.copy() for f in faces]
    detector.predict(detector.preprocess(faces))
    assert all(np.array_equal(a, b) for a, b in zip(faces, before, strict=True))


def test_batch_invariance(detector: Detector) -> None:
    faces = _faces(5)
    together = [s.fake_prob for s in detector.predict(detector.preprocess(faces))]
    alone = [detector.predict(detector.preprocess([f]))[0].fake_prob for f in faces]
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_any_crop_size_gives_same_input_shape(detector: Detector) -> None:
    shapes = {tuple(detector.preprocess([f]).shape[1:]) for f in _faces(4)}
    assert len(shapes) == 1


def test_features_one_row_per_input(detector: Detector) -> None:
    low, high = detector.features(detector.preprocess(_faces(3)))
    assert low.shape[0] == high.shape[0] == 3
    assert torch.isfinite(low).all() and torch.isfinite(high).all()


def test_save_load_round_trip(detector: Detector, tmp_path) -> None:
    detector.set_calibration(temperature=1.7, threshold=0.37)
    detector.save_pretrained(tmp_path, fp16=False)
    config = read_config(tmp_path)
    loaded = type(detector).from_pretrained(tmp_path, config)
    batch = detector.preprocess(_faces(4))
    a = [s.fake_prob for s in detector.predict(batch)]
    b = [s.fake_prob for s in loaded.predict(batch)]
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert loaded.threshold == pytest.approx(0.37) and loaded.temperature == pytest.approx(1.7)
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt")), "weights must be safetensors"


def test_temperature_changes_confidence_not_ranking(detector: Detector) -> None:
    batch = detector.preprocess(_faces(6))
    detector.set_calibration(temperature=1.0, threshold=0.5)
    p1 = np.array([s.fake_prob for s in detector.predict(batch)])
    detector.set_calibration(temperature=4.0, threshold=0.5)
    p4 = np.array([s.fake_prob for s in detector.predict(batch)])
    assert np.all(np.abs(p4 - 0.5) <= np.abs(p1 - 0.5) + 1e-9)
    assert np.array_equal(np.argsort(p1), np.argsort(p4))


def test_explain_target_declared(detector: Detector) -> None:
    target = detector.explain_target()
    if target is None:
        return
    assert target.layers, "an explainable detector names at least one layer"
    if target.reshape_transform is not None:
        acts = {}
        handle = target.layers[0].register_forward_hook(lambda m, i, o: acts.setdefault("a", o))
        detector.predict(detector.preprocess(_faces(2)))
        handle.remove()
        assert target.reshape_transform(acts["a"]).dim() == 4
