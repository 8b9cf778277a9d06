"""training/loso_kinds_blend.py: a self-blend joins a fold's train or val rows only with its real face."""

from __future__ import annotations

import numpy as np

from training.loso_kinds_blend import with_blends


def test_blends_follow_their_real_face_and_never_reach_held_out_rows() -> None:
    split = {"train": [0, 1], "val": [2], "test": [3], "heldout": [4, 5]}
    owner = np.array([0, 2, 3, 4, 0])  # blend rows 6..10 (n = 6): of faces 0, 2, 3, 4 and a second of face 0
    out = with_blends(split, owner, 6)
    assert out["train"] == [0, 1, 6, 10] and out["val"] == [2, 7]
    assert out["test"] == [3] and out["heldout"] == [4, 5]  # blends of test and held-out faces are never used
    assert split["train"] == [0, 1]  # the split given is not modified


def test_no_blends_leave_the_split_as_it_is() -> None:
    split = {"train": [0], "val": [1], "heldout": [2]}
    assert with_blends(split, np.array([], np.int64), 3) == split
