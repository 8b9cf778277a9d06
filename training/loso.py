"""Leave-one-source-out training runs: the split for a held-out fold, the ensemble's score files, the card table.

    # full fine-tuning, one fold (train_image.py does the training; this module only builds the split):
    python training/train_image.py --family timm --data ../shared/data/faces --loso-fold dfdc ...
    # every fold of a variant in a row, then the table:
    python training/loso.py sweep --member lite0_ft -- --family timm --arch '{...}' --epochs 2 ...
    python training/loso.py summary --member lite0_ft --member lite0_frozen
    # an existing checkpoint on every fold's held-out rows (it may have seen them in training: say so):
    python training/loso.py score --detector cnn --member embedded_cnn

Fold definitions and metrics live in udfd/evaluation/loso.py (pure); this is the training-side edge.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from any folder

from training.data import Sample, split_samples  # noqa: E402
from udfd.evaluation.loso import (  # noqa: E402
    FOLDS,
    IN_DIST,
    LosoSummary,
    ScoreRow,
    cap_per_class,
    get_fold,
    heldout_mask,
    member_summary,
    score_file,
    summary_markdown,
    write_scores,
)

log = logging.getLogger(__name__)


def loso_split(samples: Sequence[Sample], fold_name: str, *, seed: int, val: float, test: float,
               max_heldout: int = 0) -> dict[str, list[int]]:
    """train/val/test of everything outside the fold (grouped as usual) plus `heldout`: the fold's rows
    (at most `max_heldout` per class, seeded, when a reduced evaluation budget is asked for)."""
    fold = get_fold(fold_name)
    mask = heldout_mask([s.label for s in samples], [s.source for s in samples], fold)
    rest = [i for i in range(len(samples)) if not mask[i]]
    inner = split_samples([samples[i] for i in rest], seed=seed, val=val, test=test)
    split = {k: [rest[j] for j in v] for k, v in inner.items()}
    labels = [s.label for s in samples]
    split["heldout"] = cap_per_class([i for i in range(len(samples)) if mask[i]], labels, max_heldout, seed=seed)
    return split


def subsample(idx: list[int], n: int, *, seed: int) -> list[int]:
    """At most n of idx (seeded, order kept): a reduced training budget for LOSO sweeps."""
    if not n or len(idx) <= n:
        return list(idx)
    keep = np.random.default_rng(seed).choice(len(idx), n, replace=False)
    return [idx[i] for i in sorted(keep)]


def run_scores(samples: Sequence[Sample], split: dict[str, list[int]], probs: dict[str, np.ndarray], *,
               loso_fold: str | None) -> tuple[str, list[ScoreRow]]:
    """(fold file name, rows) for the score-file contract: loso -> heldout + val; in-distribution -> val + test."""
    fold = get_fold(loso_fold).file_name if loso_fold else IN_DIST
    keep = ("heldout", "val") if loso_fold else ("val", "test")
    rows = [ScoreRow(samples[i].path, samples[i].label, samples[i].source, name, float(p))
            for name in keep if name in probs for i, p in zip(split[name], probs[name], strict=True)]
    return fold, rows


def write_run_scores(scores_dir: Path, member: str, samples: Sequence[Sample], split: dict[str, list[int]],
                     probs: dict[str, np.ndarray], *, loso_fold: str | None) -> Path:
    fold, rows = run_scores(samples, split, probs, loso_fold=loso_fold)
    path = write_scores(score_file(scores_dir, member, fold), rows)
    log.info("wrote %d scores to %s", len(rows), path)
    return path


def loso_card_section(summaries: dict[str, LosoSummary], *, how: str) -> str:
    """Markdown for a model card: what LOSO is, the per-fold table and how it was made."""
    folds = "; ".join(f"`{f.name}` = fake {'+'.join(f.fake_sources)} vs real {'+'.join(f.real_sources)}" for f in FOLDS)
    return (f"Each fold holds out a family of fake sources and a disjoint set of real sources entirely; a model "
            f"trained on the rest scores them (ROC-AUC of the held-out fakes vs held-out reals). Folds: {folds}. "
            f"*mean* is the mean over folds (the model-selection criterion), *pooled* the AUC of all held-out "
            f"rows together.\n\n{summary_markdown(summaries)}\n\n{how}")


LOSO_START, LOSO_END = "<!-- loso -->", "<!-- /loso -->"  # the card section markers (model_cards/detector.md)


def replace_loso_section(card: Path, markdown: str) -> None:
    """Put a LOSO table into an existing card between its markers (after the sweeps finish, no retraining)."""
    text = card.read_text(encoding="utf-8")
    if LOSO_START not in text or LOSO_END not in text:
        raise SystemExit(f"{card} has no {LOSO_START} ... {LOSO_END} section")
    head, rest = text.split(LOSO_START, 1)
    card.write_text(f"{head}{LOSO_START}\n{markdown}\n{LOSO_END}{rest.split(LOSO_END, 1)[1]}", encoding="utf-8")


def summary_json(scores_dir: Path, members: Sequence[str]) -> dict[str, dict[str, object]]:
    return {m: member_summary(scores_dir, m).as_dict() for m in members}


def score_existing(args: argparse.Namespace) -> None:
    """Held-out rows of every fold scored by one checkpoint, on crops made at its own training crop size."""
    import torch
    from tqdm.auto import tqdm

    from training.data import cached_crops, list_samples
    from udfd.config import FaceSettings
    from udfd.loader import load_detector

    det = load_detector(args.detector)
    crop_size = int(getattr(det, "meta", {}).get("crop_size", 144))
    root = args.data.resolve()
    samples = list_samples(root)
    crops = cached_crops(root, samples, faces=FaceSettings(), size=crop_size, cache_dir=args.cache_dir)
    labels = [s.label for s in samples]
    for fold in FOLDS:
        idx = np.flatnonzero(heldout_mask(labels, [s.source for s in samples], fold)).tolist()
        idx = cap_per_class(idx, labels, args.max_heldout, seed=args.seed)  # same rows as loso_split's cap
        probs = []
        for s in tqdm(range(0, len(idx), args.batch_size), desc=f"{args.member} {fold.name}", unit="batch"):
            with torch.inference_mode():
                batch = det.preprocess([crops[i] for i in idx[s:s + args.batch_size]])
            probs += [x.fake_prob for x in det.predict(batch)]
        write_run_scores(args.scores_dir, args.member, samples, {"heldout": idx}, {"heldout": np.array(probs)},
                         loso_fold=fold.name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sw = sub.add_parser("sweep", help="train_image.py once per fold (arguments after --), writing score files")
    sw.add_argument("--member", required=True)
    sw.add_argument("--scores-dir", type=Path, default=Path("runs/scores"))
    sw.add_argument("--runs-dir", type=Path, default=Path("runs/loso"))
    sw.add_argument("--fold", action="append", help="only these folds (default: all five)")
    sw.add_argument("rest", nargs=argparse.REMAINDER)
    sc = sub.add_parser("score", help="score every fold's held-out rows with an existing checkpoint")
    sc.add_argument("--detector", required=True, help="short name or local-dir:/hf-hub: reference")
    sc.add_argument("--member", required=True)
    sc.add_argument("--data", type=Path, default=Path("../shared/data/faces"))
    sc.add_argument("--scores-dir", type=Path, default=Path("runs/scores"))
    sc.add_argument("--cache-dir", type=Path, default=Path(".cache/udfd"))
    sc.add_argument("--batch-size", type=int, default=64)
    sc.add_argument("--max-heldout", type=int, default=0, help="at most N held-out faces per class and fold")
    sc.add_argument("--seed", type=int, default=42, help="the seed of the training runs (same capped rows)")
    sm = sub.add_parser("summary", help="per-fold, mean and pooled AUC from score files")
    sm.add_argument("--member", action="append", required=True)
    sm.add_argument("--scores-dir", type=Path, default=Path("runs/scores"))
    sm.add_argument("--out", type=Path, help="also write the summaries as JSON")
    sm.add_argument("--like", help="only the held-out rows this member scored too (like-for-like)")
    sm.add_argument("--how", default="", help="a sentence for the card: how the numbers were made")
    sm.add_argument("--card", type=Path, help="also write the table into this model folder's README.md")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.cmd == "sweep":
        from training.train_image import main as train

        rest = [a for a in args.rest if a != "--"]
        for name in args.fold or [f.name for f in FOLDS]:
            train([*rest, "--loso-fold", name, "--member", args.member, "--scores-dir", str(args.scores_dir),
                   "--output", str(args.runs_dir / args.member / name), "--report-to", "none"])
        print(json.dumps(summary_json(args.scores_dir, [args.member]), indent=1))
    elif args.cmd == "score":
        score_existing(args)
        print(json.dumps(summary_json(args.scores_dir, [args.member]), indent=1))
    else:
        sums = {m: member_summary(args.scores_dir, m, like=args.like) for m in args.member}
        print(summary_markdown(sums))
        if args.out:
            out = {"_how": args.how, **{m: x.as_dict() for m, x in sums.items()}}
            args.out.write_text(json.dumps(out, indent=1), encoding="utf-8")
        if args.card:
            replace_loso_section(args.card / "README.md", loso_card_section(sums, how=args.how))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
