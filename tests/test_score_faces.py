"""training/score_faces.py: per-source AUCs compare the right images, and the per-source sample is bounded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.score_faces import per_source_auc, sample_per_source


def test_per_source_auc_pairs_each_source_with_the_other_class() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    scores = np.array([0.1, 0.2, 0.9, 0.8, 0.7, 0.05, 0.3, 0.6])
    sources = np.array(["lfw", "lfw", "ffhq", "gan", "gan", "swap", "mixed", "mixed"])
    table = per_source_auc(labels, scores, sources)
    assert table["gan"]["auc"] == pytest.approx(0.75)  # its 2 fakes vs all 4 reals: 6 of 8 pairs ordered
    assert table["swap"]["auc"] == pytest.approx(0.0)  # its one fake scores below every real
    assert table["lfw"]["auc"] == pytest.approx(0.75)  # its 2 reals vs all 4 fakes: 6 of 8 pairs ordered
    assert table["mixed"] == {"n_real": 1, "n_fake": 1, "auc": 1.0, "vs": "its own reals vs its own fakes"}


def test_sample_per_source_is_bounded_seeded_and_ordered() -> None:
    items = [(Path(f"{i}.jpg"), i % 2, "a" if i < 20 else "b") for i in range(26)]
    picked = sample_per_source(items, 4, seed=0)
    assert picked == sample_per_source(items, 4, seed=0)
    counts = {(lab, src): sum(1 for _, la, s in picked if (la, s) == (lab, src)) for lab in (0, 1) for src in "ab"}
    assert counts == {(0, "a"): 4, (1, "a"): 4, (0, "b"): 3, (1, "b"): 3}
    assert picked == sorted(picked, key=items.index)
