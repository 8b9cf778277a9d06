from __future__ import annotations

import numpy as np
import pytest

from udfd.metrics import best_f1_threshold, binary_metrics, fit_temperature, metrics_by_group


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
