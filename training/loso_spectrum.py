"""Native-resolution spectrum statistics (`udfd.spectrum`) under the kinds heads, on every LOSO fold and on a
within-GAN split: measured against the frozen Lite0 statistics, which see only a 160 px resize of each face.

    python training/loso_spectrum.py --data ../shared/data/faces --grid 3 --member spectrum_w3 \
        --out benchmarks/results/loso_spectrum_grid3.json --save models/udfd-spectrum --version 1.1

`--save` writes the in-distribution fit (seed 42's train split, every kind's head) as a `spectrum` checkpoint
(`udfd.detectors.spectrum`): config.json, fp32 safetensors, split.json, eval_results.json and its card.

`--with-lite0` puts the spectrum features beside `loso_frozen.py`'s 640 stage-4 statistics (cached) instead of
alone. The `gan_heldout` split answers a question the stylegan fold cannot: with CelebA-HQ and FFHQ reals in
training (as in the shipped model), are StyleGAN-family fakes from generators it never saw told from held-out
CelebA-HQ and FFHQ photos? It holds out `celebahq_gan_interfacegan` and `tpdne_stylegan2` with a seeded half of
those reals' groups. Writes score files `<scores-dir>/<member>/<fold>.csv` for `training/fit_ensemble.py`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from any folder

from training.data import _tree_stamp, list_samples, split_samples  # noqa: E402
from training.kinds import fit_kinds, load_kinds, row_kinds  # noqa: E402
from training.loso import loso_split, write_run_scores  # noqa: E402
from udfd.config import FaceSettings  # noqa: E402
from udfd.evaluation.loso import FOLDS, member_summary  # noqa: E402
from udfd.evaluation.metrics import binary_metrics, fake_sources_vs_reals  # noqa: E402
from udfd.spectrum import FEATURE_SETS, N_FEATURES, V1, native_statistics  # noqa: E402

log = logging.getLogger(__name__)

GAN_HELDOUT_FAKES = ("celebahq_gan_interfacegan", "tpdne_stylegan2")
HQ_REALS = ("celebahq_real", "ffhq_real")


def native_spectra(root: Path, samples: list, cache_dir: Path, *, grid: int = 1, augment_seed: int | None = None,
                   features: str = V1) -> np.ndarray:
    """(N, FEATURE_SETS[features]) native statistics of each sample's first face crop at native resolution, cached.

    With `augment_seed`, each image is first degraded once by `augmentation(i, augment_seed)` (faces detected anew
    on the degraded image, as the robustness suite does): the training copies `--augment` adds.
    """
    from udfd.faces import detect_faces, get_face_detector
    from udfd.media import read_image

    faces = FaceSettings()
    stamp = json.dumps([[s.path for s in samples], N_FEATURES, _tree_stamp(root, samples), "spectrum-v1",
                        *([f"grid{grid}"] if grid != 1 else []),
                        *([f"augment-{AUGMENT_VERSION}-{augment_seed}"] if augment_seed is not None else []),
                        *([features, FEATURE_SETS[features]] if features != V1 else [])])
    path = cache_dir / f"spectrum-{hashlib.sha256(stamp.encode()).hexdigest()[:16]}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False)
    detector = get_face_detector(faces)
    out = np.zeros((len(samples), FEATURE_SETS[features]), dtype=np.float32)
    desc = "spectra" if augment_seed is None else "degraded spectra"
    for i, s in enumerate(tqdm(samples, desc=desc, unit="img")):
        pixels = read_image(root / s.path).pixels
        if augment_seed is not None:
            pixels = augmentation(i, augment_seed)(pixels)
        found = detect_faces(pixels, faces, detector=detector)
        if found:  # a degraded copy may lose its face: that row keeps zeros (the detector's own too-small flag)
            out[i] = native_statistics(found[0].pixels, grid=grid, features=features)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, out, allow_pickle=False)
    return out


AUGMENT_VERSION = 1


def augmentation(index: int, seed: int):
    """The degradation of training image `index`: blur, down-scale or JPEG, its strength drawn from ranges that
    contain none of the robustness suite's settings (blur1, resize0.5, jpeg50/75), so that suite stays a test."""
    from udfd import perturb

    rng = np.random.default_rng([seed, index])
    kind = int(rng.integers(3))
    if kind == 0:
        sigma = float(rng.choice([rng.uniform(0.5, 0.9), rng.uniform(1.1, 1.6)]))
        return lambda px: perturb.blur(px, sigma)
    if kind == 1:
        scale = float(rng.choice([rng.uniform(0.35, 0.45), rng.uniform(0.55, 0.8)]))
        return lambda px: perturb.resize_round_trip(px, scale)
    quality = int(rng.choice([rng.integers(55, 70), rng.integers(80, 95)]))
    return lambda px: perturb.jpeg(px, quality)


