"""Label-poisoning evaluation of the protector: simulated feedback on held-out faces.

    python training/eval_poisoning.py --data ../shared/data/faces --card models/udfd-protector

Honest users flag held-out images with their true label; attackers flip labels, either at random or
targeted (every fake of one source labelled real), making up 10 / 30 / 50 % of the flags. For each setting:
the share of poisoned flags the protector rejects (marks suspicious), the share of honest flags it accepts,
and the accuracy of a detector retrained on (a) all flags, (b) accepted flags only, (c) honest flags only
(the ceiling). "Retrained" here is deliberately cheap: a logistic-regression head on the detector's frozen
last-layer features, trained on the flags alone and scored on held-out images no flag came from; the
`*_with_train` numbers add the detector's original training images to the flags. Results go to
benchmarks/results/poisoning.json (and into the protector's card with --card).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from any folder

from training.data import Sample, cached_crops, list_samples, split_samples  # noqa: E402
from training.features import Features, cached_features, split_from_file  # noqa: E402
from udfd.config import FaceSettings, Settings  # noqa: E402
from udfd.feedback.protector import Protector, load_protector  # noqa: E402

log = logging.getLogger(__name__)
SHARES = (0.1, 0.3, 0.5)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="imagefolder tree DIR/{real,fake}/<source>/...")
    p.add_argument("--protector", default="local-dir:models/udfd-protector")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target-source", help="fake source the targeted attack labels real (default: largest)")
    p.add_argument("--crop-size", type=int, default=144)
    p.add_argument("--cache-dir", type=Path, default=Path(".cache/udfd"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/poisoning.json"))
    p.add_argument("--card", type=Path, help="protector folder whose README.md gets the table")
    return p.parse_args(argv)


def simulate_flags(pool: np.ndarray, labels: np.ndarray, sources: np.ndarray, *, share: float, attack: str,
                   target: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image index, user label, poisoned?) for len(pool) flags, `share` of them from attackers. Pure."""
    n = len(pool)
    n_bad = int(round(share * n))
    honest = rng.choice(pool, n - n_bad, replace=False)
    if attack == "random":
        bad = rng.choice(pool, n_bad, replace=True)
        bad_labels = 1 - labels[bad]
    else:  # targeted: every fake of the target source is called real (repeatedly when there are few)
        targets = pool[(labels[pool] == 1) & (sources[pool] == target)]
        bad = rng.choice(targets, n_bad, replace=True)
        bad_labels = np.zeros(n_bad, int)
    idx = np.concatenate([honest, bad])
    return idx, np.concatenate([labels[honest], bad_labels]), np.r_[np.zeros(len(honest), bool), np.ones(n_bad, bool)]


