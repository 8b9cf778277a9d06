"""training/loso_frozen.py: the head's L2 strength chosen by a nested leave-one-source-out run."""

from __future__ import annotations

import numpy as np
import pytest

from training.loso_frozen import fit_head, loso_select_c
from udfd.evaluation.loso import FOLDS


def _world(seed: int = 0, n: int = 60) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Per fold: reals and fakes that differ along one shared 'fake' axis (feature 0), plus a strong per-fold
    'style' feature (1 + fold index) that separates the classes inside that fold only, with a sign that flips from
    fold to fold. A weakly regularised head leans on the style features and transfers badly to an unseen fold."""
    rng = np.random.default_rng(seed)
    xs, ys, srcs = [], [], []
    for k, fold in enumerate(FOLDS):
        for label in (0, 1):
            x = rng.normal(size=(n, 1 + len(FOLDS)))
            x[:, 0] += 0.6 * label
            x[:, 1 + k] += (1 if k % 2 else -1) * 3.0 * label
            xs.append(x)
            ys += [label] * n
            srcs += [(fold.fake_sources if label else fold.real_sources)[0]] * n
    return np.concatenate(xs), np.array(ys), srcs


def test_loso_select_c_scores_every_c_on_inner_folds_and_picks_the_best() -> None:
    x, y, srcs = _world()
    rows = list(range(len(y)))
    c, scores = loso_select_c(x, y, srcs, rows, grid=(0.0003, 1.0))
    assert set(scores) == {0.0003, 1.0}
    assert c == max(scores, key=scores.get)
    assert all(0.0 <= v <= 1.0 for v in scores.values())


def test_loso_select_c_never_looks_at_rows_it_was_not_given() -> None:
    x, y, srcs = _world()
    held = [i for i, s in enumerate(srcs) if s in FOLDS[0].fake_sources + FOLDS[0].real_sources]
    rest = [i for i in range(len(y)) if i not in set(held)]
    base = loso_select_c(x, y, srcs, rest, grid=(0.001, 0.1))
    x2 = x.copy()
    x2[held] = np.random.default_rng(5).normal(size=x2[held].shape) * 100  # whatever the outer fold holds
    assert loso_select_c(x2, y, srcs, rest, grid=(0.001, 0.1)) == base


def test_loso_select_c_needs_a_fold_with_both_classes() -> None:
    x, y, srcs = _world()
    reals = [i for i in range(len(y)) if y[i] == 0]
    with pytest.raises(ValueError, match="no fold"):
        loso_select_c(x, y, srcs, reals)


def test_fit_head_with_a_given_c_uses_it_and_no_validation_rows() -> None:
    x, y, _ = _world()
    rows = list(range(len(y)))
    w, b, c = fit_head(x, y, rows, [], c=0.01)
    assert c == 0.01
    assert np.isfinite(w).all() and np.isfinite(b)
    w_val, _, c_val = fit_head(x, y, rows[::2], rows[1::2])
    assert c_val in (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def test_loso_select_c_min_ranks_by_the_worst_inner_fold() -> None:
    x, y, srcs = _world()
    rows = list(range(len(y)))
    grid = (0.0003, 0.01, 1.0)
    _, means = loso_select_c(x, y, srcs, rows, grid=grid)
    c_min, worst = loso_select_c(x, y, srcs, rows, grid=grid, criterion="min")
    assert c_min == max(worst, key=worst.get)
    assert all(worst[c] <= means[c] for c in grid)  # the worst fold is never above the mean
    with pytest.raises(ValueError, match="criterion"):
        loso_select_c(x, y, srcs, rows, criterion="median")
