"""Robustness tables in model cards: rendering and in-place replacement (pure string functions)."""

from __future__ import annotations

from udfd.cards import ROBUSTNESS_END, ROBUSTNESS_START, replace_robustness_section, robustness_markdown

ENTRY = {
    "clean": {"n": 10, "accuracy": 0.8, "roc_auc": 0.9, "ece": 0.05},
    "perturbed": {
        "jpeg50": {"roc_auc": 0.85, "delta_roc_auc": -0.05, "accuracy": 0.7, "delta_accuracy": -0.1,
                   "mean_abs_delta_fake_prob": 0.08, "flip_share": 0.2, "real_newly_fake_share": 0.4,
                   "fake_newly_real_share": 0.0},
        "blur1": {"roc_auc": None, "delta_roc_auc": None, "accuracy": 0.8, "delta_accuracy": 0.0,
                  "mean_abs_delta_fake_prob": 0.01, "flip_share": 0.0, "real_newly_fake_share": None,
                  "fake_newly_real_share": 0.0},
    },
}


def test_markdown_table_rows_and_signs():
    md = robustness_markdown(ENTRY, how="udfd evaluate X")
    assert "`udfd evaluate X`" in md and "ECE (15 bins) 0.050" in md
    assert "| jpeg50 | 0.850 | -0.050 | 0.700 | -0.100 | 0.080 | 20.0% | 40.0% | 0.0% |" in md
    assert "| blur1 | – | – | 0.800 | +0.000 | 0.010 | 0.0% | – | 0.0% |" in md


def test_section_inserted_before_intended_use_then_replaced_in_place():
    card = "# m\n\n## Evaluation\n\nrows\n\n## Intended use and limitations\n\nx\n"
    once = replace_robustness_section(card, "TABLE 1")
    assert once.index("## Robustness") < once.index("TABLE 1") < once.index("## Intended use")
    twice = replace_robustness_section(once, "TABLE 2")
    assert "TABLE 1" not in twice and twice.count(ROBUSTNESS_START) == 1 == twice.count(ROBUSTNESS_END)
    assert twice.replace("TABLE 2", "TABLE 1") == once
    assert replace_robustness_section("# bare\n", "T").endswith(f"{ROBUSTNESS_START}\nT\n{ROBUSTNESS_END}\n\n")
