"""MesoNet: the embedded conversions of the authors' weights reproduce Keras' outputs, and say fake = 1 − P(real)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training.convert_mesonet import CHECKPOINTS, convert
from training.mesonet_keras_reference import face_input, random_inputs
from udfd.detectors.mesonet import MesoNet, MesoNetDetector
from udfd.loader import load_detector

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "mesonet_keras_outputs.json").read_text("utf-8"))
WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights" / "mesonet"
SHORT_NAMES = {file: folder.removeprefix("udfd-").replace("-", "_") for file, folder, _, _ in CHECKPOINTS}
N_RANDOM = FIXTURE["inputs"]["random"]["n"]


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


def _assert_matches_keras(det: MesoNetDetector, x: np.ndarray, expected: dict, rows: slice) -> None:
    with torch.inference_mode():
        _, hidden, z = det.net.forward_features(_nchw(x))
    z = z[:, 0].double().numpy()
    # float32 on both sides (oneDNN vs ATen sum in other orders): the 16 hidden units (up to ~90) agree to ~2e-5, the
    # outputs to 1e-5; z is compared relatively because P(real) saturates (MesoInception's z reaches ~90 on noise)
    np.testing.assert_allclose(hidden.numpy(), np.array(expected["hidden"])[rows], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(1 / (1 + np.exp(-z)), np.array(expected["p_real"])[rows], atol=1e-5)
    np.testing.assert_allclose(z, np.array(expected["z"])[rows], rtol=1e-5, atol=1e-5)
    fake = np.array([s.fake_prob for s in det.predict(_nchw(x))])
    np.testing.assert_allclose(fake, 1 - np.array(expected["p_real"])[rows], atol=1e-5)  # orientation


@pytest.mark.parametrize("file", sorted(FIXTURE["outputs"]))
def test_embedded_checkpoint_matches_keras_on_seeded_inputs(file: str) -> None:
    det = load_detector(SHORT_NAMES[file])
    assert isinstance(det, MesoNetDetector) and det.arch["variant"] == FIXTURE["outputs"][file]["variant"]
    _assert_matches_keras(det, random_inputs(), FIXTURE["outputs"][file], slice(0, N_RANDOM))


@pytest.mark.integration
@pytest.mark.parametrize("file", sorted(FIXTURE["outputs"]))
def test_embedded_checkpoint_matches_keras_on_dev_faces(file: str, shared_faces: Path) -> None:
    inputs = []
    for face in FIXTURE["inputs"]["faces"]:
        x, sha = face_input(shared_faces / face["path"])
        assert sha == face["pixels_sha256"], f"{face['path']} decodes differently here than when the fixture was made"
        inputs.append(x)
    det = load_detector(SHORT_NAMES[file])
    _assert_matches_keras(det, np.stack(inputs), FIXTURE["outputs"][file], slice(N_RANDOM, None))


@pytest.mark.parametrize(("file", "folder", "variant"), [c[:3] for c in CHECKPOINTS])
def test_converter_reproduces_the_embedded_weights(file: str, folder: str, variant: str) -> None:
    if not (WEIGHTS / file).is_file():
        pytest.skip(f"authors' weights not found at {WEIGHTS}")
    fresh = convert(WEIGHTS / file, variant=variant).net.state_dict()
    embedded = load_detector(SHORT_NAMES[file]).net.state_dict()
    assert fresh.keys() == embedded.keys()
    assert all(torch.equal(fresh[k], embedded[k]) for k in fresh), "models/ is out of date: rerun convert_mesonet.py"


def test_flatten_is_channels_last() -> None:
    """A Dense weight that reads only Keras' flat index 1 (= h0, w0, channel 1) must see channel 1, not (c0, h0, w1)."""
    net = MesoNet(variant="meso4", image_size=256).eval()
    seen = {}
    net.head[1].register_forward_hook(lambda m, i, o: seen.update(flat=i[0]))
    x = torch.rand(1, 3, 256, 256)
    net(x)
    y = x
    for block in net.blocks:
        y = block(y)
    assert torch.equal(seen["flat"][0, 1], y[0, 1, 0, 0])


@pytest.mark.parametrize("variant", ["meso4", "mesoinception4"])
def test_two_class_logits_say_fake_is_one_minus_p_real(variant: str) -> None:
    torch.manual_seed(0)
    det = MesoNetDetector.create({"variant": variant, "image_size": 64})
    x = torch.rand(3, 3, 64, 64)
    with torch.inference_mode():
        p_real = torch.sigmoid(det.net.real_logit(x))
    np.testing.assert_allclose([s.fake_prob for s in det.predict(x)], (1 - p_real).numpy(), atol=1e-6)


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown MesoNet variant"):
        MesoNet(variant="meso5")
