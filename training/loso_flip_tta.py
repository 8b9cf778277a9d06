"""Does flip test-time augmentation help effnet_lite0's recipe? LOSO and in-distribution AUC, plain vs mirrored.

    python training/loso_flip_tta.py --data ../shared/data/faces --out runs/loso/lite0_s4_flip_tta.json

The frozen Lite0 stage-4 statistics of every crop (loso_frozen.py's cached features) and of its mirror image; per
fold a head fitted as loso_frozen.py fits it, then three scores of the held-out rows: plain (what ships), the mean
logit over crop and mirror ("tta"), and a head fitted on both views then averaged ("flip_train_tta").
Measured 2026-12-01: LOSO mean 0.6403 / 0.6400 / 0.6333, in-distribution test 0.807 / 0.809 / 0.813: not adopted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from any folder

from training.data import cached_crops, list_samples, split_samples  # noqa: E402
from training.loso import loso_split  # noqa: E402
from training.loso_frozen import embed, fit_head  # noqa: E402
from udfd.config import FaceSettings  # noqa: E402
from udfd.detectors.timm_classifier import TimmDetector  # noqa: E402
from udfd.evaluation.loso import FOLDS  # noqa: E402
from udfd.evaluation.metrics import binary_metrics  # noqa: E402

log = logging.getLogger("training.loso_flip_tta")
MODEL, SIZE, STAGES = "tf_efficientnet_lite0", 160, [4]


def features(det: TimmDetector, crops: np.ndarray, ident: list, cache_dir: Path, *, mirror: bool) -> np.ndarray:
    key = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:16]
    path = cache_dir / (f"feats-{key}-mirror.npy" if mirror else f"feats-{key}.npy")  # the plain ones: loso_frozen's
    if path.is_file():
        return np.load(path)
    x = embed(det, crops, transform=(lambda i, c: np.ascontiguousarray(c[:, ::-1])) if mirror else None)
    np.save(path, x)
    return x


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--cache-dir", type=Path, default=Path(".cache/udfd"))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    root = args.data.resolve()
    samples = list_samples(root)
    crops = cached_crops(root, samples, faces=FaceSettings(), size=SIZE, cache_dir=args.cache_dir)
    y = np.array([s.label for s in samples])
    det = TimmDetector.create({"model": MODEL, "init": "imagenet", "image_size": SIZE, "freeze_backbone": True,
                               "stats_stages": STAGES})
    ident = [[s.path for s in samples], MODEL, SIZE, SIZE, STAGES, hashlib.sha256(crops[::50].tobytes()).hexdigest()]
    x, xm = (features(det, crops, ident, args.cache_dir, mirror=m) for m in (False, True))
    runs = [(f.name, loso_split(samples, f.name, seed=args.seed, val=0.1, test=0.1)) for f in FOLDS]
    runs.append(("in_dist", split_samples(samples, seed=args.seed, val=0.1, test=0.1)))
    out: dict[str, dict[str, float]] = {}
    n = len(x)
    for name, split in runs:
        held = split["test"] if name == "in_dist" else split["heldout"]
        w, b, _ = fit_head(x, y, split["train"], split["val"])
        w2, b2, _ = fit_head(np.concatenate([x, xm]), np.concatenate([y, y]),
                             list(split["train"]) + [n + i for i in split["train"]], split["val"])
        logits = {"plain": x[held] @ w + b, "tta": (x[held] @ w + xm[held] @ w) / 2 + b,
                  "flip_train_tta": (x[held] @ w2 + xm[held] @ w2) / 2 + b2}
        out[name] = {k: binary_metrics(y[held], 1 / (1 + np.exp(-v)))["roc_auc"] for k, v in logits.items()}
        log.info("%s: %s", name, {k: round(v, 4) for k, v in out[name].items()})
    folds = [f.name for f in FOLDS]
    out["loso_mean"] = {k: float(np.mean([out[f][k] for f in folds])) for k in out[folds[0]]}
    log.info("LOSO mean: %s", {k: round(v, 4) for k, v in out["loso_mean"].items()})
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1), encoding="utf-8")
    return out


if __name__ == "__main__":
    main()
