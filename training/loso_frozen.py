"""Frozen ImageNet backbone + trained head (the DLA report's first transfer-learning variant), LOSO and in-dist.

    python training/loso_frozen.py --data ../shared/data/faces --model tf_efficientnet_lite0 --image-size 160 \
        --member lite0_frozen --out runs/loso/lite0_frozen

The backbone (eval mode: ImageNet batch-norm statistics, no augmentation) embeds every face once; per fold a
logistic-regression head is fitted on the train rows (its L2 strength chosen by validation log loss), which is
exactly a frozen backbone with a trained linear classifier. Writes the score files for every fold and
`in_dist`, `summary.json`, and the in-distribution model as a normal `timm` checkpoint folder.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from any folder

from training.augment import AugmentConfig, augment  # noqa: E402
from training.data import cached_crops, list_samples, split_samples  # noqa: E402
from training.loso import loso_split, write_run_scores  # noqa: E402
from udfd.config import FaceSettings  # noqa: E402
from udfd.detectors.timm_classifier import TimmDetector  # noqa: E402
from udfd.evaluation.fairness import UNKNOWN, group_metrics, manifest_groups  # noqa: E402
from udfd.evaluation.loso import FOLDS, heldout_mask, member_summary  # noqa: E402
from udfd.evaluation.metrics import (  # noqa: E402
    best_f1_threshold,
    best_youden_threshold,
    binary_metrics,
    fake_sources_vs_reals,
    fit_temperature,
    metrics_by_group,
)

if TYPE_CHECKING:
    from training.kinds import KindsFit

log = logging.getLogger(__name__)
C_GRID = (0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


AUGMENTS = {  # --augment: the views --augment-copies adds, and how the card describes them
    "full": (AugmentConfig(noise_prob=0.3), "flip, rotation, crop, colour, sensor noise, rescale, JPEG"),
    "degrade": (AugmentConfig(max_rotation=0.0, crop_scale=(1.0, 1.0), jitter=0.0, jpeg_prob=0.5, rescale_prob=0.3,
                              noise_prob=0.5), "flip, sensor noise, rescale, JPEG"),  # only what a photo suffers
    "lowres": (AugmentConfig(max_rotation=0.0, crop_scale=(1.0, 1.0), jitter=0.0, jpeg_prob=0.5, jpeg_quality=(75, 95),
                             rescale_prob=1.0, rescale=(0.4, 0.8)),
               "flip, every face down to 0.4-0.8 of its side and back (a small face's detail), JPEG 75-95"),
}


def embed(detector: TimmDetector, crops: np.ndarray, *, batch: int = 64,
          transform: Callable[[int, np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """The head's input for every crop (`transform(i, crop)` first, when given)."""
    from tqdm.auto import tqdm

    detector.module().eval()
    out = []
    with torch.inference_mode():
        for s in tqdm(range(0, len(crops), batch), desc="features", unit="batch"):
            idx = range(s, min(s + batch, len(crops)))
            x = detector.preprocess([crops[i] if transform is None else transform(i, crops[i]) for i in idx])
            out.append(detector.head_input(x).float().numpy())
    return np.concatenate(out)


def frozen_features(root: Path, samples: list, *, model: str = "tf_efficientnet_lite0", image_size: int = 160,
                    crop_size: int = 160, stages: list[int] | None = None, resize: str = "area",
                    cache_dir: Path = Path(".cache/udfd")) -> tuple[np.ndarray, TimmDetector, np.ndarray, str]:
    """(head inputs of every face, the frozen detector, the crops, the cache key): embedded once, cached in
    `cache_dir/feats-<key>.npy`, the key covering the files, the network, the sizes, the stages and the crops."""
    crops = cached_crops(root, samples, faces=FaceSettings(), size=crop_size, cache_dir=cache_dir, resize=resize)
    stages = list(stages or [])
    det = TimmDetector.create({"model": model, "init": "imagenet", "image_size": image_size,
                               "freeze_backbone": True, "stats_stages": stages or None, "resize": resize})
    ident = [[s.path for s in samples], model, image_size, crop_size, stages,
             hashlib.sha256(crops[::50].tobytes()).hexdigest()]  # the crops too: the face cropper can change
    key = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:16]
    feat_path = cache_dir / f"feats-{key}.npy"
    if feat_path.is_file():
        return np.load(feat_path), det, crops, key
    x = embed(det, crops)
    np.save(feat_path, x)
    return x, det, crops, key


