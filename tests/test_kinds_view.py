"""A kinds model scored by some of its kinds' heads only: `TimmDetector.with_kinds`, the ensemble member spec
`{"name": ..., "kinds": [...]}` (`udfd.detectors.ensemble.kinds_member`) and the training side that writes its
scores (`KindsFit.logit(x, kinds)`, `loso_frozen.py --score-kinds`, `fit_ensemble.member_spec`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training.fit_ensemble import member_spec
from training.kinds import KindsFit
from udfd.config import Settings
from udfd.detectors.ensemble import kinds_member
from udfd.detectors.timm_classifier import TimmDetector
from udfd.errors import ModelUnavailableError
from udfd.fast import accelerate
from udfd.hub import CONFIG_NAME, UDFD_KEY
from udfd.loader import load_detector

TINY = {"image_size": 64, "model": "tf_efficientnet_lite0", "stats_stages": [3],
        "fake_kinds": ["face_swap", "gan", "diffusion"]}


def _faces(n: int = 4) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (80, 72, 3), dtype=np.uint8) for _ in range(n)]


def _detector(seed: int = 1) -> TimmDetector:
    torch.manual_seed(seed)
    det = TimmDetector.create(TINY)
    with torch.no_grad():
        det.net.classifier.linear.weight.normal_(0, 0.05)
        det.net.classifier.linear.bias.normal_(0, 1.0)
        det.net.classifier.platt.copy_(torch.tensor([0.7, -0.4]))
    return det


def _fit_of(det: TimmDetector) -> KindsFit:
    head = det.net.classifier
    platt = tuple(float(v) for v in head.platt)
    return KindsFit(tuple(head.kinds), head.linear.weight.detach().numpy().astype(float),
                    head.linear.bias.detach().numpy().astype(float), {}, platt)


def test_a_view_scores_with_its_kinds_heads_only_and_shares_the_network() -> None:
    det = _detector()
    view = det.with_kinds(["gan"])
    assert view.name == "timm[gan]" and view.module() is det.module() and det.kinds_used is None
    batch = det.preprocess(_faces())
    with torch.inference_mode():
        feats = det.head_input(batch).numpy().astype(float)
        got, full = view.logits(batch), det.logits(batch)
    fit = _fit_of(det)
    assert torch.allclose(got[:, 0], torch.zeros(len(batch)))
    # one kind: the Platt-scaled score of that kind alone; the detector itself still reads every kind
    assert np.allclose(got[:, 1].numpy(), fit.logit(feats, ("gan",)), atol=1e-4)
    assert np.allclose(got[:, 1].numpy(), 0.7 * fit.kind_logits(feats)[:, 1] - 0.4, atol=1e-4)
    assert np.allclose(full[:, 1].numpy(), fit.logit(feats), atol=1e-4)
    assert not np.allclose(got[:, 1].numpy(), full[:, 1].numpy(), atol=1e-2)
    two = det.with_kinds(["face_swap", "diffusion"])
    with torch.inference_mode():
        assert np.allclose(two.logits(batch)[:, 1].numpy(), fit.logit(feats, ("face_swap", "diffusion")), atol=1e-4)


def test_an_unknown_kind_or_a_model_without_kinds_heads_is_refused_by_name() -> None:
    with pytest.raises(ModelUnavailableError, match=r"unknown fake kind.*'blend'.*face_swap"):
        _detector().with_kinds(["blend"])
    with pytest.raises(ModelUnavailableError, match="unknown fake kind"):
        _detector().with_kinds([])
    plain = TimmDetector.create({"image_size": 64, "model": "tf_efficientnet_lite0", "stats_stages": [3]})
    with pytest.raises(ModelUnavailableError, match="has no kinds heads"):
        plain.with_kinds(["gan"])
    with pytest.raises(ModelUnavailableError, match="has no kinds heads"):
        kinds_member(load_detector("cnn", settings=Settings(fast="off")), ["gan"])
    with pytest.raises(ValueError, match=r"no head for kind\(s\) \['blend'\]"):
        fit = _fit_of(_detector())
        fit.logit(np.zeros((1, fit.weight.shape[1])), ("blend",))


def test_the_view_of_an_onnx_copy_runs_the_same_session_and_keeps_every_score() -> None:
    det = _detector()
    fast = accelerate(det, "onnx")
    calls = []
    session = fast.onnx_scores  # the graph gives every kind's score (onnx_split); torch combines them

    def counted(batch: torch.Tensor) -> torch.Tensor:
        calls.append(len(batch))
        return session(batch)

    fast.onnx_scores = counted
    view = fast.with_kinds(["face_swap"])
    assert view.fast_mode == "onnx" and view.name == "timm[face_swap]"
    assert view.eager.kinds_used == ("face_swap",) and view.eager.module() is det.module()
    batch = det.preprocess(_faces())
    a = np.array([s.fake_prob for s in view.predict(batch)])
    assert calls == [len(batch)]  # through the copy's own session: no second graph in memory
    b = np.array([s.fake_prob for s in det.with_kinds(["face_swap"]).predict(batch)])
    assert np.allclose(a, b, atol=1e-4)
    full = np.array([s.fake_prob for s in fast.predict(batch)])  # the copy itself still reads every kind
    assert np.allclose(full, [s.fake_prob for s in det.predict(batch)], atol=1e-4)
    assert not np.allclose(full, a, atol=1e-3)


def test_an_ensemble_reads_a_kinds_spec_from_its_config(tmp_path) -> None:
    det = _detector()
    det.save_pretrained(tmp_path / "kinds")
    meta = {"family": "ensemble", "name": "swap_test", "version": "t",
            "members": [{"name": f"local-dir:{tmp_path / 'kinds'}", "kinds": ["face_swap"]},
                        {"name": f"local-dir:{tmp_path / 'kinds'}"}],
            "stack": {"mu": [0.0, 0.0], "sd": [1.0, 1.0], "weights": [0.5, 0.5], "bias": 0.0, "rule": "mean"},
            "threshold": 0.5, "temperature": 1.0}
    (tmp_path / "ens").mkdir()
    (tmp_path / "ens" / CONFIG_NAME).write_text(json.dumps({UDFD_KEY: meta}), encoding="utf-8")
    ens = load_detector(f"local-dir:{tmp_path / 'ens'}", settings=Settings(fast="off"))
    assert ens.member_names == ["timm[face_swap]", "timm"]
    assert ens.members[0].module() is ens.members[1].module()  # one network in memory for both
    batch = ens.preprocess(_faces())
    loaded = ens.members[1]
    with torch.inference_mode():
        d = ens.member_log_odds(batch)
        own = loaded.with_kinds(["face_swap"]).logits(loaded.preprocess(_faces()))[:, 1] / loaded.temperature
    assert np.allclose(d[:, 0].numpy(), own.numpy(), atol=1e-3)
    assert not np.allclose(d[:, 0].numpy(), d[:, 1].numpy(), atol=1e-2)


def test_fit_ensemble_writes_a_kinds_member_spec() -> None:
    assert member_spec("effnet_lite0") == {"name": "effnet_lite0"}
    assert member_spec("effnet_lite0_kinds[face_swap]") == {"name": "effnet_lite0_kinds", "kinds": ["face_swap"]}
    assert member_spec("m[gan+diffusion]") == {"name": "m", "kinds": ["gan", "diffusion"]}
    for bad in ("m[]", "m[gan"):
        with pytest.raises(SystemExit, match=r"DETECTOR\[kind\+kind\]"):
            member_spec(bad)


def test_loso_frozen_refuses_score_kinds_without_fake_kinds(tmp_path, capsys) -> None:
    from training.loso_frozen import main

    with pytest.raises(SystemExit):
        main(["--data", str(tmp_path), "--score-kinds", "face_swap"])
    assert "--score-kinds needs --fake-kinds" in capsys.readouterr().err


@pytest.mark.parametrize("served", ["eager", "onnx"])
def test_an_ensemble_of_views_of_one_network_runs_it_once_per_batch(served: str) -> None:
    """The default image ensemble holds two views of effnet_lite0_kinds: they share one pass, and each still reads
    its own kinds (the same numbers as the view run alone)."""
    from udfd.detectors.ensemble import EnsembleDetector

    det = _detector()
    base = accelerate(det, "onnx") if served == "onnx" else det
    calls = []
    if served == "onnx":
        session = base.onnx_scores

        def counted(batch: torch.Tensor) -> torch.Tensor:
            calls.append(len(batch))
            return session(batch)

        base.onnx_scores = counted
    else:
        features = base.net.features

        def counted(batch: torch.Tensor) -> torch.Tensor:
            calls.append(len(batch))
            return features(batch)

        base.net.features = counted
    views = [base.with_kinds(["gan", "diffusion"]), base.with_kinds(["face_swap"])]
    stack = {"mu": [0.0, 0.0], "sd": [1.0, 1.0], "weights": [0.5, 0.5], "bias": 0.0, "rule": "lse",
             "terms": [[0], [1]], "term_mu": [0.0, 0.0], "term_sd": [1.0, 1.0]}
    ens = EnsembleDetector(views, specs=[{"name": "k", "kinds": ["gan", "diffusion"]}, {"name": "k", "kinds":
                                                                                       ["face_swap"]}], stack=stack)
    batch = ens.preprocess(_faces())
    d = ens.member_log_odds(batch)
    assert calls == [len(batch)], "one pass of the shared network for both views"
    with torch.inference_mode():
        own = [v.logits(v.preprocess(_faces()))[:, 1] / v.temperature for v in views]
    assert np.allclose(d.numpy(), torch.stack(own, dim=1).numpy(), atol=1e-3)
    assert not np.allclose(d[:, 0].numpy(), d[:, 1].numpy(), atol=1e-2)
