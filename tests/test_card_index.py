"""Model cards carry the LOSO table and the in-distribution test AUC in their model-index (issue 20)."""

from __future__ import annotations

import json

import pytest
from huggingface_hub import ModelCard

from training.card_index import entries, folder_of
from udfd.cards import LOSO_DATASET, eval_index, with_model_index

CARD = """---
license: other
model-index:
- name: m
  results:
  - task: {type: image-classification}
    dataset: {name: faces, type: imagefolder, split: test}
    metrics:
    - {type: roc_auc, value: 0.7, name: roc_auc (test)}
---

# m

Body text stays.
"""


def _loso(card: str) -> dict[str, float]:
    return {r.dataset_split: r.metric_value for r in ModelCard(card).data.eval_results or []
            if r.dataset_name == LOSO_DATASET}


def test_model_index_is_added_replaced_and_keeps_the_rest():
    first = with_model_index(CARD, eval_index(loso={"dfdc": 0.41, "stylegan": None}, loso_mean=0.41,
                                              in_dist_auc=0.8), model_name="m")
    assert _loso(first) == {"heldout:dfdc": 0.41, "heldout:mean": 0.41}  # a fold without an AUC is left out
    assert "Body text stays." in first and "roc_auc (test)" in first
    second = with_model_index(first, eval_index(loso={"dfdc": 0.6}), model_name="m")
    assert _loso(second) == {"heldout:dfdc": 0.6}  # the old LOSO entries are replaced, not appended
    assert "roc_auc (test)" in second and "in-distribution test split" not in second
    assert with_model_index(second, eval_index(loso={"dfdc": 0.6}), model_name="m") == second


@pytest.mark.parametrize("ensemble", ["ensemble", "ensemble_swap"])
def test_embedded_cards_match_the_ensemble_report(ensemble: str):
    """Refitting the ensemble without re-running training/card_index.py leaves the Hub metadata stale: caught here."""
    folder = folder_of(ensemble)
    report = json.loads((folder / "eval_results.json").read_text(encoding="utf-8"))
    for detector, kwargs in entries(report, ensemble).items():
        card = ((folder if detector == ensemble else folder_of(detector)) / "README.md").read_text(encoding="utf-8")
        want = {f"heldout:{k}": round(v, 4) for k, v in kwargs["loso"].items() if v is not None}
        want["heldout:mean"] = round(kwargs["loso_mean"], 4)
        assert _loso(card) == want, detector


def test_a_specialist_report_indexes_only_itself():
    report = {"rule": "mean", "folds": ["dfdc", "lfw_faceswap"], "members": {"a": "sbi_lite0", "b": "effnet_lite0"},
              "loso": {"ensemble:mean": {"dfdc": 0.63, "lfw_faceswap": 0.61}, "a": {"dfdc": 0.6}, "b": {"dfdc": 0.5}},
              "loso_mean": {"ensemble:mean": 0.62, "a": 0.6, "b": 0.5}, "in_dist_test_auc": 0.7}
    assert entries(report, "ensemble_swap") == {
        "ensemble_swap": {"loso": {"dfdc": 0.63, "lfw_faceswap": 0.61}, "loso_mean": 0.62, "in_dist_auc": None}}