def augmented_features(det: TimmDetector, crops: np.ndarray, key: str, copies: int, *, seed: int,
                       cache_dir: Path, cfg: AugmentConfig) -> list[np.ndarray]:
    """`copies` augmented views of every crop (seeded per crop and copy), embedded once and cached."""
    views = []
    for k in range(copies):
        path = cache_dir / f"feats-{key}-aug{k}-{hashlib.sha256(repr((cfg, seed)).encode()).hexdigest()[:8]}.npy"
        if path.is_file():
            views.append(np.load(path))
            continue
        views.append(embed(det, crops, transform=lambda i, c, k=k: augment(c, np.random.default_rng(
            (seed, k, i)), cfg)))
        np.save(path, views[-1])
        log.info("augmented view %d of %d crops embedded (%s)", k + 1, len(crops), path.name)
    return views


def present_kinds(head: KindsFit, kinds: tuple[str, ...] | None, run: str) -> tuple[str, ...] | None:
    """--score-kinds in one run: the asked kinds that have a head there. A fold that holds out a kind's only fake
    sources trains no head for it (the held-out kind is unseen, as LOSO means), so the view reads the others; none
    left raises."""
    if kinds is None:
        return None
    present = tuple(k for k in kinds if k in head.kinds)
    if not present:
        raise ValueError(f"{run}: none of the kinds {list(kinds)} has a head (heads: {list(head.kinds)})")
    if len(present) < len(kinds):
        log.info("%s: no head for %s (held out); the view reads %s", run, sorted(set(kinds) - set(present)),
                 list(present))
    return present


def group_weights(labels: np.ndarray, groups: list[str], train: list[int]) -> np.ndarray:
    """Per-row training weights that give every known ethnicity the same total weight among the train reals (pure).

    Reals of an unknown group and all fakes keep weight 1; the weights of the known reals average 1, so the real
    class keeps its total weight. This is `--balance` for a linear head: reweighting instead of resampling.
    """
    w = np.ones(len(labels))
    known = [i for i in train if labels[i] == 0 and groups[i] != UNKNOWN]
    counts: dict[str, int] = {}
    for i in known:
        counts[groups[i]] = counts.get(groups[i], 0) + 1
    for i in known:
        w[i] = len(known) / (len(counts) * counts[groups[i]])
    return w


def real_fpr_by_group(y: np.ndarray, probs: dict[str, np.ndarray], split: dict[str, list[int]],
                      groups: list[str]) -> dict[str, object]:
    """False-positive rate of the test reals per known ethnicity at the val Youden threshold, and the largest gap."""
    threshold = best_youden_threshold(y[split["val"]], probs["val"])
    test = np.asarray(split["test"])
    keep = [j for j, i in enumerate(test) if y[i] == 0 and groups[i] != UNKNOWN]
    m = group_metrics(y[test[keep]], probs["test"][keep], [groups[i] for i in test[keep]], threshold=threshold)
    return {"threshold": threshold, "fpr": {g: r["fpr"] for g, r in m["groups"].items()},
            "n": {g: r["n"] for g, r in m["groups"].items()}, "fpr_gap": m["largest_gaps"]["fpr"]}


