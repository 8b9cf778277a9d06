"""Train the one-class VAE (`ocvae`) on REAL face crops only, then fit its thresholds and calibration.

    accelerate launch training/train_ocvae.py --data ../shared/data/faces --output models/udfd-ocvae \
        --config training/configs/ocvae.yaml

Data listing, the leak-free group split and the face-crop cache are training/data.py's, exactly as for
train_image.py. Training sees only the real images of the train split (mild augmentation: flips and a small
colour jitter); early stopping watches the VAE loss on the real images of the validation split, so no fake is
used to choose the weights. Afterwards the anomaly scores of train-real, val and test images give: the 80th
percentile of train-real scores and the max-F1 threshold on val (both classes), and a logistic calibration
score -> fake_prob fitted on val. The folder gets config.json, model.safetensors, README.md (model card with
score histograms, precision-recall curve and the thesis' threshold table), eval_results.json, split.json and
the two plots.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from any folder

from training.augment import AugmentConfig  # noqa: E402
from training.data import Sample, save_split  # noqa: E402
from training.options import common_parser, resolve, training_record  # noqa: E402
from training.train_image import CropDataset, _data_desc, prepare_data  # noqa: E402
from udfd.cards import render_card, robustness_markdown, write_card  # noqa: E402
from udfd.detectors.base import get_family  # noqa: E402
from udfd.detectors.ocvae import THRESHOLD_RULES, fit_logistic, vae_loss  # noqa: E402
from udfd.evaluation.evaluate import robustness_on_crops  # noqa: E402
from udfd.evaluation.metrics import best_f1_threshold, binary_metrics, metrics_by_group  # noqa: E402
from udfd.hub import push_folder  # noqa: E402
from udfd.perturb import DEFAULT_SUITE, parse_perturbations  # noqa: E402

FAMILY = "ocvae"
DEFAULTS: dict[str, Any] = {
    "epochs": 40, "batch_size": 32, "lr": 1e-3, "weight_decay": 0.0, "kl_weight": 1.0, "patience": 4,
    "lr_patience": 2, "lr_factor": 0.5, "seed": 42, "crop_size": 144, "val_share": 0.1, "test_share": 0.1,
    "arch": {}, "score": "pixel", "percentile": 80.0, "report_to": "tensorboard", "logging_dir": "runs",
    "cache_dir": ".cache/udfd", "max_minutes": 0.0, "version": "", "max_samples": 0, "mixed_precision": "",
}
# "Mild" on purpose: the VAE must learn what real faces look like, not what our augmentations look like.
MILD_AUG = AugmentConfig(flip=0.5, max_rotation=0.0, crop_scale=(1.0, 1.0), jitter=0.05, jpeg_prob=0.0,
                         rescale_prob=0.0)
PLOTS = {"hist": "score_histogram.png", "pr": "precision_recall.png"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = common_parser(__doc__)
    p.add_argument("--kl-weight", type=float, help="weight of the KL term (1 = the thesis' loss)")
    p.add_argument("--score", choices=("pixel", "latent"), help="pixel RMSE (OC-FakeDect1) or latent RMSE (2)")
    p.add_argument("--percentile", type=float, help="percentile of train-real scores for the one-class threshold")
    p.add_argument("--mixed-precision", help="no | bf16 (CPU autocast, ~1.7x faster here) | fp16; default: accelerate's")
    args = p.parse_args(argv)
    for k, v in resolve(p, args, defaults=DEFAULTS, family=FAMILY).items():
        setattr(args, k, v)
    return args


class _RealCrops(CropDataset):
    """train_image.py's dataset with mild augmentation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.aug = MILD_AUG


def _val_loss(model: torch.nn.Module, detector: Any, crops: np.ndarray, idx: list[int], batch: int,
              kl_weight: float) -> float:
    """Deterministic (z = μ) VAE loss per image on `idx`."""
    model.eval()
    total = 0.0
    with torch.inference_mode():
        for s in range(0, len(idx), batch):
            x = detector.preprocess([crops[i] for i in idx[s:s + batch]])
            loss, _, _ = vae_loss(x, *model(x), kl_weight=kl_weight)
            total += float(loss) * len(x)
    return total / max(len(idx), 1)


