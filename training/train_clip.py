"""Train the `clip` family: frozen CLIP embeddings -> triplet projection head -> SVM + Platt, as in the CLIP report.

    accelerate launch training/train_clip.py --data ../shared/data/faces --output models/udfd-clip \\
        --clip-model ViT-B-32 --clip-weights hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K

Steps: face crops (cached) -> CLIP image embeddings through Accelerate (cached per crop sha256 + encoder id) ->
for each variant (image, image+text sum, image+text product) a projection head trained with the triplet loss
(early stopping on validation loss) -> SVMs (RBF and linear) on the projections, Platt scaling on validation ->
a linear probe on the raw embeddings as baseline -> the best variant/kernel on validation ROC-AUC (or
`--select variant/kernel`) is saved with plots, metrics and a model card. Split 70/20/10 (train/test/val) by
group. `--clip-weights` is required: open_clip weights (hf-hub:org/repo or a local file). `--allow-random-encoder`
(tests and smoke runs only) uses random encoder weights and says so in config.json and the model card.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from any folder

from training.clip_embed import EmbeddingCache, embed_crops, encoder_id  # noqa: E402
from training.clip_report import (  # noqa: E402
    PLOTS,
    components_for,
    per_class_metrics,
    plot_distances,
    plot_losses,
    plot_pca,
)
from training.data import Sample, save_split  # noqa: E402
from training.options import common_parser, resolve, training_record  # noqa: E402
from training.train_image import _data_desc, prepare_data  # noqa: E402
from training.triplet import TripletConfig, TripletResult, project_all, train_head  # noqa: E402
from udfd.cards import render_card, write_card  # noqa: E402
from udfd.detectors.clip import ClipDetector  # noqa: E402
from udfd.detectors.clip_head import KERNELS, VARIANTS, PCAParams, SVMParams, fit_platt  # noqa: E402
from udfd.evaluation.metrics import best_youden_threshold, fake_sources_vs_reals, metrics_by_group  # noqa: E402
from udfd.hub import push_folder  # noqa: E402

DEFAULTS: dict[str, Any] = {
    "family": "clip", "clip_model": "ViT-B-32", "clip_weights": "", "allow_random_encoder": False,
    "epochs": 30, "batch_size": 128, "lr": 1e-3, "weight_decay": 1e-4, "patience": 5, "margin": 0.2,
    "head_hidden": 256, "head_dim": 128, "prompt": "a photo of a human face", "variants": list(VARIANTS),
    "kernels": list(KERNELS), "svm_c": 1.0, "select": "auto", "seed": 42, "crop_size": 224, "val_share": 0.1,
    "test_share": 0.2, "arch": {}, "report_to": "tensorboard", "logging_dir": "runs", "cache_dir": ".cache/udfd",
    "version": "", "max_samples": 0, "embed_batch_size": 32,
}
log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = common_parser(__doc__)
    p.add_argument("--clip-model", help="open_clip architecture name (ViT-B-32, ViT-B-16, ViT-B-32-quickgelu, ...)")
    p.add_argument("--clip-weights", help="hf-hub:org/repo[@rev] (open_clip_model.safetensors) or a local weights file")
    p.add_argument("--allow-random-encoder", action="store_true", default=None,
                   help="random encoder weights (tests / smoke runs only; marked in config.json and the card)")
    p.add_argument("--margin", type=float, help="triplet loss margin (on L2-normalised projections)")
    p.add_argument("--head-hidden", type=int)
    p.add_argument("--head-dim", type=int, help="projection size (128 in the report)")
    p.add_argument("--prompt", help="category text of the image+text variants")
    p.add_argument("--variants", type=lambda s: s.split(","), help="comma list of image,sum,product")
    p.add_argument("--kernels", type=lambda s: s.split(","), help="comma list of rbf,linear")
    p.add_argument("--svm-c", type=float, help="SVM regularisation C")
    p.add_argument("--select", help="auto (best validation ROC-AUC) or variant/kernel, e.g. image/rbf")
    p.add_argument("--embed-batch-size", type=int)
    args = p.parse_args(argv)
    merged = resolve(p, args, defaults=DEFAULTS, family="clip")
    for k, v in merged.items():
        setattr(args, k, v)
    if not args.clip_weights and not args.allow_random_encoder:
        p.error("--clip-weights is required (hf-hub:org/repo or a local open_clip weights file); the Hub is needed"
                " for hf-hub weights unless they are in the local cache")
    bad = [v for v in args.variants if v not in VARIANTS] + [k for k in args.kernels if k not in KERNELS]
    if bad:
        p.error(f"unknown variants/kernels {bad}; known {VARIANTS} and {KERNELS}")
    return args


def _arch(args: argparse.Namespace) -> dict[str, Any]:
    return {"clip_model": args.clip_model, "weights": args.clip_weights or None,
            "allow_random_encoder": bool(args.allow_random_encoder), "head_hidden": args.head_hidden,
            "head_dim": args.head_dim, "prompt": args.prompt, **args.arch}


def _fit_svms(z: np.ndarray, labels: np.ndarray, split: dict[str, list[int]], *, kernels: list[str],
              c: float) -> dict[str, dict[str, Any]]:
    """Per kernel: SVM on train, Platt and Youden threshold on val, per-class metrics on every split."""
    from sklearn.svm import SVC

    out = {}
    for kernel in kernels:
        svc = SVC(kernel=kernel, C=c, gamma="scale").fit(z[split["train"]], labels[split["train"]])
        decision = {k: svc.decision_function(z[v]) for k, v in split.items() if v}
        platt = fit_platt(decision["val"], labels[split["val"]])
        probs = {k: np.asarray(1.0 / (1.0 + np.exp(platt.a * d + platt.b))) for k, d in decision.items()}
        threshold = best_youden_threshold(labels[split["val"]], probs["val"])
        out[kernel] = {"svm": SVMParams.from_sklearn(svc), "sklearn": svc, "platt": platt, "threshold": threshold,
                       "probs": probs, "decision": decision,
                       "results": {k: per_class_metrics(labels[split[k]], p, threshold=threshold)
                                   for k, p in probs.items()}}
    return out


def _linear_probe(emb: np.ndarray, labels: np.ndarray, split: dict[str, list[int]]) -> dict[str, Any]:
    """UniversalFakeDetect-style baseline: logistic regression on the raw, L2-normalised CLIP embeddings."""
    from sklearn.linear_model import LogisticRegression

    x = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    clf = LogisticRegression(max_iter=2000).fit(x[split["train"]], labels[split["train"]])
    return {k: per_class_metrics(labels[v], clf.predict_proba(x[v])[:, 1], threshold=0.5)
            for k, v in split.items() if v}


def _select(runs: dict[tuple[str, str], dict[str, Any]], choice: str) -> tuple[str, str]:
    if choice != "auto":
        variant, _, kernel = choice.partition("/")
        if (variant, kernel) not in runs:
            raise SystemExit(f"--select {choice}: not among the trained {sorted(runs)}")
        return variant, kernel
    return max(runs, key=lambda k: (runs[k]["results"]["val"]["roc_auc"] or 0.0, -list(runs).index(k)))


def main(argv: list[str] | None = None, *, hf_api: Any = None) -> Path:
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = None if args.report_to == "none" else args.report_to
    accelerator = Accelerator(log_with=report, project_dir=args.logging_dir)
    set_seed(args.seed)
    if args.allow_random_encoder and not args.clip_weights:
        log.warning("RANDOM CLIP encoder weights: this run is a smoke test, its metrics say nothing about CLIP")
    root, samples, split, crops, labels = prepare_data(args)
    if len(set(labels[split["val"]].tolist())) < 2:  # tiny data (smoke runs): Platt needs both classes
        log.warning("the validation split holds one class only: calibrating and validating on train instead")
        split["val"] = list(split["train"])
    text_variants = [v for v in args.variants if v != "image"]
    base = ClipDetector.create({**_arch(args), "variant": "sum" if text_variants else "image"})
    enc_id = encoder_id(base)
    emb = embed_crops(base, crops, cache=EmbeddingCache(Path(args.cache_dir) / "clip-embeddings", enc_id),
                      accelerator=accelerator, batch_size=args.embed_batch_size)
    if accelerator.is_main_process and report:
        accelerator.init_trackers("udfd-train-clip", config={k: str(v) for k, v in vars(args).items()})
    text = base.net.text_embedding
    cfg = TripletConfig(hidden=args.head_hidden, out_dim=args.head_dim, margin=args.margin, batch_size=args.batch_size,
                        epochs=args.epochs, patience=args.patience, lr=args.lr, weight_decay=args.weight_decay,
                        seed=args.seed)
    heads: dict[str, TripletResult] = {}
    runs: dict[tuple[str, str], dict[str, Any]] = {}
    projections: dict[str, np.ndarray] = {}
    for variant in args.variants:
        t = text if variant != "image" else None
        heads[variant] = train_head(emb, labels, split["train"], split["val"], text=t, variant=variant, cfg=cfg,
                                    accelerator=accelerator, tag=f"{variant}/")
        projections[variant] = project_all(heads[variant].head, emb, t, variant)
        for kernel, run in _fit_svms(projections[variant], labels, split, kernels=args.kernels, c=args.svm_c).items():
            runs[(variant, kernel)] = run
            log.info("%s/%s: val %s", variant, kernel, {k: run["results"]["val"][k] for k in ("accuracy", "roc_auc")})
    probe = _linear_probe(emb, labels, split)
    accelerator.end_training()
    if accelerator.is_main_process:
        _finish(args, base, emb, labels, samples, split, root, runs=runs, heads=heads, projections=projections,
                probe=probe, encoder=enc_id, hf_api=hf_api)
    return args.output


def _finish(args: argparse.Namespace, base: ClipDetector, emb: np.ndarray, labels: np.ndarray, samples: list[Sample],
            split: dict[str, list[int]], root: Path, *, runs: dict[tuple[str, str], dict[str, Any]],
            heads: dict[str, TripletResult], projections: dict[str, np.ndarray], probe: dict[str, Any],
            encoder: str, hf_api: Any) -> None:
    """Build the chosen detector, check it reproduces the SVM, write plots, metrics, card; optionally push."""
    variant, kernel = _select(runs, args.select)
    run, head = runs[(variant, kernel)], heads[variant]
    z_train = projections[variant][split["train"]]
    pca = PCAParams.fit(z_train)
    detector = base.with_classifier(head.head, run["svm"], run["platt"], variant=variant,
                                    text=base.net.text_embedding if variant != "image" else None, pca=pca,
                                    meta={"encoder_id": encoder})
    detector.set_calibration(temperature=1.0, threshold=run["threshold"])
    held_out = "test" if split["test"] else "val"
    ours = detector.decision_from_embeddings(torch.from_numpy(emb[split[held_out]])).numpy()
    gap = float(np.max(np.abs(ours - run["decision"][held_out])))
    log.info("re-implemented SVM decision vs scikit-learn on %s: max |difference| %.3g", held_out, gap)
    if gap > 1e-6:
        raise RuntimeError(f"the stored SVM does not reproduce scikit-learn's decision (max gap {gap})")

    results: dict[str, Any] = dict(run["results"])
    sources = [samples[i].source for i in split[held_out]]
    y_h, p_h = labels[split[held_out]], run["probs"][held_out]
    by_source = metrics_by_group(y_h, p_h, sources, threshold=run["threshold"])
    by_source |= fake_sources_vs_reals(y_h, p_h, sources, threshold=run["threshold"])
    results |= {f"{held_out}/{src}": m for src, m in by_source.items()}
    comparison = [{"model": f"{v}/{k}", "used": (v, k) == (variant, kernel),
                   **{s: _summary(r["results"].get(s)) for s in ("train", "val", "test")}} for (v, k), r in runs.items()]
    comparison.append({"model": "linear probe (raw embedding)", "used": False,
                       **{s: _summary(probe.get(s)) for s in ("train", "val", "test")}})

    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    plot_losses(out, {v: (h.train_loss, h.val_loss) for v, h in heads.items()})
    plot_distances(out, head.val_distances, variant=variant)
    plot_pca(out, pca.transform(z_train), labels[split["train"]], pca.explained_variance_ratio, split="train")
    version, train_cfg = training_record(args, root)
    if train_cfg.get("clip_weights") and not str(train_cfg["clip_weights"]).startswith("hf-hub:"):
        train_cfg["clip_weights"] = Path(train_cfg["clip_weights"]).name  # bundled as encoder.safetensors; no paths
    random_encoder = bool(args.allow_random_encoder and not args.clip_weights)
    detector.save_pretrained(out, fp16=False, metadata={
        "version": version, "training": train_cfg, "crop_size": args.crop_size, "threshold_rule": "youden",
        "baseline_accuracy": results[held_out]["accuracy"], "selected": f"{variant}/{kernel}"})
    (out / "eval_results.json").write_text(json.dumps({"results": results, "comparison": comparison},
                                                      indent=1, default=float), encoding="utf-8")
    save_split(out / "split.json", samples, split, seed=args.seed)
    card = render_card(template="clip.md", model_name=out.name, dataset=train_cfg["data"],
                       results={k: v for k, v in results.items() if "/" not in k}, context={
        "family": "clip", "random_encoder": random_encoder, "clip_model": base.arch["clip_model"],
        "weights": args.clip_weights or "none (random)", "encoder_id": encoder, "variant": variant, "kernel": kernel,
        "head": f"{emb.shape[1]} → {args.head_hidden} → {args.head_dim}", "margin": args.margin,
        "prompt": args.prompt, "svm": run["svm"].meta(), "platt": run["platt"], "threshold": run["threshold"],
        "best_epoch": head.best_epoch + 1, "epochs_run": len(head.train_loss), "held_out": held_out,
        "per_source": {k.split("/", 1)[1]: v for k, v in results.items() if "/" in k}, "comparison": comparison,
        "pca_90": components_for(pca.explained_variance_ratio, 0.9), "pca_first": float(pca.explained_variance_ratio[0]),
        "plots": PLOTS, "version": version, "seed": args.seed, "crop_size": args.crop_size,
        "split_sizes": {k: len(v) for k, v in split.items()}, "data_desc": _data_desc(samples),
        "training_config": json.dumps(train_cfg, indent=1)})
    write_card(out, card)
    log.info("wrote %s (%s/%s, %s ROC-AUC %s)", out, variant, kernel, held_out, results[held_out]["roc_auc"])
    if args.push_to_hub:
        push_folder(out, repo_id=args.hub_model_id, api=hf_api, commit_message=f"UDFD clip {version}")


def _summary(m: dict[str, Any] | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {"accuracy": m["accuracy"], "macro_f1": m["macro"]["f1"], "roc_auc": m["roc_auc"]}


if __name__ == "__main__":
    main()