def fit_head(x: np.ndarray, y: np.ndarray, train: list[int], val: list[int],
             weights: np.ndarray | None = None, *, c: float | None = None) -> tuple[np.ndarray, float, float]:
    """(w, b, C) of a logistic regression on standardised features, folded back to raw features.

    C: the L2 strength; None picks it from C_GRID by validation log loss."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
    z = (x - mu) / sd
    best = None
    for cc in C_GRID if c is None else (c,):
        sw = None if weights is None else weights[train]
        clf = LogisticRegression(C=cc, max_iter=3000).fit(z[train], y[train], sample_weight=sw)
        loss = log_loss(y[val], clf.predict_proba(z[val])[:, 1], labels=[0, 1]) if c is None else 0.0
        if best is None or loss < best[0]:
            best = (loss, cc, clf)
    _, cc, clf = best
    w = clf.coef_[0] / sd
    return w, float(clf.intercept_[0] - (w * mu).sum()), cc


def loso_select_c(x: np.ndarray, y: np.ndarray, sources: list[str], rows: list[int], *,
                  grid: tuple[float, ...] = C_GRID, weights: np.ndarray | None = None,
                  criterion: str = "mean") -> tuple[float, dict[float, float]]:
    """The L2 strength with the best leave-one-source-out AUC *inside* rows (pure): for every fold with rows of
    both classes among them, a head fitted on the other rows scores that fold's rows; `criterion` "mean" ranks C by
    the mean of those AUCs, "min" by the worst fold's. Model selection by LOSO, nested: rows never include the outer
    fold, so its AUC stays an honest estimate. -> (best C, {C: inner mean or worst AUC})."""
    if criterion not in ("mean", "min"):
        raise ValueError(f"criterion must be 'mean' or 'min', not {criterion!r}")
    from sklearn.metrics import roc_auc_score

    rows_a = np.asarray(rows)
    inner = []
    for fold in FOLDS:
        m = heldout_mask(y[rows_a], [sources[i] for i in rows_a], fold)
        if m.any() and (~m).any() and len(set(y[rows_a[m]])) == 2:
            inner.append((list(rows_a[~m]), list(rows_a[m])))
    if not inner:
        raise ValueError("no fold with both classes inside the rows: C cannot be chosen by LOSO")
    scores: dict[float, float] = {}
    for c in grid:
        aucs = []
        for fit_rows, held in inner:
            w, b, _ = fit_head(x, y, fit_rows, [], weights, c=c)
            aucs.append(roc_auc_score(y[held], x[held] @ w + b))
        scores[c] = float(np.mean(aucs) if criterion == "mean" else np.min(aucs))
    return max(scores, key=scores.get), scores


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--model", default="tf_efficientnet_lite0")
    p.add_argument("--image-size", type=int, default=160)
    p.add_argument("--crop-size", type=int, default=160)
    p.add_argument("--stats-stages", default="",
                   help="comma-separated feature stages whose per-channel mean and std feed the head (e.g. 4); "
                        "default: the pooled pre-logits")
    p.add_argument("--member", default="lite0_frozen")
    p.add_argument("--scores-dir", type=Path, default=Path("runs/scores"))
    p.add_argument("--out", type=Path, default=Path("runs/loso/lite0_frozen"))
    p.add_argument("--cache-dir", type=Path, default=Path(".cache/udfd"))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--card-name", help="the model's name in its card (default: the output folder's name)")
    p.add_argument("--version", default="1.0", help="checkpoint version written to config.json and the card")
    p.add_argument("--balance", action="store_true",
                   help="weight the train reals so every known ethnicity (manifest notes) has the same total weight")
    p.add_argument("--augment-copies", type=int, default=0,
                   help="add this many augmented views (flip, rotation, crop, colour, noise, rescale, JPEG) of every "
                        "train face to the head's training rows; validation and scoring stay on the clean crops")
    p.add_argument("--augment", choices=sorted(AUGMENTS), default="full",
                   help="which views --augment-copies adds: full = the training augmentation plus noise, "
                        "degrade = noise, rescale and JPEG only")
    p.add_argument("--resize", choices=("area", "auto"), default="area",
                   help="how faces are resized to --crop-size, in training and (recorded in arch.resize) in the "
                        "product: area = cv2's area mode both ways (what every run before this option used), auto = "
                        "area when shrinking, bilinear when enlarging")
    p.add_argument("--select-c", choices=("val", "loso", "loso-min"), default="val",
                   help="how the head's L2 strength is chosen: val = validation log loss; loso = the best mean AUC "
                        "of a leave-one-source-out run inside each fold's train+val rows (nested, never the held-out "
                        "fold); loso-min = the best worst-fold AUC of that run")
    p.add_argument("--fake-kinds", type=Path,
                   help="a JSON file {kind: [fake sources]} (training/configs/fake_kinds.json): one head per kind of "
                        "fake, combined by log-sum-exp (training/kinds.py); C by validation log loss only")
    p.add_argument("--min-kind-fakes", type=int, default=30,
                   help="with --fake-kinds: a kind with fewer train fakes gets no head")
    p.add_argument("--score-kinds",
                   help="with --fake-kinds: comma-separated kinds whose heads alone give the scores written (the "
                        "log-sum-exp of those kinds, as an ensemble member spec {\"kinds\": [...]} computes it); "
                        "no model folder is written")
    p.add_argument("--only-in-dist", action="store_true", help="skip the LOSO folds (they are in the score files)")
    args = p.parse_args(argv)
    score_kinds = tuple(k.strip() for k in (args.score_kinds or "").split(",") if k.strip()) or None
    if score_kinds and not args.fake_kinds:
        p.error("--score-kinds needs --fake-kinds")
    if args.fake_kinds and args.select_c != "val":
        p.error("--fake-kinds chooses each head's C by validation log loss; it cannot be combined with --select-c")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    root = args.data.resolve()
    samples = list_samples(root)
    y = np.array([s.label for s in samples])
    stages = [int(v) for v in args.stats_stages.split(",") if v.strip()]
    x, det, crops, key = frozen_features(root, samples, model=args.model, image_size=args.image_size,
                                         crop_size=args.crop_size, stages=stages, resize=args.resize,
                                         cache_dir=args.cache_dir)
    views = augmented_features(det, crops, key, args.augment_copies, seed=args.seed, cache_dir=args.cache_dir,
                               cfg=AUGMENTS[args.augment][0])
    x_all, y_all = np.concatenate([x, *views]), np.concatenate([y] * (1 + len(views)))
    kind_all = None
    if args.fake_kinds:
        from training.kinds import load_kinds, row_kinds

        kind_all = np.concatenate([row_kinds(y, [s.source for s in samples], load_kinds(args.fake_kinds))]
                                  * (1 + len(views)))
    results: dict[str, object] = {}
    runs = [] if args.only_in_dist else [(f.name, loso_split(samples, f.name, seed=args.seed, val=0.1, test=0.1))
                                         for f in FOLDS]
    runs.append(("in_dist", split_samples(samples, seed=args.seed, val=0.1, test=0.1)))
    ethnicity = {rel: g[1] for rel, g in manifest_groups(root).items()}
    groups = [ethnicity.get(s.path, UNKNOWN) for s in samples]
    for name, split in runs:
        weights = group_weights(y, groups, split["train"]) if args.balance else None
        train = list(split["train"]) + [k * len(x) + i for k in range(1, 1 + len(views)) for i in split["train"]]
        if weights is not None:
            weights = np.concatenate([weights] * (1 + len(views)))
        c_loso = None
        if args.select_c != "val":
            c_loso, inner = loso_select_c(x, y, [s.source for s in samples], split["train"] + split["val"],
                                          weights=group_weights(y, groups, split["train"] + split["val"])
                                          if args.balance else None,
                                          criterion="min" if args.select_c == "loso-min" else "mean")
            log.info("%s: C by inner LOSO %s (%s AUC per C %s)", name, c_loso,
                     "worst-fold" if args.select_c == "loso-min" else "mean", json.dumps(inner))
        if kind_all is None:
            w, b, c = fit_head(x_all, y_all, train, split["val"], weights, c=c_loso)
            head: tuple[np.ndarray, float] | KindsFit = (w, b)
            logit = {k: x[v] @ w + b for k, v in split.items() if v}
        else:
            from training.kinds import fit_kinds

            head = fit_kinds(x_all, y_all, kind_all, train, split["val"], weights, min_fakes=args.min_kind_fakes)
            c = head.c
            kinds_here = present_kinds(head, score_kinds, name)
            logit = {k: head.logit(x[v], kinds_here) for k, v in split.items() if v}
        probs = {k: 1 / (1 + np.exp(-v)) for k, v in logit.items()}
        loso = name if name != "in_dist" else None
        write_run_scores(args.scores_dir, args.member, samples, split, probs, loso_fold=loso)
        held = "heldout" if loso else "test"
        srcs = [samples[i].source for i in split[held]]
        entry = {"C": c, "val_auc": binary_metrics(y[split["val"]], probs["val"])["roc_auc"],
                 f"{held}_auc": binary_metrics(y[split[held]], probs[held])["roc_auc"],
                 "by_source": {k: m["roc_auc"] for k, m in (
                     metrics_by_group(y[split[held]], probs[held], srcs)
                     | fake_sources_vs_reals(y[split[held]], probs[held], srcs)).items()}}
        if name == "in_dist":
            entry["fairness"] = real_fpr_by_group(y, probs, split, groups)
        results[name] = entry
        log.info("%s: %s", name, json.dumps(entry))
        if name == "in_dist" and not score_kinds:
            if kind_all is not None:
                det = TimmDetector.create({**det.arch, "fake_kinds": list(head.kinds)})
            _save(det, head, logit["val"], y[split["val"]], args, c)
            _finish_folder(det, logit, y, samples, split, root, args, c,
                           n_trained=None if kind_all is None else head.weight.size + head.bias.size)
    summary = member_summary(args.scores_dir, args.member).as_dict()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps({"loso": summary, "runs": results}, indent=1), encoding="utf-8")
    print(json.dumps(summary, indent=1))
    return 0


def _save(det: TimmDetector, fitted: tuple[np.ndarray, float] | KindsFit, val_logit: np.ndarray, y_val: np.ndarray,
          args: argparse.Namespace, c: float | dict) -> None:
    """The in-distribution head as the network's 2-way classifier, calibrated: real logit 0 and fake logit w·x + b
    for `fitted` = (w, b), or a `KindsHead` holding a `training.kinds.KindsFit`'s weights."""
    head = det.net.get_classifier()
    with torch.no_grad():
        if isinstance(fitted, tuple):
            w, b = fitted
            head.weight.zero_()
            head.bias.zero_()
            head.weight[1] = torch.from_numpy(w).float()
            head.bias[1] = b
        else:
            head.linear.weight.copy_(torch.from_numpy(fitted.weight).float())
            head.linear.bias.copy_(torch.from_numpy(fitted.bias).float())
            head.platt.copy_(torch.tensor(fitted.platt, dtype=torch.float32))
    two = np.stack([np.zeros_like(val_logit), val_logit], 1)
    t = fit_temperature(two, y_val)
    p_val = 1 / (1 + np.exp(-val_logit / t))
    det.set_calibration(temperature=t, threshold=best_youden_threshold(y_val, p_val))
    det.meta["threshold_max_f1"] = best_f1_threshold(y_val, p_val)
    recipe = {"kind": "logistic", "C": c, "select_c": args.select_c}
    if getattr(args, "fake_kinds", None):  # what retrain.py needs to fit the same heads again
        from training.kinds import read_kinds

        recipe |= {"fake_kinds": read_kinds(args.fake_kinds), "min_kind_fakes": args.min_kind_fakes}
    det.save_pretrained(args.out / "model", metadata={"version": args.version, "threshold_rule": "youden",
                                                      "head": recipe, "crop_size": args.crop_size})