def _scores(detector: Any, crops: np.ndarray, idx: list[int], batch: int, kind: str) -> np.ndarray:
    detector.module().eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(idx), batch):
            out.append(detector.anomaly_scores(detector.preprocess([crops[i] for i in idx[s:s + batch]]), score=kind))
    return torch.cat(out).double().numpy() if out else np.zeros(0)


def main(argv: list[str] | None = None, *, hf_api: Any = None) -> Path:
    from accelerate import Accelerator
    from accelerate.logging import get_logger
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = None if args.report_to == "none" else args.report_to
    accelerator = Accelerator(log_with=report, project_dir=args.logging_dir,
                              mixed_precision=args.mixed_precision or None)
    log = get_logger(__name__)
    set_seed(args.seed)
    root, samples, split, crops, labels = prepare_data(args)
    real = {k: [i for i in v if labels[i] == 0] for k, v in split.items()}
    real["val"] = real["val"] or real["train"]
    if not real["train"]:
        raise SystemExit("no real images in the training split: the one-class VAE trains on real faces only")

    detector = get_family(FAMILY).create({**args.arch, "score": args.score})
    model = detector.module()
    train_dl = torch.utils.data.DataLoader(_RealCrops(crops, labels, real["train"], detector, train=True,
                                                      seed=args.seed), batch_size=args.batch_size, shuffle=True)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=args.lr_factor, patience=args.lr_patience)
    model, opt, train_dl = accelerator.prepare(model, opt, train_dl)
    if accelerator.is_main_process and report:
        accelerator.init_trackers("udfd-train-ocvae", config={k: str(v) for k, v in vars(args).items()})

    best_loss, best_state, stale, start = float("inf"), None, 0, time.time()
    for epoch in range(args.epochs):
        epoch_start = time.time()
        model.train()
        sums, seen = np.zeros(3), 0
        for x, _ in tqdm(train_dl, desc=f"epoch {epoch}", disable=not accelerator.is_local_main_process):
            losses = vae_loss(x, *model(x), kl_weight=args.kl_weight)
            accelerator.backward(losses[0])
            opt.step()
            opt.zero_grad()
            sums, seen = sums + np.array([v.item() for v in losses]) * len(x), seen + len(x)
        train_loss, rss, kl = sums / max(seen, 1)
        val_loss = _val_loss(model, detector, crops, real["val"], args.batch_size, args.kl_weight)
        sched.step(val_loss)
        accelerator.log({"train_loss": train_loss, "train_rss": rss, "train_kl": kl, "val_real_loss": val_loss,
                         "lr": opt.param_groups[0]["lr"]}, step=epoch)
        log.info(f"epoch {epoch}: train_loss {train_loss:.2f} (rss {rss:.2f}, kl {kl:.2f}) val_real_loss {val_loss:.2f}")
        if val_loss < best_loss:
            best_loss, stale = val_loss, 0
            best_state = copy.deepcopy(accelerator.unwrap_model(model).state_dict())
        else:
            stale += 1
        # Stop before an epoch that would not finish within --max-minutes (epochs take about the same time).
        out_of_time = args.max_minutes and 2 * time.time() - epoch_start - start > args.max_minutes * 60
        if stale >= args.patience or out_of_time:
            log.info(f"stopping after epoch {epoch} (stale {stale}, {(time.time() - start) / 60:.1f} min)")
            break
    accelerator.unwrap_model(model).load_state_dict(best_state)
    accelerator.end_training()
    if accelerator.is_main_process:
        _finish(args, detector, crops, labels, samples, split, root, hf_api=hf_api,
                train_minutes=(time.time() - start) / 60)
    return args.output


