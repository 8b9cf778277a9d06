"""Track aggregation rules (udfd.aggregate): what each rule gives, and clear errors."""

from __future__ import annotations

import pytest

from udfd.aggregate import TRACK_RULES, aggregate


def test_rules_on_a_track_with_a_few_manipulated_frames() -> None:
    probs = [0.1] * 6 + [0.9, 0.95]  # the manipulation shows in 2 of 8 frames
    assert aggregate(probs, "mean") == pytest.approx(0.30625)
    assert aggregate(probs, "median") == pytest.approx(0.1)
    assert aggregate(probs, "max") == pytest.approx(0.95)
    assert aggregate(probs, "topk_mean") == pytest.approx(0.925), "the most-fake quarter: 2 frames"


def test_topk_takes_at_least_one_frame_and_every_rule_stays_in_range() -> None:
    assert aggregate([0.4], "topk_mean") == pytest.approx(0.4)
    for rule in TRACK_RULES:
        assert 0.0 <= aggregate([0.0, 1.0, 0.5], rule) <= 1.0


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        aggregate([], "mean")
    with pytest.raises(ValueError, match="unknown track rule"):
        aggregate([0.5], "mode")
