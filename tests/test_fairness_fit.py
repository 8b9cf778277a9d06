"""Fairness in model selection: the head's --balance weights and the ensemble fit's per-group FPR (issue 15 part 9)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.fit_ensemble import fairness
from training.loso_frozen import group_weights


def test_group_weights_equalise_known_ethnicities_among_train_reals() -> None:
    labels = np.array([0, 0, 0, 0, 0, 1, 0])
    groups = ["white", "white", "white", "black", "unknown", "white", "black"]
    w = group_weights(labels, groups, train=[0, 1, 2, 3, 4, 5])  # row 6 is not in train
    assert w[:3].sum() == w[3]  # three white reals together weigh as much as the one black real
    assert np.isclose(w[[0, 1, 2, 3]].mean(), 1.0)  # the real class keeps its total weight
    assert w[4] == 1.0 and w[5] == 1.0 and w[6] == 1.0  # unknown group, fakes and non-train rows untouched


def test_fit_fairness_reports_fpr_per_group_of_the_test_reals(tmp_path: Path) -> None:
    (tmp_path / "manifest.csv").write_text(
        "file,label,source,note\n"
        "real/utk/a.jpg,real,utk,gender=male;race=black\n"
        "real/utk/b.jpg,real,utk,gender=female;race=black\n"
        "real/utk/c.jpg,real,utk,gender=male;race=white\n"
        "real/utk/d.jpg,real,utk,gender=female;race=white\n", encoding="utf-8")
    meta = [{"path": p} for p in ("real/utk/a.jpg", "real/utk/b.jpg", "real/utk/c.jpg", "real/utk/d.jpg",
                                  "fake/x/e.jpg", "real/other/f.jpg")]
    y = np.array([0, 0, 0, 0, 1, 0])
    prob = np.array([0.9, 0.2, 0.1, 0.1, 0.9, 0.9])
    out = fairness(tmp_path, meta, y, {"m": (prob, 0.5)})
    assert out["n"] == {"black": 2, "white": 2}  # the fake and the reals without a group are left out
    assert out["m"]["fpr"] == {"black": 0.5, "white": 0.0}
    assert out["m"]["fpr_gap"]["gap"] == 0.5 and out["m"]["fpr_gap"]["highest"] == "black"
