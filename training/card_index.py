"""Put the leave-one-source-out table and the in-distribution test AUC into the model cards' `model-index`.

    python training/card_index.py --ensemble models/udfd-ensemble

The numbers come from the ensemble's `eval_results.json` (written by `training/fit_ensemble.py`): the ensemble's
chosen rule and every member, each on the same held-out rows. `--summary DETECTOR=summary.json` adds a checkpoint
scored on its own (e.g. `training/sbi_scores.py`'s summary). Each card keeps its other eval results; running it
twice changes nothing. The Hub shows these as the model's results once `udfd publish` pushes the folders.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from any folder

from training.fit_ensemble import member_spec  # noqa: E402
from udfd.cards import eval_index, with_model_index  # noqa: E402
from udfd.config import DEFAULT_MODELS  # noqa: E402
from udfd.hub import split_refs  # noqa: E402

log = logging.getLogger("training.card_index")


def entries(report: dict[str, Any], ensemble: str) -> dict[str, dict[str, Any]]:
    """{detector name: eval_index kwargs} from a fit_ensemble report (pure).

    A specialist (`fit_ensemble.py --folds`) gives only its own entry: its judged folds and their mean, no
    in-distribution AUC (measured on its folds' rows only); its members' cards keep their own full LOSO results.
    A kinds view (`effnet_lite0_kinds[face_swap]`) has no card of its own: its model's card keeps the whole model's."""
    rule = f"ensemble:{report['rule']}"
    specialist = bool(report.get("folds"))
    out = {ensemble: {"loso": report["loso"][rule], "loso_mean": report["loso_mean"][rule],
                      "in_dist_auc": None if specialist else report.get("in_dist_test_auc")}}
    if specialist:
        return out
    for score_name, detector in report["members"].items():
        if member_spec(detector).get("kinds"):  # a view: scored by some heads of a model with its own card
            continue
        out[detector] = {"loso": report["loso"][score_name], "loso_mean": report["loso_mean"][score_name],
                         "in_dist_auc": report.get("in_dist_member_test_auc", {}).get(score_name)}
    return out


def summary_entry(summary: dict[str, Any]) -> dict[str, Any]:
    """eval_index kwargs from a `loso_summary` JSON (training/sbi_scores.py, training/loso.py)."""
    return {"loso": {f["fold"]: f["roc_auc"] for f in summary["folds"]}, "loso_mean": summary.get("mean_auc"),
            "in_dist_auc": summary.get("in_dist_auc")}


def folder_of(detector: str) -> Path:
    for ref in split_refs(DEFAULT_MODELS[detector]):
        if ref.startswith("local-dir:"):
            return Path(ref.removeprefix("local-dir:"))
    raise SystemExit(f"{detector} has no embedded folder")


def main(argv: list[str] | None = None) -> list[Path]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ensemble", type=Path, default=folder_of("ensemble"),
                   help="ensemble folder whose eval_results.json holds the LOSO table")
    p.add_argument("--name", default="ensemble", help="the ensemble's detector name")
    p.add_argument("--summary", action="append", default=[], help="DETECTOR=summary.json (a loso_summary JSON)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = json.loads((args.ensemble / "eval_results.json").read_text(encoding="utf-8"))
    todo = entries(report, args.name)
    for item in args.summary:
        detector, path = item.split("=", 1)
        todo[detector] = summary_entry(json.loads(Path(path).read_text(encoding="utf-8")))
    written = []
    for detector, kwargs in todo.items():
        folder = args.ensemble if detector == args.name else folder_of(detector)
        card = folder / "README.md"
        card.write_text(with_model_index(card.read_text(encoding="utf-8"), eval_index(**kwargs),
                                         model_name=folder.name), encoding="utf-8")
        log.info("%s: model-index with %d LOSO folds written to %s", detector, len(kwargs["loso"]), card)
        written.append(card)
    return written


if __name__ == "__main__":
    main()