def retrained_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray) -> float:
    """Accuracy on the eval set of a logistic regression fitted on (x_train, y_train); 0.5-ish if one class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if len(set(y_train.tolist())) < 2:  # everything labelled one way: the "detector" says that class always
        return float((y_eval == y_train[0]).mean())
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    clf.fit(x_train, y_train)
    return float((clf.predict(x_eval) == y_eval).mean())


def run(features: Features, labels: np.ndarray, sources: np.ndarray, groups: np.ndarray,
        split: dict[str, list[int]], protector: Protector, *, repeats: int, seed: int, target: str) -> dict[str, Any]:
    prob = protector.fake_prob(torch.from_numpy(features.low), torch.from_numpy(features.high))
    test = np.asarray(split["test"])
    train = np.asarray(split["train"])
    x = features.high
    rows = []
    for attack in ("random", "targeted"):
        for share in SHARES:
            per = []
            for r in range(repeats):
                rng = np.random.default_rng([seed, r])
                gs = np.unique(groups[test])
                half = set(rng.permutation(gs)[: len(gs) // 2].tolist())
                in_pool = np.array([g in half for g in groups[test]])
                pool, held = test[in_pool], test[~in_pool]
                idx, user, bad = simulate_flags(pool, labels, sources, share=share, attack=attack, target=target,
                                                rng=rng)
                p_user = np.where(user == 1, prob[idx], 1 - prob[idx])
                ok = p_user >= protector.config.min_agreement
                tgt = held[(labels[held] == 1) & (sources[held] == target)]

                def acc(sel: np.ndarray, *, with_train: bool = False, on: np.ndarray = held, idx: np.ndarray = idx,
                        user: np.ndarray = user) -> float:
                    xs, ys = x[idx[sel]], user[sel]
                    if with_train:
                        xs, ys = np.concatenate([x[train], xs]), np.concatenate([labels[train], ys])
                    return retrained_accuracy(xs, ys, x[on], labels[on])

                per.append({
                    "poisoned_rejected": float((~ok[bad]).mean()) if bad.any() else None,
                    "honest_accepted": float(ok[~bad].mean()),
                    "acc_all_flags": acc(np.ones_like(ok)), "acc_accepted_flags": acc(ok),
                    "acc_honest_only": acc(~bad),
                    "acc_all_flags_with_train": acc(np.ones_like(ok), with_train=True),
                    "acc_accepted_flags_with_train": acc(ok, with_train=True),
                    "target_fakes_caught_all_flags": acc(np.ones_like(ok), on=tgt) if len(tgt) else None,
                    "target_fakes_caught_accepted_flags": acc(ok, on=tgt) if len(tgt) else None,
                    "n_flags": int(len(idx)), "n_eval": int(len(held)),
                })
            row: dict[str, Any] = {"attack": attack, "attacker_share": share}
            for k in per[0]:
                vals = [p[k] for p in per if p[k] is not None]
                row[k] = float(np.mean(vals)) if vals else None
                if k.startswith(("acc", "poisoned", "honest")) and vals:
                    row[k + "_std"] = float(np.std(vals))
            rows.append(row)
            log.info("%s %.0f%%: rejected %.3f accepted %.3f | acc all %.3f accepted %.3f honest %.3f", attack,
                     100 * share, row["poisoned_rejected"], row["honest_accepted"], row["acc_all_flags"],
                     row["acc_accepted_flags"], row["acc_honest_only"])
    return {"rows": rows, "detector_acc_on_test": float(((features.fake_prob[test] >= 0.5) == labels[test]).mean())}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from udfd.loader import load_detector

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    protector = load_protector(args.protector)
    settings = Settings.from_env()
    detector = load_detector(protector.config.detector, settings=settings)
    if detector.version != protector.config.detector_version:
        log.warning("detector %s is version %s, the protector was trained on %s", detector.name, detector.version,
                    protector.config.detector_version)
    root = args.data.resolve()
    samples: list[Sample] = list_samples(root)
    det_folder = Path(settings.models[detector.name].removeprefix("local-dir:"))
    split = split_from_file(det_folder / "split.json", samples) or split_samples(samples, seed=42)
    crops = cached_crops(root, samples, faces=FaceSettings(), size=args.crop_size, cache_dir=args.cache_dir)
    feats = cached_features(detector, crops, samples, cache_dir=args.cache_dir)
    labels = np.array([s.label for s in samples])
    sources = np.array([s.source for s in samples])
    groups = np.array([s.group.split(":", 1)[1] if s.source.startswith("dfdc") else s.group for s in samples])
    test = np.asarray(split["test"])
    fake_sources = sources[test][labels[test] == 1]
    target = args.target_source or max(set(fake_sources.tolist()), key=lambda s: (fake_sources == s).sum())
    result = run(feats, labels, sources, groups, split, protector, repeats=args.repeats, seed=args.seed,
                 target=target)
    result |= {
        "command": "python training/eval_poisoning.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "data": root.name, "protector": args.protector, "protector_version": protector.version,
        "detector": f"{detector.name}@{detector.version}", "min_agreement": protector.config.min_agreement,
        "target_source": target, "repeats": args.repeats, "date": time.strftime("%Y-%m-%d"),
        "retrain_desc": "a logistic-regression head on the detector's frozen last-layer features, fitted on the"
                        " flags alone (not a full retrain of the ViT)",
        "flag_pool": "half of the test split's groups per repeat (the other half scores the retrained heads);"
                     " flags are drawn uniformly from it, not only from images the detector got wrong",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    if args.card:
        from training.train_protector import write_protector_card

        write_protector_card(args.card, poisoning=result)
    return result


if __name__ == "__main__":
    main()