def _finish(args: argparse.Namespace, detector: Any, crops: np.ndarray, labels: np.ndarray, samples: list[Sample],
            split: dict[str, list[int]], root: Path, *, hf_api: Any, train_minutes: float) -> None:
    """Scores -> thresholds + calibration on val, metrics per split and source, plots, checkpoint folder, card."""
    log = logging.getLogger(__name__)
    model = detector.module()  # evaluate exactly what ships: weights rounded to fp16 as save_pretrained stores them
    model.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in model.state_dict().items()})
    scores = {k: _scores(detector, crops, v, args.batch_size, args.score) for k, v in split.items() if v}
    y = {k: labels[split[k]] for k in scores}
    real_train_scores = scores["train"][y["train"] == 0]
    fit_on = "val" if len(set(y["val"].tolist())) == 2 else "train"  # tiny smoke data may lack a class in val
    if fit_on != "val":
        log.warning("validation has one class only: thresholds and calibration fitted on the train split")
    slope, intercept = fit_logistic(scores[fit_on], y[fit_on])
    score_thresholds = {
        "percentile_80": float(np.percentile(real_train_scores, args.percentile)),
        "val_f1": best_f1_threshold(y[fit_on], scores[fit_on]),
    }
    detector.set_score_calibration(slope=slope, intercept=intercept, score_thresholds=score_thresholds)
    probs = {k: detector.fake_prob_of_score(v) for k, v in scores.items()}
    threshold = detector.threshold
    results = {k: binary_metrics(y[k], probs[k], threshold=threshold) for k in probs}
    held_out = "test" if "test" in probs else "val"
    sources = np.array([samples[i].source for i in split[held_out]])
    for src, m in metrics_by_group(y[held_out], probs[held_out], sources, threshold=threshold).items():
        results[f"{held_out}/{src}"] = m
    is_real = y[held_out] == 0
    for src in sorted(set(sources[~is_real].tolist())):  # one fake source against every held-out real face
        keep = is_real | (sources == src)
        results[f"{held_out}/{src} vs all real"] = binary_metrics(y[held_out][keep], probs[held_out][keep],
                                                                  threshold=threshold)
    in_use = binary_metrics(y[fit_on], probs[fit_on], threshold=threshold)
    # max F1 with an uninformative score is "call everything fake" (F1 = 2p / (1 + p)); the card says so
    degenerate = in_use["recall"] >= 0.98 and in_use["precision"] <= y[fit_on].mean() + 0.02
    table = _threshold_table(detector, y, probs, splits=("val", held_out), percentile=args.percentile,
                             fit_on=fit_on)
    variants = _score_variants(args, detector, crops, split, y, scores)
    held = split[held_out]
    robustness = robustness_on_crops(detector, [crops[i] for i in held], labels[held], parse_perturbations(DEFAULT_SUITE),
                                     batch_size=args.batch_size, seed=args.seed)

    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    version, train_cfg = training_record(args, root)
    train_cfg["train_minutes"] = round(train_minutes, 2)
    detector.save_pretrained(out, metadata={"version": version, "training": train_cfg, "crop_size": args.crop_size})
    rows = {f"{r['split']}@{r['rule']}": r["metrics"] for r in table}
    (out / "eval_results.json").write_text(json.dumps({**results, **rows}, indent=1), encoding="utf-8")
    save_split(out / "split.json", samples, split, seed=args.seed)
    pr_auc = _plots(out, scores[held_out], y[held_out], detector.thresholds, split_name=held_out)
    n_params = sum(p.numel() for p in detector.module().parameters())
    card = render_card(
        template="ocvae.md", model_name=out.name, dataset=train_cfg["data"], results=results,
        context={
            "family": FAMILY, "script": "train_ocvae.py", "arch": detector.arch, "n_params": f"{n_params / 1e6:.2f} M",
            "dtype": "float16", "score_kind": args.score, "slope": detector.slope, "intercept": detector.intercept,
            "threshold": threshold, "threshold_rule": detector.threshold_rule, "thresholds": detector.thresholds,
            "threshold_table": table, "score_variants": variants, "percentile": args.percentile,
            "held_out": held_out, "pr_auc": pr_auc, "degenerate_threshold": degenerate, "plots": PLOTS, "fit_on": fit_on, "version": version,
            "seed": args.seed, "crop_size": args.crop_size, "n_real_train": len(real_train_scores),
            "split_sizes": {k: len(v) for k, v in split.items()}, "data_desc": _data_desc(samples),
            "train_minutes": round(train_minutes, 1), "training_config": json.dumps(train_cfg, indent=1),
            "robustness_md": robustness_markdown(robustness, how=f"training/train_ocvae.py, {held_out} split"),
        },
    )
    write_card(out, card)
    log.info("wrote %s (val AUC %s, test AUC %s)", out, results["val"]["roc_auc"],
             results.get("test", {}).get("roc_auc"))
    if args.push_to_hub:
        push_folder(out, repo_id=args.hub_model_id, api=hf_api, commit_message=f"UDFD {FAMILY} {version}")


