"""One head per kind of fake: the product's `KindsHead` (timm family, `arch.fake_kinds`) and `training/kinds.py`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training.kinds import KindsFit, fit_kinds, load_kinds, platt_scaling, row_kinds
from training.loso_frozen import fit_head
from udfd.config import Settings
from udfd.detectors.base import get_family
from udfd.detectors.timm_classifier import KindsHead, TimmDetector
from udfd.explain import explain_faces
from udfd.loader import load_detector

TINY = {"image_size": 64, "model": "tf_efficientnet_lite0", "stats_stages": [3],
        "fake_kinds": ["face_swap", "gan", "diffusion"]}
CONFIG = Path(__file__).resolve().parents[1] / "training" / "configs" / "fake_kinds.json"


def _faces(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (80, 72, 3), dtype=np.uint8) for _ in range(n)]


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


def test_head_gives_real_logit_zero_and_fake_logit_the_log_sum_exp_of_the_kinds() -> None:
    torch.manual_seed(0)
    head = KindsHead(6, ["a", "b"])
    x = torch.randn(5, 6)
    out = head(x)
    assert out.shape == (5, 2)
    assert torch.all(out[:, 0] == 0)
    assert torch.allclose(out[:, 1], torch.logsumexp(head.linear(x), dim=1))  # Platt (1, 0) until fitted
    # so fake_prob = softmax(...)[1] = sigmoid(lse): at least as high as any single kind's sigmoid
    p = torch.softmax(out, dim=1)[:, 1]
    assert torch.all(p >= torch.sigmoid(head.linear(x)).max(dim=1).values - 1e-6)


def test_kinds_must_be_distinct_and_need_stage_statistics() -> None:
    with pytest.raises(ValueError, match="distinct"):
        KindsHead(4, ["gan", "gan"])
    with pytest.raises(ValueError, match="stats_stages"):
        TimmDetector.create({**TINY, "stats_stages": None})


def test_a_kinds_checkpoint_explains_and_serves_as_an_ensemble_member() -> None:
    """(Saving and loading: tests/test_stage_stats.py's round trip covers `fake_kinds`.)"""
    torch.manual_seed(1)
    det = TimmDetector.create(TINY)
    assert isinstance(det.net.classifier, KindsHead) and det.net.classifier.kinds == TINY["fake_kinds"]
    with torch.no_grad():
        det.net.classifier.linear.weight.normal_(0, 0.05)
    maps = explain_faces(det, _faces(2), [(0, 0, 72, 80)] * 2, method=None)
    assert len(maps) == 2 and np.isfinite(maps[0].values).all()
    ens = get_family("ensemble").create({"members": [{"family": "timm", "arch": TINY}]})
    log_odds = ens.net.member_log_odds(torch.rand(2, 3, 64, 64))
    assert log_odds.shape == (2, 1) and torch.isfinite(log_odds).all()


def _two_kinds_world(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reals at the origin; fakes of kind "a" shifted +3 along feature 0, of kind "b" shifted -3 along it: no single
    hyperplane puts both kinds on the fake side, one head per kind does."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3 * n, 4))
    y = np.r_[np.zeros(n), np.ones(2 * n)].astype(int)
    kind = np.array([""] * n + ["a"] * n + ["b"] * n, dtype=object)
    x[kind == "a", 0] += 3
    x[kind == "b", 0] -= 3
    return x, y, kind


def test_one_head_per_kind_separates_what_one_head_cannot() -> None:
    x, y, kind = _two_kinds_world()
    order = np.random.default_rng(1).permutation(len(y))
    train, val, test = (list(order[i::3]) for i in range(3))
    fit = fit_kinds(x, y, kind, train, val, min_fakes=10)
    assert fit.kinds == ("a", "b") and set(fit.c) == {"a", "b"}
    w, b, _ = fit_head(x, y, train, val)
    assert _auc(y[test], fit.logit(x[test])) > 0.95
    assert _auc(y[test], x[test] @ w + b) < 0.7
    # each kind's logit is standardised on the validation reals
    reals = [i for i in val if y[i] == 0]
    z = fit.kind_logits(x[reals])
    assert np.allclose(z.mean(0), 0, atol=1e-6) and np.allclose(z.std(0), 1, atol=1e-3)


def test_the_fitted_heads_are_what_the_product_head_computes() -> None:
    x, y, kind = _two_kinds_world(n=60)
    rows = list(range(len(y)))
    fit = fit_kinds(x, y, kind, rows, rows, min_fakes=10)
    head = KindsHead(4, list(fit.kinds))
    with torch.no_grad():
        head.linear.weight.copy_(torch.from_numpy(fit.weight).float())
        head.linear.bias.copy_(torch.from_numpy(fit.bias).float())
        head.platt.copy_(torch.tensor(fit.platt))
    got = head(torch.from_numpy(x).float())[:, 1].detach().numpy()
    assert np.allclose(got, fit.logit(x), atol=1e-4)


def test_a_kind_with_too_few_train_fakes_gets_no_head_and_none_at_all_is_an_error() -> None:
    x, y, kind = _two_kinds_world(n=100)
    train = [i for i in range(len(y)) if kind[i] != "b" or i % 20 == 0]  # 5 fakes of kind b
    fit = fit_kinds(x, y, kind, train, list(range(len(y))), min_fakes=30)
    assert fit.kinds == ("a",)
    with pytest.raises(ValueError, match="no kind of fake"):
        fit_kinds(x, y, kind, train, list(range(len(y))), min_fakes=500)
    with pytest.raises(ValueError, match="no real face"):
        fit_kinds(x, y, kind, train, [i for i in range(len(y)) if y[i] == 1])


def test_kinds_file_maps_sources_and_refuses_what_it_does_not_know(tmp_path) -> None:
    path = tmp_path / "kinds.json"
    path.write_text(json.dumps({"_doc": "comment", "swap": ["s1"], "gan": ["g1", "g2"]}), encoding="utf-8")
    kinds = load_kinds(path)
    assert kinds == {"s1": "swap", "g1": "gan", "g2": "gan"}
    got = row_kinds(np.array([0, 1, 1]), ["s1", "s1", "g2"], kinds)
    assert list(got) == ["", "swap", "gan"]  # a real face has no kind, even from a fake source's folder name
    with pytest.raises(ValueError, match="new_gan"):
        row_kinds(np.array([1]), ["new_gan"], kinds)
    path.write_text(json.dumps({"swap": ["s1"], "gan": ["s1"]}), encoding="utf-8")
    with pytest.raises(ValueError, match="both"):
        load_kinds(path)


def test_the_shipped_kinds_file_covers_every_fake_source_of_the_dev_data(shared_faces: Path) -> None:
    kinds = load_kinds(CONFIG)
    sources = {p.name for p in (shared_faces / "fake").iterdir() if p.is_dir()}
    assert sources and sources <= set(kinds), sorted(sources - set(kinds))


def test_kindsfit_logit_is_stable_for_large_scores() -> None:
    fit = KindsFit(("a", "b"), np.array([[1.0], [1.0]]), np.array([0.0, 0.0]), {"a": 1.0, "b": 1.0})
    assert np.allclose(fit.logit(np.array([[800.0]])), 800 + np.log(2))


def test_platt_scaling_calibrates_the_combined_score_on_validation_rows() -> None:
    x, y, kind = _two_kinds_world(n=200)
    order = np.random.default_rng(2).permutation(len(y))
    train, val = list(order[::2]), list(order[1::2])
    fit = fit_kinds(x, y, kind, train, val, min_fakes=10)
    a, b = fit.platt
    assert a > 0
    p = 1 / (1 + np.exp(-fit.logit(x[val])))
    assert abs(p.mean() - y[val].mean()) < 0.02  # calibrated on these rows: mean prediction = base rate
    with pytest.raises(ValueError, match="both classes"):
        platt_scaling(np.zeros(4), np.zeros(4, int))
    with pytest.raises(ValueError, match="does not rank"):
        platt_scaling(np.array([3.0, 2.0, 1.0, 0.0]), np.array([0, 0, 1, 1]))


def test_loso_frozen_writes_a_kinds_fit_into_the_checkpoint_it_saves(tmp_path) -> None:
    """training/loso_frozen.py's writer: the saved checkpoint's fake logit is the fit's Platt-scaled log-sum-exp."""
    from argparse import Namespace

    from training.loso_frozen import _save

    torch.manual_seed(2)
    det = TimmDetector.create(TINY)
    batch = det.preprocess(_faces(6))
    with torch.inference_mode():
        feats = det.head_input(batch).numpy()
    rng = np.random.default_rng(3)
    fit = KindsFit(tuple(TINY["fake_kinds"]), rng.normal(0, 0.1, (3, feats.shape[1])), rng.normal(0, 1, 3),
                   {k: 1.0 for k in TINY["fake_kinds"]}, (0.8, -0.3))
    logit = fit.logit(feats)
    args = Namespace(out=tmp_path, version="t", select_c="val", crop_size=64)
    _save(det, fit, logit, np.array([0, 1, 0, 1, 1, 0]), args, fit.c)
    loaded = load_detector(f"local-dir:{tmp_path / 'model'}", settings=Settings(fast="off"))
    with torch.inference_mode():
        got = loaded.logits(batch)
    assert torch.allclose(got[:, 0], torch.zeros(6))
    assert np.allclose(got[:, 1].numpy(), logit, atol=2e-2)  # weights stored as float16


def test_a_fake_of_no_known_kind_is_a_fake_for_every_head() -> None:
    from training.kinds import ANY

    x, y, kind = _two_kinds_world(n=100)
    rows = list(range(len(y)))
    mixed = kind.copy()
    mixed[np.where(kind == "b")[0][:50]] = ANY  # half of kind b's fakes come as flags of no known kind
    fit = fit_kinds(x, y, mixed, rows, rows, min_fakes=10)
    assert fit.kinds == ("a", "b")  # "*" is no kind of its own
    flagged = np.where(mixed == ANY)[0]
    reals = np.where(y == 0)[0]
    assert fit.logit(x[flagged]).mean() > fit.logit(x[reals]).mean() + 1
