"""The gain in LOSO AUC of one model over another on the same held-out faces, with a paired row bootstrap.

    python training/fit_ensemble.py ... --heldout-scores runs/scores/ens_a    # each ensemble's held-out scores
    python training/fit_ensemble.py ... --heldout-scores runs/scores/ens_b
    python training/loso_gain.py --scores runs/scores --a ens_a --b ens_b --out benchmarks/results/gain.json

Per fold, only the rows both score; each resample draws that fold's rows with replacement (the same rows for both
models), per fold and for the mean over folds (every fold resampled at once). Any two members' score files work.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from any folder

from training.fit_ensemble import member_files, read_scores  # noqa: E402
from udfd.evaluation.stacking import auc  # noqa: E402

log = logging.getLogger(__name__)


def paired_rows(a: Path, b: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, a's scores, b's scores) of the held-out rows both files hold, in path order."""
    ra = {r["path"]: r for r in read_scores(a) if r.get("split") == "heldout"}
    rb = {r["path"]: r for r in read_scores(b) if r.get("split") == "heldout"}
    paths = sorted(set(ra) & set(rb))
    return (np.array([ra[p]["label"] for p in paths], dtype=int), np.array([ra[p]["fake_prob"] for p in paths]),
            np.array([rb[p]["fake_prob"] for p in paths]))


def bootstrap_gain(folds: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], *, resamples: int,
                   seed: int) -> dict[str, dict[str, float | int | None]]:
    """Per fold and for the mean over folds: AUC of a, of b, gain b - a and its 95 % interval (pure)."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in folds}
    draws["mean"] = []
    for _ in range(resamples):
        gains = []
        for name, (y, a, b) in folds.items():
            idx = rng.integers(0, len(y), len(y))
            if len(set(y[idx].tolist())) < 2:
                continue
            g = auc(y[idx], b[idx]) - auc(y[idx], a[idx])
            draws[name].append(g)
            gains.append(g)
        if len(gains) == len(folds):
            draws["mean"].append(float(np.mean(gains)))
    out: dict[str, dict[str, float | int | None]] = {}
    for name, (y, a, b) in folds.items():
        out[name] = {"n": len(y), "a": auc(y, a), "b": auc(y, b), "gain": auc(y, b) - auc(y, a),
                     **_interval(draws[name])}
    out["mean"] = {"n": sum(len(v[0]) for v in folds.values()),
                   "a": float(np.mean([out[k]["a"] for k in folds])), "b": float(np.mean([out[k]["b"] for k in folds])),
                   **_interval(draws["mean"])}
    out["mean"]["gain"] = out["mean"]["b"] - out["mean"]["a"]
    return out


def _interval(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"lo": None, "hi": None}
    return {"lo": float(np.percentile(values, 2.5)), "hi": float(np.percentile(values, 97.5))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scores", type=Path, default=Path("runs/scores"))
    p.add_argument("--a", required=True, help="the baseline's score-file folder name")
    p.add_argument("--b", required=True, help="the candidate's")
    p.add_argument("--resamples", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fa, fb = member_files(args.scores, args.a), member_files(args.scores, args.b)
    folds = {k.removeprefix("loso_"): paired_rows(fa[k], fb[k]) for k in sorted(fa) if k.startswith("loso_")
             and k in fb}
    if not folds:
        raise SystemExit(f"{args.a} and {args.b} share no loso_<fold>.csv score file")
    result = {"a": args.a, "b": args.b, "resamples": args.resamples,
              "folds": bootstrap_gain(folds, resamples=args.resamples, seed=args.seed)}
    for name, r in result["folds"].items():
        log.info("%-18s n=%5d  a %.3f  b %.3f  gain %+.3f [%s, %s]", name, r["n"], r["a"], r["b"], r["gain"],
                 *(f"{v:+.3f}" if v is not None else "–" for v in (r["lo"], r["hi"])))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
