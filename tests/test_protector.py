"""The protector: decision rule, checkpoint round trip, training smoke run, flag simulation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from udfd.config import PROJECT_ROOT
from udfd.feedback.protector import Protector, ProtectorConfig, decide, load_protector


def test_decision_rule_uses_the_users_label() -> None:
    assert decide(0.8, "fake", min_agreement=0.6).decision == "accepted"
    assert decide(0.8, "real", min_agreement=0.6).decision == "suspicious"
    s = decide(0.3, "real", min_agreement=0.6)
    assert s.decision == "accepted" and s.agreement == pytest.approx(0.7) and "P(real) = 0.70" in s.reason
    assert decide(0.5, "fake", min_agreement=0.5).decision == "accepted"  # the boundary belongs to "accepted"


def test_round_trip_and_screening(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = ProtectorConfig(low_dim=6, high_dim=4, hidden=8, embed=3, feature_mean=tuple([0.1] * 10),
                          feature_std=tuple([2.0] * 10), min_agreement=0.55, detector="cnn")
    p = Protector.create(cfg)
    p.version = "t1"
    p.save_pretrained(tmp_path / "prot")
    q = load_protector(f"local-dir:{tmp_path / 'prot'}")
    low, high = torch.randn(5, 6), torch.randn(5, 4)
    before = low.clone()
    assert np.allclose(p.fake_prob(low, high), q.fake_prob(low, high))
    assert torch.equal(low, before), "inputs are not modified"
    assert q.config == cfg and q.version == "t1"
    out = q.screen(low, high, ["fake", "real", "fake", "real", "fake"])
    probs = q.fake_prob(low, high)
    for s, prob, lab in zip(out, probs, ["fake", "real", "fake", "real", "fake"], strict=True):
        assert s.fake_prob == pytest.approx(float(prob))
        assert s.decision == ("accepted" if (prob if lab == "fake" else 1 - prob) >= 0.55 else "suspicious")
    with pytest.raises(ValueError):
        q.screen(low, high, ["fake"])
    assert q.accepts_detector("cnn", 6, 4) is None
    assert "not 'vit'" in q.accepts_detector("vit", 6, 4)
    assert "(6+4)" in q.accepts_detector("cnn", 7, 4)


def test_simulated_flags() -> None:
    from training.eval_poisoning import simulate_flags

    labels = np.array([0, 1] * 50)
    sources = np.array(["a", "b"] * 25 + ["a", "c"] * 25)
    pool = np.arange(100)
    rng = np.random.default_rng(0)
    idx, user, bad = simulate_flags(pool, labels, sources, share=0.3, attack="random", target="c", rng=rng)
    assert len(idx) == 100 and bad.sum() == 30
    assert (user[~bad] == labels[idx[~bad]]).all() and (user[bad] != labels[idx[bad]]).all()
    idx, user, bad = simulate_flags(pool, labels, sources, share=0.5, attack="targeted", target="c", rng=rng)
    assert (sources[idx[bad]] == "c").all() and (labels[idx[bad]] == 1).all() and (user[bad] == 0).all()


@pytest.mark.slow
def test_train_protector_smoke(tmp_path: Path) -> None:
    from training.train_protector import main
    from udfd.detectors.vit import ViTDetector

    torch.manual_seed(0)
    det = ViTDetector.create(ViTDetector.tiny_arch)
    det.save_pretrained(tmp_path / "vit", metadata={"version": "t"}, fp16=False)
    out = main(["--synthetic", "--detector", f"local-dir:{tmp_path / 'vit'}", "--output", str(tmp_path / "p"),
                "--epochs", "2", "--cache-dir", str(tmp_path / "cache"), "--hidden", "8", "--embed", "4",
                "--version", "p1"])
    prot = load_protector(f"local-dir:{out}")
    assert prot.version == "p1" and prot.config.low_dim == ViTDetector.tiny_arch["hidden_size"]
    assert prot.config.temperature > 0
    results = json.loads((out / "eval_results.json").read_text())
    assert {"train", "val", "detector/test", "screening/test"} <= set(results)
    card = (out / "README.md").read_text()
    assert "Three MLPs" in card and "Not run yet" in card and "model-index" in card


def test_embedded_protector_matches_the_embedded_detector() -> None:
    folder = PROJECT_ROOT / "models" / "udfd-protector"
    prot = load_protector(f"local-dir:{folder}")
    vit_meta = json.loads((PROJECT_ROOT / "models" / "udfd-vit-tiny" / "config.json").read_text())
    assert prot.config.detector == "vit" and prot.config.detector_version == f"udfd-vit-tiny@{vit_meta['udfd']['version']}"
    assert (prot.config.low_dim, prot.config.high_dim) == (vit_meta["hidden_size"], vit_meta["hidden_size"])
    results = json.loads((folder / "eval_results.json").read_text())
    assert results["test"]["n"] > 500 and 0.5 < results["test"]["accuracy"] <= 1.0
    assert "Poisoning evaluation" in (folder / "README.md").read_text()
    assert sum(f.stat().st_size for f in folder.iterdir()) < 25e6
