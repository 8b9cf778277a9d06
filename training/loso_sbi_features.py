"""The self-blend network as a frozen backbone: its stage-4 statistics, alone or beside ImageNet Lite0's, under the
kinds heads of `loso_frozen.py --fake-kinds`, scored by one kind's head on every LOSO fold (measured, not shipped:
README, "The self-blend network as a second frozen backbone").

    python training/loso_sbi_features.py --data ../shared/data/faces --mode cat --seed 42

`sbi_lite0` never saw a fake, but it trained on the train-split reals of every source, so each fold's held-out reals
are only those outside its training split (as `training/sbi_scores.py` does); its fakes are all held out. Writes the
score files `<scores-dir>/sbifeat_<mode>_<kind>[_s<seed>]/<fold>.csv` for `training/fit_ensemble.py`.
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
from training.kinds import fit_kinds, load_kinds, row_kinds  # noqa: E402
from training.loso import loso_split, write_run_scores  # noqa: E402
from training.loso_frozen import embed, frozen_features, present_kinds  # noqa: E402
from udfd.config import FaceSettings  # noqa: E402
from udfd.detectors.timm_classifier import TimmDetector  # noqa: E402
from udfd.evaluation.loso import FOLDS  # noqa: E402

log = logging.getLogger(__name__)


def sbi_stats_detector(checkpoint: Path) -> TimmDetector:
    """Lite0 with a stage-4 statistics head whose backbone holds the SBI checkpoint's weights (the head is unused)."""
    from safetensors.torch import load_file

    config = json.loads((checkpoint / "config.json").read_text())["udfd"]
    det = TimmDetector.create({"model": config["arch"]["model"], "image_size": config["arch"]["image_size"],
                               "freeze_backbone": True, "stats_stages": [4], "resize": "area"})
    saved = load_file(str(checkpoint / "model.safetensors"))
    own = det.net.state_dict()
    take = {k: saved[k.removeprefix("backbone.")] for k in own if k.startswith("backbone.")
            and k.removeprefix("backbone.") in saved and saved[k.removeprefix("backbone.")].shape == own[k].shape}
    missing = [k for k in own if k.startswith("backbone.") and k not in take]
    if missing:
        raise ValueError(f"{checkpoint}: no weights for {len(missing)} backbone tensors, e.g. {missing[:3]}")
    det.net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in take.items()}, strict=False)
    return det


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--checkpoint", type=Path, default=Path("models/udfd-sbi-lite0"))
    p.add_argument("--mode", choices=("sbi", "cat"), default="cat",
                   help="sbi = the SBI network's statistics alone; cat = beside ImageNet Lite0's (loso_frozen's)")
    p.add_argument("--kind", default="face_swap", help="the kind whose head scores the faces")
    p.add_argument("--fake-kinds", type=Path, default=Path("training/configs/fake_kinds.json"))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--scores-dir", type=Path, default=Path("runs/scores"))
    p.add_argument("--cache-dir", type=Path, default=Path(".cache/udfd"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    root = args.data.resolve()
    samples = list_samples(root)
    y = np.array([s.label for s in samples])
    weights = hashlib.sha256((args.checkpoint / "model.safetensors").read_bytes()).hexdigest()[:12]
    cache = args.cache_dir / f"feats-sbi-s4-{weights}-{len(samples)}.npy"  # the crops are loso_frozen's (cached)
    if cache.is_file():
        x = np.load(cache)
    else:
        crops = cached_crops(root, samples, faces=FaceSettings(), size=160, cache_dir=args.cache_dir, resize="area")
        x = embed(sbi_stats_detector(args.checkpoint), crops)
        np.save(cache, x)
    if args.mode == "cat":
        lite, *_ = frozen_features(root, samples, stages=[4], cache_dir=args.cache_dir)
        x = np.concatenate([lite, x], axis=1)
    kinds = row_kinds(y, [s.source for s in samples], load_kinds(args.fake_kinds))
    trained_on = set(json.loads((args.checkpoint / "split.json").read_text())["splits"]["train"])
    member = f"sbifeat_{args.mode}_{args.kind}" + (f"_s{args.seed}" if args.seed != 42 else "")
    for name in [f.name for f in FOLDS] + ["in_dist"]:
        split = (split_samples(samples, seed=args.seed, val=0.1, test=0.1) if name == "in_dist" else
                 loso_split(samples, name, seed=args.seed, val=0.1, test=0.1))
        head = fit_kinds(x, y, kinds, split["train"], split["val"], None, min_fakes=30)
        scored = present_kinds(head, (args.kind,), name)
        if name != "in_dist":
            split = dict(split, heldout=[i for i in split["heldout"] if y[i] == 1 or samples[i].path not in trained_on])
        probs = {k: 1 / (1 + np.exp(-head.logit(x[v], scored))) for k, v in split.items() if v}
        write_run_scores(args.scores_dir, member, samples, split, probs, loso_fold=None if name == "in_dist" else name)
    log.info("wrote the score files of %s", member)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