def gan_heldout_split(samples: list, *, seed: int) -> dict[str, list[int]]:
    """Train/val/test of everything but the held-out GAN sources and half of the HQ reals' groups, plus those."""
    rng = np.random.default_rng(seed)
    hq = sorted({s.group for s in samples if s.label == 0 and s.source in HQ_REALS})
    out_groups = set(rng.choice(hq, len(hq) // 2, replace=False).tolist())
    held = [i for i, s in enumerate(samples) if (s.label == 1 and s.source in GAN_HELDOUT_FAKES)
            or (s.label == 0 and s.group in out_groups)]
    held_set = set(held)
    rest = [i for i in range(len(samples)) if i not in held_set]
    inner = split_samples([samples[i] for i in rest], seed=seed, val=0.1, test=0.1)
    return {**{k: [rest[j] for j in v] for k, v in inner.items()}, "heldout": held}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--fake-kinds", type=Path, default=Path("training/configs/fake_kinds.json"))
    p.add_argument("--score-kinds", default="gan,diffusion")
    p.add_argument("--with-lite0", action="store_true")
    p.add_argument("--grid", type=int, default=1,
                   help="average the power spectrum over up to GRID x GRID central 128 px windows (1: the centre one)")
    p.add_argument("--augment", action="store_true",
                   help="train on a degraded copy of every training face as well (blur, down-scale or JPEG; "
                        "validation and held-out rows stay clean)")
    p.add_argument("--features", choices=sorted(FEATURE_SETS), default=V1,
                   help="the statistics (udfd.spectrum.FEATURE_SETS): v1 the spectrum, v2 with the luma residual's statistics")
    p.add_argument("--member", default="spectrum")
    p.add_argument("--scores-dir", type=Path, default=Path("runs/scores"))
    p.add_argument("--cache-dir", type=Path, default=Path(".cache/udfd"))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", type=Path, help="JSON of the per-fold results")
    p.add_argument("--save", type=Path, help="write the in-distribution fit as a spectrum checkpoint here")
    p.add_argument("--version", default="1.0")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = args.data.resolve()
    samples = list_samples(root)
    y = np.array([s.label for s in samples])
    sources = [s.source for s in samples]
    x = native_spectra(root, samples, args.cache_dir, grid=args.grid, features=args.features)
    if args.with_lite0:
        from training.loso_frozen import frozen_features

        lite0, *_ = frozen_features(root, samples, stages=[4], cache_dir=args.cache_dir)
        x = np.concatenate([lite0, x], axis=1)
    kinds = row_kinds(y, sources, load_kinds(args.fake_kinds))
    n = len(samples)
    x_fit, y_fit, kinds_fit = x, y, kinds
    if args.augment:
        if args.with_lite0:
            p.error("--augment degrades the spectrum statistics only: not with --with-lite0")
        x_fit = np.concatenate([x, native_spectra(root, samples, args.cache_dir, grid=args.grid,
                                                  augment_seed=args.seed, features=args.features)])
        y_fit, kinds_fit = np.concatenate([y, y]), np.concatenate([kinds, kinds])
    score_kinds = tuple(k for k in args.score_kinds.split(",") if k)
    runs = [(f.name, loso_split(samples, f.name, seed=args.seed, val=0.1, test=0.1)) for f in FOLDS]
    runs += [("gan_heldout", gan_heldout_split(samples, seed=args.seed)),
             ("in_dist", split_samples(samples, seed=args.seed, val=0.1, test=0.1))]
    results = {}
    if args.save and args.with_lite0:
        p.error("--save writes a spectrum checkpoint: the spectrum statistics alone, not --with-lite0")
    for name, split in runs:
        train = split["train"] + ([i + n for i in split["train"]] if args.augment else [])
        head = fit_kinds(x_fit, y_fit, kinds_fit, train, split["val"])
        if name == "in_dist" and args.save:
            save_checkpoint(args.save, head, x, y, samples, split, args)
        here = tuple(k for k in score_kinds if k in head.kinds) or None
        logit = {k: head.logit(x[v], here) for k, v in split.items() if v}
        held = "test" if name == "in_dist" else "heldout"
        prob = 1 / (1 + np.exp(-logit[held]))
        if name != "gan_heldout":
            write_run_scores(args.scores_dir, args.member, samples, split,
                             {k: 1 / (1 + np.exp(-v)) for k, v in logit.items()},
                             loso_fold=None if name == "in_dist" else name)
        srcs = [sources[i] for i in split[held]]
        results[name] = {"auc": binary_metrics(y[split[held]], prob)["roc_auc"],
                         "by_fake_source": {k: m["roc_auc"] for k, m in
                                            fake_sources_vs_reals(y[split[held]], prob, srcs).items()}}
        log.info("%s: %s", name, json.dumps(results[name]))
    summary = member_summary(args.scores_dir, args.member).as_dict()
    report = {"member": args.member, "with_lite0": args.with_lite0, "score_kinds": score_kinds, "seed": args.seed,
              "features": args.features, "grid": args.grid, "augment": args.augment, "runs": results, "loso": summary}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    log.info("LOSO mean %s pooled %s", summary.get("mean_auc"), summary.get("pooled_auc"))
    if args.save:
        write_card(args.save, report, args)
    return 0


def save_checkpoint(out: Path, head, x: np.ndarray, y: np.ndarray, samples: list, split: dict,
                    args: argparse.Namespace) -> None:
    """The in-distribution heads as a `spectrum` detector, calibrated on validation (temperature, Youden)."""
    import torch

    from training.data import save_split
    from training.kinds import read_kinds
    from udfd.detectors.spectrum import SpectrumDetector
    from udfd.evaluation.metrics import best_youden_threshold, fit_temperature, metrics_by_group

    features = getattr(args, "features", V1)
    det = SpectrumDetector.create({"fake_kinds": list(head.kinds), "grid": int(getattr(args, "grid", 1)),
                                   "features": features, "n_features": FEATURE_SETS[features]})
    with torch.no_grad():
        det.net.linear.weight.copy_(torch.from_numpy(head.weight).float())
        det.net.linear.bias.copy_(torch.from_numpy(head.bias).float())
        det.net.platt.copy_(torch.tensor(head.platt, dtype=torch.float32))
    logit = {k: head.logit(x[v]) for k, v in split.items() if v}
    t = fit_temperature(np.stack([np.zeros_like(logit["val"]), logit["val"]], 1), y[split["val"]])
    p_val = 1 / (1 + np.exp(-logit["val"] / t))
    det.set_calibration(temperature=t, threshold=best_youden_threshold(y[split["val"]], p_val))
    recipe = {"kind": "logistic", "C": head.c, "fake_kinds": read_kinds(args.fake_kinds), "min_kind_fakes": 30,
              **({"augment": f"one degraded copy per training face (v{AUGMENT_VERSION})"}
                 if getattr(args, "augment", False) else {})}
    display = {"title": "Native-resolution spectrum",
               "summary": "logistic heads per kind of fake on the high-frequency spectrum of the face crop at the "
                          "file's own resolution (no network); trained on the dev faces"}
    det.save_pretrained(out, fp16=False, metadata={"version": args.version, "threshold_rule": "youden",
                                                   "head": recipe, "display": display, "seed": args.seed})
    probs = {k: 1 / (1 + np.exp(-v / t)) for k, v in logit.items()}
    results = {k: binary_metrics(y[split[k]], pr, threshold=det.threshold) for k, pr in probs.items()}
    srcs = [samples[i].source for i in split["test"]]
    for src, m in (metrics_by_group(y[split["test"]], probs["test"], srcs, threshold=det.threshold)
                   | fake_sources_vs_reals(y[split["test"]], probs["test"], srcs, threshold=det.threshold)).items():
        results[f"test/{src}"] = m
    (out / "eval_results.json").write_text(json.dumps(results, indent=1, default=float), encoding="utf-8")
    save_split(out / "split.json", samples, split, seed=args.seed)


def write_card(out: Path, report: dict, args: argparse.Namespace) -> None:
    """The checkpoint's README.md: what it reads, how it was fitted, LOSO and in-distribution AUC per source."""
    from training.loso import loso_card_section
    from udfd.evaluation.loso import member_summary as summary_of

    config = json.loads((out / "config.json").read_text(encoding="utf-8"))["udfd"]
    ind = report["runs"]["in_dist"]
    gan = report["runs"]["gan_heldout"]
    summary = report["loso"]
    folds = summary["folds"]
    weakest = min(folds, key=lambda k: folds[k]["roc_auc"])
    rows = "\n".join(f"| {k.removesuffix(' vs all real')} | {v:.3f} |" for k, v in sorted(ind["by_fake_source"].items())
                     if v is not None)
    loso = loso_card_section({f"spectrum[{'+'.join(report['score_kinds'])}]": summary_of(args.scores_dir,
                                                                                        args.member)},
                             how=f"Made by `python training/loso_spectrum.py --data ../shared/data/faces --grid "
                                 f"{args.grid} --seed {args.seed} --member {args.member}` (score files "
                                 f"`{args.scores_dir}/{args.member}/`).")
    text = f"""---
license: other
pipeline_tag: image-classification
tags:
- deepfake-detection
- udfd
---

# udfd-spectrum {config['version']}

**What it reads.** The high-frequency spectrum of the face crop at the file's own resolution (`udfd.spectrum`,
{config['arch']['n_features']} statistics: the shape and level of the azimuthal log-power profile of the 3x3
high-pass residual, its power averaged over up to {config['arch']['grid']} x {config['arch']['grid']} adjacent
central windows of 128 px (Welch's estimate; a face under 256 px has room for one), and the log power at the
2x-upsampling and JPEG-block frequencies against their ring). No network and no resize: every other UDFD detector sees the face at 160 px, which erases what
generator upsampling leaves in a 1024 px face.

**How it was fitted.** One logistic head per kind of fake (`training/configs/fake_kinds.json`: face swap, GAN,
diffusion), each on its kind's fakes against all reals, standardised on the validation reals, combined by log-sum-exp
and Platt-scaled (`training/kinds.py`); C per kind by validation log loss ({json.dumps(config['head']['C'])}).
Temperature {config['temperature']:.3f} and threshold {config['threshold']:.3f} (Youden) on validation. Data: the dev
faces of `../shared/data/faces` (research-only sources, `SOURCES.md`), split by group with seed {args.seed}
(`split.json`).

**Where it is used.** Not alone: its GAN and diffusion heads are averaged with those of `effnet_lite0_kinds` in the
first term of the default `ensemble` (see that card). Alone: in-distribution test AUC {ind['auc']:.3f}, LOSO mean
{summary['mean_auc']:.3f} with its GAN and diffusion heads, weakest on {weakest} ({folds[weakest]['roc_auc']:.3f}).

## Leave-one-source-out (its GAN and diffusion heads, as the ensemble reads them)

{loso}

**GAN generators held out, CelebA-HQ and FFHQ reals in training** (`gan_heldout`: {', '.join(GAN_HELDOUT_FAKES)}
against a seeded half of the CelebA-HQ and FFHQ real groups; what the stylegan fold cannot ask): AUC {gan['auc']:.3f}
({', '.join(f"{k.removesuffix(' vs all real')} {v:.3f}" for k, v in gan['by_fake_source'].items())}).

## In-distribution test split (every kind's head), per fake source against all test reals

| fake source | AUC |
|---|---:|
{rows}
| **all** | {ind['auc']:.3f} |

## Limits

- JPEG re-compression, resizing and sharpening change these statistics directly: a re-saved or rescaled GAN face
  loses most of what this reads. The app's compressed-file reasons (JPEG quality 70 or below, lossy WebP 85 or
  below) say "cannot tell" for the worst cases.
- Crops under {48} px give zeros and a flag; of a large crop only the central windows are read.
- Fitted on 17 dev sources; it learns their file styles as much as any generator's trace (see the LOSO table).
"""
    (out / "README.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
