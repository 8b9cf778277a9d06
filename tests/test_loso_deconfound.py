"""training/loso_deconfound.py: taking dataset style out of the frozen head, on synthetic rows where style is a
shortcut (it fully decides the label on the train rows and points the other way on the held-out rows)."""

from __future__ import annotations

import numpy as np
import pytest

from training.loso_deconfound import fit_mode, ipw_weights, project_out, standardise


def _shortcut(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, list[int]]]:
    """Features = a weak real signal + a strong copy of style; style tracks the label in train/val, the opposite
    in the held-out rows (a fold whose style direction differs, as stylegan's does)."""
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n // 2)
    idx = np.arange(n)
    train, val, held = list(idx[: n // 2]), list(idx[n // 2: 3 * n // 4]), list(idx[3 * n // 4:])
    style = np.where(y == 1, 1.0, -1.0) + rng.normal(0, 0.3, n)
    style[held] *= -1
    signal = (2 * y - 1) * 0.5 + rng.normal(0, 1, n)
    x = np.c_[signal, 3 * style + rng.normal(0, 0.1, n), rng.normal(0, 1, (n, 3))]
    return x, style[:, None], y, {"train": train, "val": val, "heldout": held}


def test_project_out_leaves_nothing_linear_in_style_on_the_rows_it_was_fitted_on() -> None:
    x, s, _, split = _shortcut()
    z = standardise(s, split["train"])
    r = project_out(x, z, split["train"])
    tr = split["train"]
    assert np.abs(np.corrcoef(np.c_[r[tr], z[tr]].T)[-1, :-1]).max() < 1e-6
    np.testing.assert_allclose(r[:, 0], x[:, 0] - np.polyval(np.polyfit(z[tr, 0], x[tr, 0], 1), z[:, 0]), atol=1e-6)


def test_ipw_weights_balance_style_between_the_classes() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    style = y + rng.normal(0, 1, 2000)
    prop = 1 / (1 + np.exp(-(style - 0.5)))  # the true P(fake | style) of this construction
    rows = list(range(2000))
    w = ipw_weights(y, prop, rows)
    assert w[y == 0].mean() == pytest.approx(1) and w[y == 1].mean() == pytest.approx(1)
    gap = abs(np.average(style[y == 1], weights=w[y == 1]) - np.average(style[y == 0], weights=w[y == 0]))
    assert gap < 0.25 * abs(style[y == 1].mean() - style[y == 0].mean())
    np.testing.assert_allclose(ipw_weights(y, np.zeros(2000), rows, clip=0.1), 1.0)  # style says nothing: no reweighting


def test_removing_the_shortcut_rescues_the_fold_where_style_points_the_other_way() -> None:
    from sklearn.metrics import roc_auc_score

    x, s, y, split = _shortcut()
    held = split["heldout"]
    auc = {m: roc_auc_score(y[held], fit_mode(m, x, s, y, split)[0]["heldout"]) for m in ("plain", "project", "ipw")}
    assert auc["plain"] < 0.3  # the head learnt style, which is reversed on the held-out rows
    assert auc["project"] > 0.6  # only the weak real signal is left
    with pytest.raises(ValueError, match="unknown mode"):
        fit_mode("nope", x, s, y, split)
