"""Train the protector (udfd/feedback/protector.py) on a trained detector's frozen features, with Accelerate.

    accelerate launch training/train_protector.py --detector vit --data ../shared/data/faces \
        --output models/udfd-protector

Same data and split as the detector: the detector folder's split.json is used when it covers the data
(otherwise the same seeded group split as training/train_image.py). The folder written holds config.json,
model.safetensors, eval_results.json and README.md (the card; `training/eval_poisoning.py --card` adds the
poisoning figures to it).
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

from training.features import Features, cached_features, split_from_file  # noqa: E402
from training.options import common_parser  # noqa: E402
from training.train_image import prepare_data  # noqa: E402
from udfd.cards import render_card, write_card  # noqa: E402
from udfd.config import Settings  # noqa: E402
from udfd.evaluation.metrics import binary_metrics, fit_temperature, metrics_by_group  # noqa: E402
from udfd.feedback.protector import Protector, ProtectorConfig, ProtectorNet  # noqa: E402
from udfd.hub import parse_ref, push_folder, read_config, resolve  # noqa: E402

DEFAULTS: dict[str, Any] = {
    "detector": "vit", "epochs": 300, "batch_size": 256, "lr": 1e-3, "weight_decay": 1e-2, "patience": 20,
    "seed": 42, "crop_size": 144, "val_share": 0.1, "test_share": 0.1, "hidden": 128, "embed": 64, "dropout": 0.2,
    "min_agreement": 0.5, "report_to": "none", "logging_dir": "runs", "cache_dir": ".cache/udfd", "max_samples": 0,
    "version": "", "max_minutes": 0.0, "arch": {},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    import yaml

    p = common_parser(__doc__)
    p.add_argument("--detector", help="short name or hf-hub:/local-dir: reference of the trained detector")
    p.add_argument("--hidden", type=int)
    p.add_argument("--embed", type=int)
    p.add_argument("--dropout", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--min-agreement", type=float, help="accept a flag when P(user's label) >= this")
    args = p.parse_args(argv)
    from_yaml = (yaml.safe_load(args.config.read_text(encoding="utf-8")) or {}) if args.config else {}
    merged = {**DEFAULTS, **from_yaml, **{k: v for k, v in vars(args).items() if v is not None and k in DEFAULTS}}
    if sum(bool(x) for x in (args.data, args.hub_dataset, args.synthetic)) != 1:
        p.error("give exactly one of --data, --hub-dataset, --synthetic")
    if args.push_to_hub and not args.hub_model_id:
        p.error("--push-to-hub needs --hub-model-id org/name")
    for k, v in merged.items():
        setattr(args, k, v)
    return args


def fit(features: Features, labels: np.ndarray, split: dict[str, list[int]], cfg: ProtectorConfig,
        args: argparse.Namespace, accelerator: Any) -> tuple[Protector, list[dict[str, float]]]:
    """Train the three MLPs end to end with cross-entropy; early stopping on validation loss."""
    tr, va = split["train"], split["val"]
    both = np.concatenate([features.low, features.high], axis=1)
    cfg = ProtectorConfig(**{**cfg.__dict__, "feature_mean": tuple(both[tr].mean(0).tolist()),
                             "feature_std": tuple((both[tr].std(0) + 1e-6).tolist())})
    net = ProtectorNet(cfg)
    t = {k: torch.from_numpy(v) for k, v in (("low", features.low), ("high", features.high))}
    y = torch.from_numpy(labels.astype(np.int64))
    ds = torch.utils.data.TensorDataset(t["low"][tr], t["high"][tr], y[tr])
    dl = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    net, opt, dl = accelerator.prepare(net, opt, dl)
    best, best_state, stale, history, start = float("inf"), None, 0, [], time.time()
    for epoch in range(args.epochs):
        net.train()
        total = 0.0
        for low, high, yy in dl:
            loss = torch.nn.functional.cross_entropy(net(low, high), yy)
            accelerator.backward(loss)
            opt.step()
            opt.zero_grad()
            total += loss.item() * len(yy)
        model = accelerator.unwrap_model(net).eval()
        with torch.inference_mode():
            val_loss = float(torch.nn.functional.cross_entropy(model(t["low"][va], t["high"][va]), y[va]))
        history.append({"epoch": epoch, "train_loss": total / len(tr), "val_loss": val_loss})
        if val_loss < best - 1e-4:
            best, best_state, stale = val_loss, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
        if stale >= args.patience or (args.max_minutes and time.time() - start > args.max_minutes * 60):
            break
    model = accelerator.unwrap_model(net)
    model.load_state_dict(best_state)
    with torch.inference_mode():
        val_logits = model.eval()(t["low"][va], t["high"][va]).numpy()
    temperature = fit_temperature(val_logits, labels[va], fake_index=1)
    cfg = ProtectorConfig(**{**cfg.__dict__, "temperature": temperature})
    return Protector(model.eval(), cfg), history


def screening_rates(fake_prob: np.ndarray, labels: np.ndarray, *, min_agreement: float) -> dict[str, float]:
    """Share of honest flags (label = truth) accepted and of flipped flags (label = not truth) rejected."""
    p_truth = np.where(labels == 1, fake_prob, 1.0 - fake_prob)
    return {"honest_accepted": float((p_truth >= min_agreement).mean()),
            "flipped_rejected": float((1.0 - p_truth < min_agreement).mean()), "min_agreement": min_agreement}


def evaluate(protector: Protector, features: Features, labels: np.ndarray, split: dict[str, list[int]],
             sources: list[str], detector_threshold: float) -> dict[str, Any]:
    low, high = torch.from_numpy(features.low), torch.from_numpy(features.high)
    prob = protector.fake_prob(low, high)
    results: dict[str, Any] = {k: binary_metrics(labels[v], prob[v], threshold=0.5) for k, v in split.items() if v}
    held = "test" if split.get("test") else "val"
    idx = split[held]
    for src, m in metrics_by_group(labels[idx], prob[idx], [sources[i] for i in idx]).items():
        results[f"{held}/{src}"] = m
    results[f"detector/{held}"] = binary_metrics(labels[idx], features.fake_prob[idx], threshold=detector_threshold)
    results[f"screening/{held}"] = screening_rates(prob[idx], labels[idx],
                                                   min_agreement=protector.config.min_agreement)
    return results


def main(argv: list[str] | None = None, *, hf_api: Any = None) -> Path:
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from udfd.loader import load_detector

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger(__name__)
    accelerator = Accelerator()
    set_seed(args.seed)
    settings = Settings.from_env()
    detector = load_detector(args.detector, settings=settings)
    det_folder = resolve(parse_ref(args.detector, short_names=settings.models))
    root, samples, split, crops, labels = prepare_data(args)
    split = split_from_file(det_folder / "split.json", samples) or split
    if not split.get("val"):
        split["val"] = split["train"]
    features = cached_features(detector, crops, samples, cache_dir=Path(args.cache_dir))
    cfg = ProtectorConfig(low_dim=features.low.shape[1], high_dim=features.high.shape[1], hidden=args.hidden,
                          embed=args.embed, dropout=args.dropout, min_agreement=args.min_agreement,
                          detector=detector.name, detector_version=detector.version)
    protector, history = fit(features, labels, split, cfg, args, accelerator)
    results = evaluate(protector, features, labels, split, [s.source for s in samples], detector.threshold)
    if accelerator.is_main_process:
        out = Path(args.output)
        version = args.version or time.strftime("%Y%m%d-%H%M%S")
        protector.version = version
        train_cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                     if k not in ("config", "push_to_hub")}
        train_cfg["data"] = "synthetic" if args.synthetic else root.name
        protector.save_pretrained(out, metadata={"training": train_cfg, "epochs_run": len(history),
                                                 "split_sizes": {k: len(v) for k, v in split.items()}})
        (out / "eval_results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
        write_protector_card(out)
        held = "test" if split.get("test") else "val"
        log.info("wrote %s: protector %s accuracy %.3f (detector %.3f), screening %s", out, held,
                 results[held]["accuracy"], results[f"detector/{held}"]["accuracy"], results[f"screening/{held}"])
        if args.push_to_hub:
            push_folder(out, repo_id=args.hub_model_id, api=hf_api, commit_message=f"UDFD protector {version}")
    return Path(args.output)


def write_protector_card(folder: Path, *, poisoning: dict[str, Any] | None = None) -> Path:
    """(Re)render README.md from the folder's config.json and eval_results.json (+ poisoning figures)."""
    meta = read_config(folder)["udfd"]
    results = json.loads((folder / "eval_results.json").read_text(encoding="utf-8"))
    metric_rows = {k: v for k, v in results.items() if "accuracy" in v}
    held = "test" if "test" in results else "val"
    card = render_card(template="protector.md", model_name=folder.name, dataset=meta["training"]["data"],
                       results={k: v for k, v in metric_rows.items() if not k.startswith("detector/")},
                       context={"family": "protector", "cfg": meta["protector"], "version": meta["version"],
                                "training": json.dumps(meta["training"], indent=1), "held": held,
                                "detector_row": results.get(f"detector/{held}"), "all_rows": metric_rows,
                                "screening": results.get(f"screening/{held}"), "poisoning": poisoning,
                                "split_sizes": meta.get("split_sizes", {})})
    return write_card(folder, card)


if __name__ == "__main__":
    main()
