"""The `spectrum` family and how an ensemble feeds it: native-resolution statistics through the batch's side plane."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from udfd.detectors.base import get_family
from udfd.detectors.ensemble import EnsembleDetector, split_side_plane, with_side_plane
from udfd.detectors.spectrum import SpectrumDetector
from udfd.errors import ModelUnavailableError
from udfd.spectrum import FEATURE_SETS, N_FEATURES, N_RESIDUAL, V1, V2, native_statistics, spectrum_features


def _noise(side: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((side, side, 3)) * 255).astype(np.uint8)


def _upsampled(side: int, seed: int = 0) -> np.ndarray:
    """A 2x pixel-replicated face-sized image: the upsampling trace the statistics read."""
    small = _noise(side // 2, seed)
    return np.repeat(np.repeat(small, 2, 0), 2, 1)


def _spectrum(seed: int = 0) -> SpectrumDetector:
    torch.manual_seed(seed)
    det = SpectrumDetector.create({"fake_kinds": ["gan", "diffusion", "face_swap"], "features": V2,
                                   "n_features": FEATURE_SETS[V2]})
    with torch.no_grad():
        det.net.linear.weight.normal_()
    return det


def _ensemble(spectrum: SpectrumDetector) -> EnsembleDetector:
    cnn_cls = get_family("cnn")
    torch.manual_seed(1)
    cnn = cnn_cls.create({**cnn_cls.tiny_arch, "image_size": 32})
    view = spectrum.with_kinds(["gan", "diffusion"])
    specs = [{"family": "cnn"}, {"name": "spectrum", "kinds": ["gan", "diffusion"]}]
    return EnsembleDetector([cnn, view], specs=specs,
                            stack={"terms": [[0, 1]], "mu": [0.0, 0.5], "sd": [1.0, 2.0]})


def test_preprocess_reads_the_crop_at_its_own_resolution() -> None:
    det = _spectrum()
    crops = [_noise(300), _upsampled(200, 1), _noise(20)]
    batch = det.preprocess(crops)
    assert det.arch["features"] == V2 and det.native_width == FEATURE_SETS[V2] == N_FEATURES + N_RESIDUAL
    assert batch.shape == (3, det.native_width) and batch.dtype == torch.float32
    for row, crop in zip(batch, crops, strict=True):
        np.testing.assert_array_equal(row.numpy(), native_statistics(crop, features=V2))
        np.testing.assert_array_equal(row.numpy()[:N_FEATURES], spectrum_features(crop))


def test_a_v1_checkpoint_reads_the_spectrum_alone(tmp_path) -> None:
    """spectrum 1.0 and 1.1 were fitted on the 28 spectrum statistics (the family's default): they keep reading
    those, and no more."""
    det = SpectrumDetector.create({"fake_kinds": ["gan"]})
    assert det.arch["features"] == V1
    det.save_pretrained(tmp_path, fp16=False)
    back = SpectrumDetector.from_pretrained(tmp_path, json.loads((tmp_path / "config.json").read_text()))
    crop = _noise(260, seed=3)
    assert back.native_width == N_FEATURES
    np.testing.assert_array_equal(back.preprocess([crop])[0].numpy(), spectrum_features(crop))
    assert back.preprocess([]).shape == (0, N_FEATURES)


def test_kinds_view_scores_those_heads_only_with_the_same_platt_scaling() -> None:
    det = _spectrum()
    with torch.no_grad():
        det.net.platt.copy_(torch.tensor([0.7, -1.2]))
    x = det.preprocess([_noise(160), _upsampled(160)])
    z = det.net.linear(x)
    view = det.with_kinds(["gan", "diffusion"])
    assert view.name == "spectrum[gan+diffusion]" and det.name == "spectrum"
    idx = [det.net.kinds.index("gan"), det.net.kinds.index("diffusion")]
    expected = 0.7 * torch.logsumexp(z[:, idx], dim=1) - 1.2
    torch.testing.assert_close(view.logits(x)[:, 1], expected)
    torch.testing.assert_close(det.logits(x)[:, 1], 0.7 * torch.logsumexp(z, dim=1) - 1.2)
    with pytest.raises(ModelUnavailableError, match="unknown fake kind"):
        det.with_kinds(["nope"])


def test_a_checkpoint_of_other_statistics_is_refused(tmp_path) -> None:
    det = _spectrum()
    det.save_pretrained(tmp_path, fp16=False)
    config = json.loads((tmp_path / "config.json").read_text())
    config["udfd"]["arch"]["features"] = "udfd.spectrum v0"
    with pytest.raises(ModelUnavailableError, match="this udfd computes"):
        SpectrumDetector.from_pretrained(tmp_path, config)
    config["udfd"]["arch"]["features"] = V1  # a known set, but not the length the heads were fitted on
    with pytest.raises(ModelUnavailableError, match="this udfd computes"):
        SpectrumDetector.from_pretrained(tmp_path, config)


def test_side_plane_round_trip_and_bounds() -> None:
    pixels = torch.rand(2, 3, 8, 8)
    a, b = torch.arange(10.0).view(2, 5), -torch.arange(6.0).view(2, 3)
    batch = with_side_plane(pixels, [a, b])
    assert batch.shape == (2, 4, 8, 8)
    got_pixels, side = split_side_plane(batch)
    torch.testing.assert_close(got_pixels, pixels)
    torch.testing.assert_close(side[:, :5], a)
    torch.testing.assert_close(side[:, 5:8], b)
    assert not side[:, 8:].any()
    with pytest.raises(ValueError, match="do not fit"):
        with_side_plane(torch.rand(1, 3, 4, 4), [torch.zeros(1, 17)])
    assert split_side_plane(pixels)[1] is None


def test_the_ensemble_scores_the_native_member_as_it_scores_alone() -> None:
    """The member's column in the ensemble equals the member's own log-odds on the same crops, although the
    ensemble resizes every face to 32 px for its other member."""
    spectrum = _spectrum()
    ens = _ensemble(spectrum)
    crops = [_noise(300), _upsampled(256, 2), _noise(90, 3)]
    batch = ens.preprocess(crops)
    assert batch.shape == (3, 4, 32, 32)
    d = ens.member_log_odds(batch)
    view = spectrum.with_kinds(["gan", "diffusion"])
    alone = view.logits(view.preprocess(crops))
    torch.testing.assert_close(d[:, 1], (alone[:, 1] - alone[:, 0]) / view.temperature)
    scores, members = ens.predict_with_members(batch)
    assert set(members[0]) == {"cnn", "spectrum[gan+diffusion]"} and len(scores) == 3


def test_the_ensemble_refuses_a_batch_without_its_side_plane() -> None:
    ens = _ensemble(_spectrum())
    pixels = ens.preprocess([_noise(64)])[:, :3]
    with pytest.raises(ModelUnavailableError, match="native-resolution statistics"):
        ens.member_log_odds(pixels)


def test_an_ensemble_of_native_members_only_is_refused() -> None:
    view = _spectrum().with_kinds(["gan"])
    with pytest.raises(ModelUnavailableError, match="reads pixels"):
        EnsembleDetector([view], specs=[{"name": "spectrum"}])


def test_features_and_explanations_read_the_pixels() -> None:
    from udfd.explain import cam_maps

    ens = _ensemble(_spectrum())
    batch = ens.preprocess([_noise(120), _noise(70, 1)])
    low, high = ens.features(batch)
    assert low.shape[0] == high.shape[0] == 2 and torch.isfinite(high).all()
    target = ens.explain_target()
    assert target is not None
    maps = cam_maps(target, batch, method="gradcam", class_index=1)
    assert maps.shape[0] == 2 and np.isfinite(maps).all()


def test_the_embedded_checkpoint_loads_and_its_view_is_the_defaults_member() -> None:
    from udfd.config import PROJECT_ROOT
    from udfd.loader import load_detector

    det = load_detector("spectrum")
    assert det.family == "spectrum" and set(det.net.kinds) >= {"gan", "diffusion"}
    config = json.loads((PROJECT_ROOT / "models" / "udfd-ensemble" / "config.json").read_text(encoding="utf-8"))
    specs = [m for m in config["udfd"]["members"] if m.get("name") == "spectrum"]
    assert specs and specs[0]["kinds"] == ["gan", "diffusion"]
    probs = [s.fake_prob for s in det.predict(det.preprocess([_noise(200), _upsampled(200)]))]
    assert all(0.0 <= p <= 1.0 for p in probs)


@pytest.mark.parametrize("mode", ["onnx", "channels_last"])
def test_a_fast_copys_kinds_view_reads_those_kinds_only(mode: str) -> None:
    """UDFD_FAST may serve a fast copy whose own logits read every kind: its view still reads its kinds."""
    from udfd.fast import accelerate

    det = _spectrum()
    fast = accelerate(det, mode)
    crops = [_noise(200), _upsampled(180, 4)]
    x = det.preprocess(crops)
    torch.testing.assert_close(fast.logits(x), det.logits(x), atol=1e-4, rtol=1e-4)
    view = fast.with_kinds(["gan"])
    torch.testing.assert_close(view.logits(x), det.with_kinds(["gan"]).logits(x), atol=1e-5, rtol=1e-5)


def test_the_checkpoint_reads_the_grid_it_was_fitted_with(tmp_path) -> None:
    """arch.grid travels with the checkpoint: a grid-3 detector reads 3 x 3 windows after a save and load; a config
    without the key (1.0) reads the central window alone."""
    det = SpectrumDetector.create({"fake_kinds": ["gan"], "grid": 3})
    det.save_pretrained(tmp_path, fp16=False)
    back = SpectrumDetector.from_pretrained(tmp_path, json.loads((tmp_path / "config.json").read_text()))
    crop = _noise(420, seed=9)
    np.testing.assert_array_equal(back.preprocess([crop])[0].numpy(), spectrum_features(crop, grid=3))
    old = json.loads((tmp_path / "config.json").read_text())
    del old["udfd"]["arch"]["grid"]
    one = SpectrumDetector.from_pretrained(tmp_path, old)
    np.testing.assert_array_equal(one.preprocess([crop])[0].numpy(), spectrum_features(crop))