def _threshold_table(detector: Any, y: dict[str, np.ndarray], probs: dict[str, np.ndarray], *,
                     splits: tuple[str, ...], percentile: float, fit_on: str) -> list[dict[str, Any]]:
    """The thesis' table: for each threshold rule and split, the threshold and precision/recall/accuracy."""
    names = {"percentile_80": f"{percentile:g}th percentile of train-real scores", "val_f1": f"max F1 on {fit_on}"}
    rows = []
    for rule in THRESHOLD_RULES:
        t = detector.thresholds[rule]
        for split in dict.fromkeys(splits):
            rows.append({"rule": rule, "rule_desc": names[rule], "split": split, "score": t["score"],
                         "fake_prob": t["fake_prob"],
                         "metrics": binary_metrics(y[split], probs[split], threshold=t["fake_prob"])})
    return rows


def _score_variants(args: argparse.Namespace, detector: Any, crops: np.ndarray, split: dict[str, list[int]],
                    y: dict[str, np.ndarray], known: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """ROC-AUC / AP of both score kinds on val and test (same weights), to compare OC-FakeDect1 and 2."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    rows = []
    for kind in ("pixel", "latent"):
        row: dict[str, Any] = {"score": kind, "used": kind == args.score}
        for name in ("val", "test"):
            if name in y and len(set(y[name].tolist())) == 2:
                s = known[name] if kind == args.score else _scores(detector, crops, split[name], args.batch_size, kind)
                row[name] = {"roc_auc": float(roc_auc_score(y[name], s)),
                             "average_precision": float(average_precision_score(y[name], s))}
        rows.append(row)
        logging.getLogger(__name__).info("score %s: %s", kind, row)
    return rows


def _plots(out: Path, scores: np.ndarray, y: np.ndarray, thresholds: dict[str, dict[str, float]], *,
           split_name: str) -> float | None:
    """Density histograms real vs fake and the precision-recall curve (fake = positive); returns the PR AUC."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import auc, precision_recall_curve

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    bins = np.histogram_bin_edges(scores, bins=40)
    for label, name, color in ((0, "real", "tab:blue"), (1, "fake", "tab:red")):
        if (y == label).any():
            ax.hist(scores[y == label], bins=bins, density=True, alpha=0.55, color=color, label=name)
    for rule, style in (("percentile_80", ":"), ("val_f1", "--")):
        ax.axvline(thresholds[rule]["score"], color="k", linestyle=style, label=rule)
    ax.set(xlabel="anomaly score", ylabel="density", title=f"scores on {split_name}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / PLOTS["hist"])
    plt.close(fig)
    if len(set(y.tolist())) < 2:
        return None
    precision, recall, _ = precision_recall_curve(y, scores)
    pr_auc = float(auc(recall, precision))
    fig, ax = plt.subplots(figsize=(4.5, 4), dpi=100)
    ax.plot(recall, precision, color="tab:red")
    ax.axhline(y.mean(), color="grey", linestyle=":", label=f"chance ({y.mean():.2f})")
    ax.set(xlabel="recall (fake)", ylabel="precision (fake)", xlim=(0, 1), ylim=(0, 1.02),
           title=f"precision-recall on {split_name}, AUC {pr_auc:.3f}")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(out / PLOTS["pr"])
    plt.close(fig)
    return pr_auc


if __name__ == "__main__":
    main()
