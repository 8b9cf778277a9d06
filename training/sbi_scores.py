"""Score a checkpoint that never saw a fake from the data (`train_image.py --sbi only`) on every LOSO fold.

    python training/sbi_scores.py --checkpoint models/udfd-sbi-lite0 --data ../shared/data/faces \
        --member sbi_lite0 --card

Such a model needs no retraining per fold: every fake source is unseen. Each fold's held-out rows are its fakes
(all splits) against its reals that the checkpoint did not train on (the val and test splits of its `split.json`);
its `val` rows are the val-split rows of every other fold's sources. `in_dist` holds the val and test rows.
Files follow the contract of `udfd/evaluation/loso.py` (`<scores-dir>/<member>/<fold>.csv`). With `--card` the
per-fold table and the per-source AUCs go into the checkpoint's model card.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from any folder

from training.data import Sample, cached_crops, list_samples  # noqa: E402
from udfd.config import FaceSettings  # noqa: E402
from udfd.evaluation.loso import FOLDS, IN_DIST, ScoreRow, fold_of, loso_summary, score_file, write_scores  # noqa: E402

log = logging.getLogger(__name__)


def fold_rows(samples: list[Sample], probs: dict[int, float], splits: dict[str, set[str]]) -> dict[str, list[ScoreRow]]:
    """{file name: rows} for every LOSO fold and in_dist, from the scored sample indices (pure)."""
    def row(i: int, split: str) -> ScoreRow:
        s = samples[i]
        return ScoreRow(s.path, s.label, s.source, split, probs[i])

    unseen = splits["val"] | splits["test"]
    out: dict[str, list[ScoreRow]] = {}
    for fold in FOLDS:
        held = [row(i, "heldout") for i, s in enumerate(samples) if i in probs and fold.holds(s.label, s.source)
                and (s.label == 1 or s.path in unseen)]
        val = [row(i, "val") for i, s in enumerate(samples) if i in probs and s.path in splits["val"]
               and fold_of(s.label, s.source) != fold.name]
        out[fold.file_name] = held + val
    out[IN_DIST] = [row(i, name) for name in ("val", "test") for i, s in enumerate(samples)
                    if i in probs and s.path in splits[name]]
    return out


def per_source_auc(rows: list[ScoreRow]) -> dict[str, float | None]:
    """Each fake source of a fold's held-out rows against that fold's held-out reals."""
    from udfd.evaluation.loso import _auc

    held = [r for r in rows if r.split == "heldout"]
    reals = [r.fake_prob for r in held if r.label == 0]
    out = {}
    for src in sorted({r.source for r in held if r.label == 1}):
        fakes = [r.fake_prob for r in held if r.label == 1 and r.source == src]
        out[src] = _auc(np.r_[np.zeros(len(reals)), np.ones(len(fakes))], np.r_[reals, fakes])
    return out


def score(detector, crops: np.ndarray, idx: list[int], batch: int) -> dict[int, float]:
    from tqdm.auto import tqdm

    out = {}
    for s in tqdm(range(0, len(idx), batch), desc="scoring", unit="batch"):
        part = idx[s:s + batch]
        scores = detector.predict(detector.preprocess([crops[i] for i in part]))
        out.update({i: float(sc.fake_prob) for i, sc in zip(part, scores, strict=True)})
    return out


def card_markdown(summary: dict, sources: dict[str, dict[str, float | None]], member: str, cmd: str) -> str:
    from udfd.evaluation.loso import _fmt

    names = [f.name for f in FOLDS]
    by = {f["fold"]: f for f in summary["folds"]}
    lines = [
        "This checkpoint never trained on a fake from the data, so every fake source is unseen and one model serves "
        "all folds (no retraining per fold). Held-out rows of a fold: its fakes (every split) against its reals that "
        "were not in this checkpoint's training data (val and test splits of `split.json`). Folds: "
        + "; ".join(f"`{f.name}` = fake {'+'.join(f.fake_sources)} vs real {'+'.join(f.real_sources)}" for f in FOLDS)
        + ".", "",
        "| model | " + " | ".join(names) + " | mean | pooled |", "|---|" + "---|" * (len(names) + 2),
        f"| {member} | " + " | ".join(_fmt(by[n]["roc_auc"]) if n in by else "–" for n in names)
        + f" | {_fmt(summary['mean_auc'])} | {_fmt(summary['pooled_auc'])} |", "",
        "| fold | n real | n fake | fake source | ROC-AUC vs the fold's reals |", "|---|---:|---:|---|---:|",
    ]
    for n in names:
        for src, auc in sources.get(n, {}).items():
            lines.append(f"| {n} | {by[n]['n_real']} | {by[n]['n_fake']} | {src} | {_fmt(auc)} |")
    lines += ["", f"Measured by `{cmd}` (score files `runs/scores/{member}/`)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--member", required=True)
    p.add_argument("--scores-dir", type=Path, default=Path("runs/scores"))
    p.add_argument("--cache-dir", type=Path, default=Path(".cache/udfd"))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--card", action="store_true", help="write the LOSO table into the checkpoint's README.md")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from udfd.loader import load_detector

    config = json.loads((args.checkpoint / "config.json").read_text(encoding="utf-8"))["udfd"]
    if config.get("training", {}).get("sbi") != "only":
        raise SystemExit(f"{args.checkpoint} was not trained with --sbi only: its fakes are not all unseen; "
                         "use training/loso.py sweep for a per-fold LOSO run")
    split_file = json.loads((args.checkpoint / "split.json").read_text(encoding="utf-8"))["splits"]
    splits = {k: set(split_file.get(k, [])) for k in ("train", "val", "test")}
    root = args.data.resolve()
    samples = list_samples(root)
    crops = cached_crops(root, samples, faces=FaceSettings(), size=int(config["crop_size"]), cache_dir=args.cache_dir)
    unseen = splits["val"] | splits["test"]
    assert not unseen & splits["train"], "split.json: val/test overlap train"
    idx = [i for i, s in enumerate(samples) if s.label == 1 or s.path in unseen]
    detector = load_detector(f"local-dir:{args.checkpoint}")
    with torch.inference_mode():
        probs = score(detector, crops, idx, args.batch_size)
    files = fold_rows(samples, probs, splits)
    heldout, sources = {}, {}
    for name, rows in files.items():
        write_scores(score_file(args.scores_dir, args.member, name), rows)
        if name != IN_DIST:
            fold = name.removeprefix("loso_")
            held = [r for r in rows if r.split == "heldout"]
            heldout[fold] = ([r.label for r in held], [r.fake_prob for r in held])
            sources[fold] = per_source_auc(rows)
    summary = loso_summary(heldout).as_dict()
    summary = {"folds": [{"fold": k, **v} for k, v in summary["folds"].items()],
               "mean_auc": summary["mean_auc"], "pooled_auc": summary["pooled_auc"], "per_source": sources}
    (args.scores_dir / args.member / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    cmd = "python training/sbi_scores.py --checkpoint " + args.checkpoint.as_posix() + f" --member {args.member}"
    md = card_markdown(summary, sources, args.member, cmd)
    print(md)
    if args.card:
        from udfd.cards import replace_marked_block

        card = args.checkpoint / "README.md"
        card.write_text(replace_marked_block(card.read_text(encoding="utf-8"), "loso", md,
                                             heading="## Leave-one-source-out (generalisation to unseen sources)",
                                             before="## Robustness"), encoding="utf-8")
    return summary


if __name__ == "__main__":
    main()
