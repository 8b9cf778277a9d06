"""The one-class VAE family: error maps, score options, calibration, and a one-epoch training smoke run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from udfd.config import Settings
from udfd.detectors.ocvae import OCVAEDetector, fft_error_spectrum, fit_logistic, score_to_fake_prob, vae_loss
from udfd.loader import clear_cache, load_detector

TINY = json.dumps(OCVAEDetector.tiny_arch)


def _faces(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(40 + 7 * i, 50, 3), dtype=np.uint8) for i in range(n)]


@pytest.fixture()
def det() -> OCVAEDetector:
    torch.manual_seed(0)
    return OCVAEDetector.create(OCVAEDetector.tiny_arch)


def test_error_map_shape_range_and_inputs_untouched(det):
    faces = _faces(3)
    before = [f.copy() for f in faces]
    batch = det.preprocess(faces)
    batch_before = batch.clone()
    err = det.error_map(batch)
    rel = det.error_map(batch, relative=True)
    rec = det.reconstruct(batch)
    assert err.shape == rel.shape == (3, 64, 64) and err.dtype == np.float32
    assert np.isfinite(err).all() and err.min() >= 0 and err.max() <= 1 and err.max() > 0
    np.testing.assert_allclose(rel.max(axis=(1, 2)), 1.0, atol=1e-6)
    assert rec.shape == (3, 64, 64, 3) and rec.dtype == np.uint8
    assert torch.equal(batch, batch_before)
    assert all(np.array_equal(a, b) for a, b in zip(faces, before, strict=True))


def test_error_map_in_pixel_units_for_both_ranges():
    torch.manual_seed(0)
    sym = OCVAEDetector.create({**OCVAEDetector.tiny_arch, "pixel_range": "symmetric"})
    batch = sym.preprocess(_faces(2))
    assert batch.min() < 0  # inputs in [-1, 1]
    err = sym.error_map(batch)
    assert err.min() >= 0 and err.max() <= 1


def test_scores_are_deterministic_and_latent_option_differs(det):
    batch = det.preprocess(_faces(4))
    pixel = det.anomaly_scores(batch)
    assert torch.equal(pixel, det.anomaly_scores(batch))  # decoded from μ: no sampling at inference
    latent_det = OCVAEDetector(det.model, arch={**det.arch, "score": "latent"}, meta={})
    latent = latent_det.anomaly_scores(batch)
    assert latent.shape == (4,) and torch.isfinite(latent).all() and not torch.allclose(latent, pixel)
    assert torch.allclose(latent, det.anomaly_scores(batch, score="latent"))
    probs = [s.fake_prob for s in latent_det.predict(batch)]
    assert all(0 <= p <= 1 for p in probs)
    with pytest.raises(ValueError):
        OCVAEDetector.create({**OCVAEDetector.tiny_arch, "score": "psnr"})


def test_vae_loss_is_kl_plus_rss():
    x = torch.zeros(2, 3, 4, 4)
    x_hat = torch.full_like(x, 0.5)
    mu, logvar = torch.zeros(2, 3), torch.zeros(2, 3)
    total, rss, kl = vae_loss(x, x_hat, mu, logvar)
    assert rss.item() == pytest.approx(48 * 0.25) and kl.item() == pytest.approx(0.0)
    _, _, kl2 = vae_loss(x, x_hat, torch.ones(2, 3), logvar)
    assert kl2.item() == pytest.approx(1.5)  # ½ Σ μ² over 3 dims
    assert total.item() == pytest.approx(rss.item())


def test_calibration_is_monotone_and_thresholds_map_through_it(det):
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.normal(0.10, 0.02, 200), rng.normal(0.14, 0.02, 200)])
    labels = np.repeat([0, 1], 200)
    a, b = fit_logistic(scores, labels)
    assert a > 0
    grid = np.linspace(0.0, 0.3, 50)
    assert np.all(np.diff(score_to_fake_prob(grid, slope=a, intercept=b)) > 0)
    # scores anti-correlated with the label still give an increasing map (slope floored above 0)
    assert fit_logistic(scores, 1 - labels)[0] > 0
    det.set_score_calibration(slope=a, intercept=b, score_thresholds={"percentile_80": 0.11, "val_f1": 0.12})
    assert det.thresholds["percentile_80"]["fake_prob"] < det.thresholds["val_f1"]["fake_prob"]
    assert det.threshold == pytest.approx(det.thresholds["val_f1"]["fake_prob"])
    batch = det.preprocess(_faces(5))
    s = det.anomaly_scores(batch).detach().numpy()
    p = np.array([x.fake_prob for x in det.predict(batch)])
    np.testing.assert_allclose(p, det.fake_prob_of_score(s), atol=1e-5)
    assert np.array_equal(np.argsort(s), np.argsort(p))
    det.set_threshold_rule("percentile_80")
    assert det.threshold == pytest.approx(det.thresholds["percentile_80"]["fake_prob"])
    with pytest.raises(ValueError):
        det.set_threshold_rule("median")
    with pytest.raises(ValueError):
        det.set_score_calibration(slope=-1.0, intercept=0.0, score_thresholds={"val_f1": 0.1})


def test_fft_error_spectrum():
    flat = np.full((16, 16), 0.3)
    spec = fft_error_spectrum(flat)
    assert spec.shape == (16, 16) and spec[8, 8] == pytest.approx(1.0) and spec.sum() == pytest.approx(1.0)
    batch = np.random.default_rng(0).random((3, 20, 24))
    out = fft_error_spectrum(batch)
    assert out.shape == (3, 20, 24) and np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert np.array_equal(fft_error_spectrum(np.zeros((4, 4))), np.zeros((4, 4)))
    with pytest.raises(ValueError):
        fft_error_spectrum(np.zeros(5))


def test_accepts_only_declared_family():
    assert OCVAEDetector.accepts({"udfd": {"family": "ocvae"}})
    assert not OCVAEDetector.accepts({"udfd": {"family": "vit"}})
    assert not OCVAEDetector.accepts({"model_type": "vit", "id2label": {"0": "real", "1": "fake"}})


@pytest.mark.slow
def test_train_smoke_writes_a_loadable_checkpoint(tmp_path):
    from training.train_ocvae import PLOTS, main

    out = tmp_path / "ckpt"
    main(["--synthetic", "--output", str(out), "--epochs", "1", "--batch-size", "4", "--report-to", "none",
          "--cache-dir", str(tmp_path / "cache"), "--arch", TINY, "--version", "t1"])
    for name in ("config.json", "model.safetensors", "README.md", "eval_results.json", "split.json", *PLOTS.values()):
        assert (out / name).is_file(), name
    meta = json.loads((out / "config.json").read_text())["udfd"]
    assert meta["family"] == "ocvae" and meta["version"] == "t1" and meta["threshold_rule"] == "val_f1"
    assert set(meta["thresholds"]) == {"percentile_80", "val_f1"}
    assert meta["threshold"] == pytest.approx(meta["thresholds"]["val_f1"]["fake_prob"])
    assert meta["calibration"]["a"] > 0
    card = (out / "README.md").read_text()
    assert "Threshold table" in card and "80th percentile of train-real scores" in card and "(in use)" in card
    assert "model-index" in card and PLOTS["hist"] in card
    assert "## Robustness" in card and "| jpeg50 |" in card and "face crops scored clean" in card
    results = json.loads((out / "eval_results.json").read_text())
    assert {"train", "val", "test@percentile_80", "test@val_f1"} <= set(results)

    clear_cache()
    loaded = load_detector(f"local-dir:{out}", settings=Settings())
    assert isinstance(loaded, OCVAEDetector) and loaded.threshold == pytest.approx(meta["threshold"])
    batch = loaded.preprocess([np.zeros((40, 40, 3), np.uint8), np.full((50, 30, 3), 200, np.uint8)])
    assert all(0 <= s.fake_prob <= 1 for s in loaded.predict(batch))
    assert loaded.error_map(batch).shape == (2, 64, 64)
    clear_cache()
