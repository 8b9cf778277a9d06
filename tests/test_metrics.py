from __future__ import annotations

import numpy as np
import pytest

from udfd.evaluation.metrics import (
    best_f1_threshold,
    best_youden_threshold,
    binary_metrics,
    fit_temperature,
    metrics_by_group,
)


def test_binary_metrics_by_hand():
    y = [0, 0, 1, 1, 1]
    p = [0.1, 0.6, 0.4, 0.8, 0.9]
    m = binary_metrics(y, p, threshold=0.5)
    assert m["confusion"] == {"tp": 2, "fp": 1, "tn": 1, "fn": 1}
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["roc_auc"] == pytest.approx(5 / 6)
    assert m["brier"] == pytest.approx(np.mean((np.array(p) - y) ** 2))
    assert m["n_real"] == 2 and m["n_fake"] == 3


def test_single_class_has_no_auc():
    m = binary_metrics([0, 0], [0.2, 0.7])
    assert m["roc_auc"] is None and m["accuracy"] == 0.5


def test_by_group():
    out = metrics_by_group([0, 1, 0, 1], [0.1, 0.9, 0.8, 0.2], ["a", "a", "b", "b"])
    assert out["a"]["accuracy"] == 1.0 and out["b"]["accuracy"] == 0.0


def test_best_f1_threshold():
    y = [0, 0, 0, 1, 1]
    p = [0.1, 0.2, 0.3, 0.35, 0.9]
    assert best_f1_threshold(y, p) == pytest.approx(0.35)


def test_fit_temperature_recovers_overconfidence():
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 1.5, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-true_logit))).astype(int)
    logits = np.stack([np.zeros_like(true_logit), true_logit * 3.0], axis=1)  # 3x overconfident
    assert fit_temperature(logits, y) == pytest.approx(3.0, rel=0.15)


def test_youden_threshold_balances_errors_where_max_f1_calls_everything_fake():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(500, int), np.ones(500, int)]
    p = np.clip(0.5 + 0.08 * (y - 0.5) + rng.normal(0, 0.1, 1000), 0, 1)  # a weak detector
    t_f1, t_j = best_f1_threshold(y, p), best_youden_threshold(y, p)
    recall_f1 = binary_metrics(y, p, threshold=t_f1)["recall"]
    m_j = binary_metrics(y, p, threshold=t_j)
    assert recall_f1 > 0.85  # max-F1 drifts towards "all fake"
    tpr, tnr = m_j["recall"], m_j["confusion"]["tn"] / 500
    assert abs(tpr - tnr) < 0.2 and m_j["accuracy"] > 0.6


def test_fake_sources_vs_reals():
    from udfd.evaluation.metrics import fake_sources_vs_reals

    y = [0, 0, 1, 1, 0, 1]
    p = [0.1, 0.2, 0.9, 0.15, 0.3, 0.8]
    g = ["r", "r", "gan", "gan", "mixed", "mixed"]
    out = fake_sources_vs_reals(y, p, g)
    assert set(out) == {"gan vs all real"}
    assert out["gan vs all real"]["n_real"] == 3 and out["gan vs all real"]["n_fake"] == 2
    assert out["gan vs all real"]["roc_auc"] == pytest.approx(4 / 6)


def test_ece_by_hand_one_sample_per_bin():
    from udfd.evaluation.metrics import expected_calibration_error

    # 15 bins of width 1/15: every value below sits alone in its bin, so ECE = mean |p - y|.
    y = [0, 0, 1, 1, 1]
    p = [0.1, 0.62, 0.45, 0.82, 0.9]
    assert expected_calibration_error(y, p) == pytest.approx((0.1 + 0.62 + 0.55 + 0.18 + 0.1) / 5)


def test_ece_by_hand_shared_bins():
    from udfd.evaluation.metrics import calibration_bins, expected_calibration_error

    # bin (0.667, 0.733]: p 0.71, 0.72, 0.73 with labels 0, 1, 1 -> |0.72 - 2/3|; bin (0.067, 0.133]: 0.1, 0.12 with 0, 0
    y = [0, 1, 1, 0, 0]
    p = [0.71, 0.72, 0.73, 0.1, 0.12]
    expected = 3 / 5 * abs(0.72 - 2 / 3) + 2 / 5 * 0.11
    assert expected_calibration_error(y, p, n_bins=15) == pytest.approx(expected)
    bins = calibration_bins(y, p, n_bins=15)
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 5
    assert bins[10]["count"] == 3 and bins[10]["fake_share"] == pytest.approx(2 / 3)
    assert bins[0]["count"] == 0 and bins[0]["mean_fake_prob"] is None


def test_ece_is_zero_when_calibrated_and_edges_land_in_a_bin():
    from udfd.evaluation.metrics import calibration_bins, expected_calibration_error

    assert expected_calibration_error([1, 1, 1, 0], [0.75] * 4) == pytest.approx(0.0)
    bins = calibration_bins([0, 1], [0.0, 1.0], n_bins=15)
    assert bins[0]["count"] == 1 and bins[-1]["count"] == 1
    # 2 bins: [0, .5] holds 0.2 (real) and 0.5 (fake); (.5, 1] holds 0.9 (fake)
    assert expected_calibration_error([0, 1, 1], [0.2, 0.5, 0.9], n_bins=2) == pytest.approx(
        2 / 3 * abs(0.35 - 0.5) + 1 / 3 * 0.1)


def test_robustness_delta_by_hand():
    from udfd.evaluation.metrics import robustness_delta

    r = robustness_delta([0, 0, 1, 1], [0.2, 0.4, 0.6, 0.9], [0.6, 0.4, 0.3, 0.9], threshold=0.5)
    assert r["flip_share"] == pytest.approx(0.5)
    assert r["real_newly_fake_share"] == pytest.approx(0.5) and r["fake_newly_real_share"] == pytest.approx(0.5)
    assert r["mean_abs_delta_fake_prob"] == pytest.approx(0.175)
    assert r["accuracy"] == pytest.approx(0.5) and r["delta_accuracy"] == pytest.approx(-0.5)
    assert r["roc_auc"] == pytest.approx(0.5) and r["delta_roc_auc"] == pytest.approx(-0.5)
    assert r["real_called_fake_share"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        robustness_delta([0, 1], [0.1, 0.9], [0.1], threshold=0.5)
