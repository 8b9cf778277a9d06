"""Self-blends as a fourth kind of fake in the kinds head: measured by LOSO, not shipped (README, "Models").

    OMP_NUM_THREADS=2 python training/loso_kinds_blend.py --data ../shared/data/faces \
        --out benchmarks/results/loso_kinds_blend.json

`effnet_lite0_kinds` has one head per kind of fake in the data (`training/kinds.py`). Here every real crop also gets
`--copies` self-blends (`training/sbi.py`: the face blended with a transformed copy of itself inside its FaceMesh
hull) whose frozen Lite0 features are fakes of the kind "blend", so the soft maximum gains a face-swap head trained
on no data fake at all. Per LOSO fold a blend joins the train (val) rows only when its real face is a train (val)
row, so no held-out face reaches a head. Writes per-fold AUCs, and score files with `--member`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from any folder

from training.data import split_samples  # noqa: E402
from training.kinds import fit_kinds, load_kinds, row_kinds  # noqa: E402
from training.loso import loso_split, write_run_scores  # noqa: E402
from training.loso_frozen import embed, frozen_features  # noqa: E402
from training.options import study_parser, study_samples  # noqa: E402
from udfd.evaluation.loso import FOLDS  # noqa: E402
from udfd.evaluation.metrics import binary_metrics  # noqa: E402

log = logging.getLogger(__name__)
BLEND = "blend"


def with_blends(split: dict[str, list[int]], owner: np.ndarray, n: int) -> dict[str, list[int]]:
    """The split with blend row n + j added to train / val when its real face `owner[j]` is there (pure)."""
    out = {k: list(v) for k, v in split.items()}
    for part in ("train", "val"):
        rows = set(split.get(part, []))
        out[part] += [n + j for j, o in enumerate(owner) if int(o) in rows]
    return out


def blend_features(det, crops: np.ndarray, reals: list[int], *, copies: int, seed: int, key: str,
                   cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(features, owner): `copies` self-blends of every real crop with a FaceMesh mesh, embedded once and cached."""
    from training.sbi import self_blend
    from training.sbi_data import cached_landmarks

    stamp = hashlib.sha256(repr((key, copies, seed, sorted(reals))).encode()).hexdigest()[:12]
    path = cache_dir / f"feats-{key}-blends-{stamp}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["x"], z["owner"]
    marks = cached_landmarks(crops, reals, cache_dir=cache_dir).lookup()
    owner = np.array([i for _ in range(copies) for i in reals if i in marks], np.int64)
    images = np.stack([self_blend(crops[i], marks[i], np.random.default_rng((seed, k // len(marks), int(i)))).image
                       for k, i in enumerate(owner)])
    x = embed(det, images)
    np.savez(path, x=x, owner=owner)
    return x, owner


def main(argv: list[str] | None = None) -> int:
    p = study_parser(__doc__, out="benchmarks/results/loso_kinds_blend.json")
    p.add_argument("--fake-kinds", type=Path, default=Path(__file__).parent / "configs" / "fake_kinds.json")
    p.add_argument("--copies", type=int, default=1, help="self-blends per real face")
    p.add_argument("--member", help="also write score files as this member (runs/scores/<member>/)")
    p.add_argument("--scores-dir", type=Path, default=Path("runs/scores"))
    p.add_argument("--score-kinds", help="comma-separated kinds whose heads alone give the scores and AUCs (as "
                   "loso_frozen.py --score-kinds); default: every kind")
    args = p.parse_args(argv)
    only = tuple(k.strip() for k in (args.score_kinds or "").split(",") if k.strip()) or None
    root, samples, y = study_samples(args)
    x, det, crops, key = frozen_features(root, samples, stages=[4], cache_dir=args.cache_dir)  # effnet_lite0's
    kind = row_kinds(y, [s.source for s in samples], load_kinds(args.fake_kinds))
    xb, owner = blend_features(det, crops, [i for i in range(len(y)) if y[i] == 0], copies=args.copies,
                               seed=args.seed, key=key, cache_dir=args.cache_dir)
    xx, yy = np.concatenate([x, xb]), np.concatenate([y, np.ones(len(xb), int)])
    kk = np.concatenate([kind, np.array([BLEND] * len(xb), dtype=object)])
    runs = [(f.name, loso_split(samples, f.name, seed=args.seed, val=0.1, test=0.1)) for f in FOLDS]
    runs.append(("in_dist", split_samples(samples, seed=args.seed, val=0.1, test=0.1)))
    results: dict[str, dict] = {}
    for name, split in runs:
        rows = with_blends(split, owner, len(x))
        fit = fit_kinds(xx, yy, kk, rows["train"], rows["val"])
        held = "test" if name == "in_dist" else "heldout"
        results[name] = {"auc": binary_metrics(y[split[held]], 1 / (1 + np.exp(-fit.logit(x[split[held]], only))))["roc_auc"],
                         "kinds": list(fit.kinds), "C": fit.c}
        log.info("%s: %s", name, json.dumps(results[name]))
        if args.member:
            keys = ("val", "test") if name == "in_dist" else ("heldout", "val")
            write_run_scores(args.scores_dir, args.member, samples, {k: split[k] for k in keys},
                             {k: 1 / (1 + np.exp(-fit.logit(x[split[k]], only))) for k in keys},
                             loso_fold=None if name == "in_dist" else name)
    folds = [results[f.name]["auc"] for f in FOLDS]
    payload = {"command": "python training/loso_kinds_blend.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
               "blends": int(len(xb)), "folds": results, "loso_mean": float(np.mean(folds)),
               "loso_min": float(np.min(folds))}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    log.info("LOSO mean %.3f, worst fold %.3f; wrote %s", payload["loso_mean"], payload["loso_min"], args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