def _finish_folder(det: TimmDetector, logit: dict[str, np.ndarray], y: np.ndarray, samples: list, split: dict,
                   root: Path, args: argparse.Namespace, c: float, *, script: str = "loso_frozen.py",
                   architecture: str | None = None, n_trained: int | None = None) -> None:
    """eval_results.json, split.json and the model card of the in-distribution checkpoint (as train_image writes).

    `architecture` and `n_trained` describe another recipe on the same network (loso_partial.py); by default the
    frozen backbone + logistic head of this script."""
    from training.data import save_split
    from training.train_image import _data_desc
    from udfd.cards import render_card, write_card

    out = args.out / "model"
    probs = {k: 1 / (1 + np.exp(-v / det.temperature)) for k, v in logit.items()}
    results = {k: binary_metrics(y[split[k]], p, threshold=det.threshold) for k, p in probs.items()}
    srcs = [samples[i].source for i in split["test"]]
    for src, m in (metrics_by_group(y[split["test"]], probs["test"], srcs, threshold=det.threshold)
                   | fake_sources_vs_reals(y[split["test"]], probs["test"], srcs, threshold=det.threshold)).items():
        results[f"test/{src}"] = m
    (out / "eval_results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    save_split(out / "split.json", samples, split, seed=args.seed)
    rec = det.meta["init_weights"]
    cfg = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()} | {"data": root.name, "C": c}
    card = render_card(template="detector.md", model_name=args.card_name or out.name, dataset=root.name, results=results, context={
        "family": det.family, "library_name": None, "script": script,
        "architecture": architecture or (
            f"timm {args.model}, frozen ImageNet backbone (eval-mode batch norm) + logistic-regression"
            f" head (L2 C={c}, chosen by {_c_desc(args)}) on {_head_desc(args)}, "
            + (f"{args.augment_copies} augmented view(s) of every train face added"
               f" ({AUGMENTS[args.augment][1]})" if args.augment_copies else "no augmentation")),
        "input_desc": f"RGB face crop resized to {det.image_size} px", "dtype": "float16",
        "n_params": f"{sum(p.numel() for p in det.module().parameters()) / 1e6:.2f} M"
                    f" ({n_trained or sum(p.numel() for p in det.module().get_classifier().parameters()) // 2 + 1}"
                    " trained)",
        "threshold": det.threshold, "thresholds": {"max_f1": det.meta.get("threshold_max_f1", det.threshold)},
        "temperature": det.temperature, "version": args.version, "seed": args.seed, "crop_size": args.crop_size,
        "pretrained": f"ImageNet-1k ({rec['package']}=={rec['version']}, sha256 {rec['sha256']}, {rec['licence']})",
        "init_weights": rec, "split_sizes": {k: len(v) for k, v in split.items()}, "data_desc": _data_desc(samples),
        "training_config": json.dumps(cfg, indent=1), "balance": None, "robustness_md": "", "loso_md": ""})
    write_card(out, card)


def _c_desc(args: argparse.Namespace) -> str:
    if getattr(args, "select_c", "val") != "val":
        how = "worst-fold" if args.select_c == "loso-min" else "mean"
        return f"the best {how} leave-one-source-out AUC inside the train+val rows"
    return "validation log loss"


def _head_desc(args: argparse.Namespace) -> str:
    what = ("the pooled pre-logits" if not args.stats_stages
            else f"the per-channel mean and std of feature stage(s) {args.stats_stages}")
    if getattr(args, "fake_kinds", None):
        what += (", one head per kind of fake (each kind's fakes against all reals, standardised on the validation"
                 " reals) combined by log-sum-exp (`--fake-kinds`)")
    return what


if __name__ == "__main__":
    raise SystemExit(main())
