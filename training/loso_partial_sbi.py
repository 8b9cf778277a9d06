"""Self-blended-image (SBI) specialist, trained cheaply: loso_partial.py's partial fine-tune on reals vs self-blends.

    python training/loso_partial_sbi.py --data ../shared/data/faces --train-last 1 --cache-last 2 \
        --member lite0_sbi1 --out runs/loso/lite0_sbi1

SBI (Shiohara & Yamasaki, CVPR 2022; `training/sbi.py`): a real face blended with a transformed copy of itself
inside a deformed landmark hull is labelled fake. Here the data's fakes are never trained on: every run trains
reals (label 0: the crop and its mirror) against `--blends` seeded self-blends of those same reals (label 1), with
the network and training of `loso_partial.py` (ImageNet Lite0 frozen up to the last `--train-last` blocks; their
input activations cached once for the real crops, their mirrors and every blend; AdamW on the cached activations;
the epoch of lowest validation log loss kept, epoch 0 = the logistic head on the untrained features).

Blends are made once for every real crop with a FaceMesh mesh (the landmark cache of `training/sbi_data.py`),
seeded by (seed, blend number, crop index), so one activation cache serves every fold; a run *uses* only the
blends of its own train reals (training) and val reals (epoch selection): no held-out face, and no data fake,
reaches the weights. Per LOSO fold the held-out rows (reals and real fakes) are scored into
`<scores-dir>/<member>/loso_<fold>.csv` (plus the fold's val rows, real fakes included, for the ensemble's
standardisation); the in-distribution run writes `in_dist.csv` and a normal `timm` checkpoint folder
(temperature and threshold fitted on the ordinary val split, real fakes included: calibration only, no weights).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from any folder

from training.data import cached_crops, list_samples, split_samples  # noqa: E402
from training.loso import loso_split, write_run_scores  # noqa: E402
from training.loso_frozen import _finish_folder, fit_head  # noqa: E402
from training.loso_partial import (  # noqa: E402
    Stats,
    Tail,
    cached_views,
    ir_blocks,
    parser,
    prefix_activations,
    round_trip,
    run_tail,
    save_checkpoint,
    train_tail,
    write_summary,
)
from training.sbi import SbiConfig, self_blend  # noqa: E402
from training.sbi_data import cached_landmarks  # noqa: E402
from udfd.config import FaceSettings  # noqa: E402
from udfd.detectors.timm_classifier import TimmDetector  # noqa: E402
from udfd.evaluation.loso import FOLDS  # noqa: E402
from udfd.evaluation.metrics import binary_metrics, fake_sources_vs_reals, metrics_by_group  # noqa: E402

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    """Rows of the one activation array a run reads: the n crops, their n mirrors, then `blends` blocks of one
    self-blend per meshed real (`meshed[j]` is the crop of row j of every block)."""

    n: int
    meshed: tuple[int, ...]
    blends: int

    @property
    def rows(self) -> int:
        return 2 * self.n + self.blends * len(self.meshed)

    def real_rows(self, i: int) -> list[int]:
        return [i, self.n + i]

    def blend_rows(self, i: int) -> list[int]:
        pos = self._pos.get(i)
        return [] if pos is None else [2 * self.n + k * len(self.meshed) + pos for k in range(self.blends)]

    def crop_of(self, row: int) -> int:
        """The crop a row was made from (itself, mirrored, or self-blended)."""
        if row < 2 * self.n:
            return row % self.n
        return self.meshed[(row - 2 * self.n) % len(self.meshed)]

    def blend_of(self, row: int) -> int | None:
        """Which blend (0 ..) a row is, None for a crop or mirror row."""
        return None if row < 2 * self.n else (row - 2 * self.n) // len(self.meshed)

    def labels(self, y: np.ndarray) -> np.ndarray:
        """The crops' own labels for the crop and mirror rows, 1 (fake) for every blend row."""
        return np.concatenate([y, y, np.ones(self.blends * len(self.meshed), y.dtype)])

    @cached_property
    def _pos(self) -> dict[int, int]:
        return {c: j for j, c in enumerate(self.meshed)}


def sbi_rows(layout: Layout, y: np.ndarray, idx: list[int]) -> list[int]:
    """The SBI rows of the crops idx: each *real* crop, its mirror and its blends; data fakes are left out (pure)."""
    reals = [i for i in idx if y[i] == 0]
    return [r for i in reals for r in layout.real_rows(i)] + [r for i in reals for r in layout.blend_rows(i)]


def blend_seed(seed: int, k: int, crop: int) -> np.random.Generator:
    """The generator of blend k of one crop: independent of which other crops are blended."""
    return np.random.default_rng((seed, k, crop))


def make_blends(crops: np.ndarray, meshed: tuple[int, ...], points: dict[int, np.ndarray], k: int, *, seed: int,
                cfg: SbiConfig) -> np.ndarray:
    """Blend k of every meshed crop, (len(meshed), H, W, 3) uint8, in `meshed` order (pure)."""
    from tqdm.auto import tqdm

    out = np.empty((len(meshed), *crops.shape[1:]), np.uint8)
    for j, i in enumerate(tqdm(meshed, desc=f"self-blends {k + 1}", unit="face")):
        out[j] = self_blend(crops[i], points[i], blend_seed(seed, k, i), cfg).image
    return out


def blend_activations(det: TimmDetector, crops: np.ndarray, meshed: tuple[int, ...], points: dict[int, np.ndarray],
                      k: int, start: int, cache_start: int, key: str, cache_dir: Path, *, seed: int,
                      cfg: SbiConfig) -> np.ndarray:
    """Inputs of IR block `start` for blend k of every meshed crop: cached after block `cache_start` as loso_partial
    caches the crops (no mirror: another seeded blend is the more varied second view)."""
    stamp = hashlib.sha256(repr((key, meshed, seed, k, cfg)).encode()).hexdigest()[:16]
    path = cache_dir / f"acts-{key}-ir{cache_start}-sbi-{stamp}.npy"
    if not path.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        acts = prefix_activations(det, make_blends(crops, meshed, points, k, seed=seed, cfg=cfg), cache_start)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, acts)
        tmp.replace(path)
        log.info("cached activations of self-blend %d of %d crops in %s", k + 1, len(meshed), path.name)
    acts = np.load(path)
    if start == cache_start:
        return acts
    between = nn.Sequential(*[blk for _, blk in ir_blocks(det)[cache_start:start]]).eval()
    return np.concatenate([run_tail(between, acts, list(range(s, min(s + 512, len(acts))))).astype(np.float16)
                           for s in range(0, len(acts), 512)])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = parser(description=__doc__, member="lite0_sbi1")
    p.add_argument("--blends", type=int, default=2, help="seeded self-blends per real crop (fixed, cached)")
    args = p.parse_args(argv)
    if args.blends < 1:
        p.error("--blends must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    root = args.data.resolve()
    samples = list_samples(root)
    crops = cached_crops(root, samples, faces=FaceSettings(), size=args.crop_size, cache_dir=args.cache_dir)
    y = np.array([s.label for s in samples])
    marks = cached_landmarks(crops, [i for i in range(len(y)) if y[i] == 0], cache_dir=args.cache_dir)
    points = marks.lookup()
    layout = Layout(len(samples), tuple(sorted(points)), args.blends)
    if not layout.meshed:
        raise SystemExit("FaceMesh found no mesh on any real crop: nothing to self-blend")
    det = TimmDetector.create({"model": args.model, "init": "imagenet", "image_size": args.image_size,
                               "freeze_backbone": True, "stats_stages": [args.stats_stage]})
    named = ir_blocks(det)
    cache_last = args.cache_last or args.train_last
    if not 0 < args.train_last <= cache_last <= len(named):
        raise SystemExit(f"need 1 <= --train-last <= --cache-last <= {len(named)} (the blocks the head reads)")
    start, cache_start = len(named) - args.train_last, len(named) - cache_last
    ident = [[s.path for s in samples], args.model, args.image_size, args.crop_size,
             hashlib.sha256(crops[::50].tobytes()).hexdigest()]  # loso_partial's key: its crop caches are shared
    key = hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:16]
    views = cached_views(det, crops, start, cache_start, key, args.cache_dir)
    cfg = SbiConfig()
    acts = np.concatenate([*views, *(blend_activations(det, crops, layout.meshed, points, k, start, cache_start, key,
                                                       args.cache_dir, seed=args.seed, cfg=cfg)
                                     for k in range(args.blends))])
    del views
    yy = layout.labels(y)
    blocks = nn.Sequential(*[blk for _, blk in named[start:]])
    x0 = run_tail(nn.Sequential(copy.deepcopy(blocks), Stats()), acts, list(range(layout.rows)))
    folds = [f.name for f in FOLDS if not args.fold or f.name in args.fold]
    runs = [] if args.only_in_dist else [(f, loso_split(samples, f, seed=args.seed, val=0.1, test=0.1)) for f in folds]
    runs.append(("in_dist", split_samples(samples, seed=args.seed, val=0.1, test=0.1)))
    results: dict[str, object] = {}
    for name, split in runs:
        train, val = sbi_rows(layout, y, split["train"]), sbi_rows(layout, y, split["val"])
        if len(set(yy[val].tolist())) < 2:  # tiny data: no meshed val real
            raise SystemExit(f"{name}: no val real with a FaceMesh mesh, no self-blend to select the epoch on")
        w, b, c = fit_head(x0, yy, train, val)
        tail = Tail(blocks, x0[train].mean(0), x0[train].std(0) + 1e-6, w, b)
        info = train_tail(tail, [acts], yy, train, val, args, seed=args.seed)
        logit = {k: run_tail(tail, acts, v) for k, v in split.items() if v}  # crop rows: row i is crop i
        probs = {k: 1 / (1 + np.exp(-v)) for k, v in logit.items()}
        loso = name if name != "in_dist" else None
        write_run_scores(args.scores_dir, args.member, samples, split, probs, loso_fold=loso)
        held = "heldout" if loso else "test"
        srcs = [samples[i].source for i in split[held]]
        frozen = 1 / (1 + np.exp(-(x0[split[held]] @ w + b)))  # epoch 0: the logistic head on untrained features
        sbi_val = 1 / (1 + np.exp(-run_tail(tail, acts, val)))
        entry = {"C": c, **info, "train_rows": {"reals": int((yy[train] == 0).sum()), "blends": int(yy[train].sum())},
                 "val_sbi_auc": binary_metrics(yy[val], sbi_val)["roc_auc"],
                 "val_auc": binary_metrics(y[split["val"]], probs["val"])["roc_auc"],  # the data's val fakes
                 f"{held}_auc": binary_metrics(y[split[held]], probs[held])["roc_auc"],
                 f"{held}_auc_frozen": binary_metrics(y[split[held]], frozen)["roc_auc"],
                 "by_source": {k: m["roc_auc"] for k, m in (
                     metrics_by_group(y[split[held]], probs[held], srcs)
                     | fake_sources_vs_reals(y[split[held]], probs[held], srcs)).items()}}
        if name == "in_dist":
            sbi = {"blends_per_real": args.blends, "real_crops_meshed": len(layout.meshed),
                   "no_mesh": int(len(marks.missing)), **entry["train_rows"]}
            save_checkpoint(det, tail, logit["val"], y[split["val"]], args, {"C_init": c, **info, "sbi": sbi})
            _finish_folder(det, logit, y, samples, split, root, args, c, script="loso_partial_sbi.py",
                           n_trained=sum(p.numel() for p in tail.parameters()), architecture=_arch_desc(args, c, info))
            _card_section(args.out / "model", sbi)
            entry["round_trip"] = round_trip(args.out / "model", crops, split["test"], logit["test"])
        results[name] = entry
        log.info("%s: %s", name, json.dumps(entry))
    write_summary(args, results)
    return 0


def _arch_desc(args: argparse.Namespace, c: float, info: dict[str, object]) -> str:
    return (f"timm {args.model}, ImageNet weights; all but the last {args.train_last} inverted-residual block(s) "
            f"frozen (eval-mode batch norm), those fine-tuned (batch norm in eval mode) with a linear head on the "
            f"per-channel mean and std of feature stage {args.stats_stage}, trained on real faces (and their mirrors) "
            f"against {args.blends} fixed self-blend(s) of each (no fake from the data); head started from a "
            f"logistic regression (L2 C={c}) on the untrained features; AdamW (lr {args.lr:g}, head "
            f"{args.head_lr:g}, weight decay {args.weight_decay:g}), epoch {info['best_epoch']} of "
            f"{len(info['val_log_loss']) - 1} kept by log loss on the val reals and their self-blends")


def _card_section(folder: Path, sbi: dict[str, int]) -> None:
    from udfd.cards import replace_marked_block

    text = "\n".join([
        "**Self-Blended Images** (SBI; Kaede Shiohara and Toshihiko Yamasaki, *Detecting Deepfakes with "
        "Self-Blended Images*, CVPR 2022; our re-implementation in `training/sbi.py`, not the authors' code): a real "
        "face blended with a colour-, frequency- and scale-changed copy of itself inside a deformed, blurred "
        "FaceMesh landmark hull, labelled fake.", "",
        f"- Trained on {sbi['reals']} real rows (train-split reals and their mirrors) against {sbi['blends']} "
        f"self-blends of the same reals ({sbi['blends_per_real']} fixed, seeded blends per real, made once); "
        f"FaceMesh found a mesh on {sbi['real_crops_meshed']} real crops, {sbi['no_mesh']} without one have no blend.",
        "- **No fake from the data was used for training or epoch selection** (val reals and their blends); "
        "temperature and threshold were then fitted on the ordinary val split (real fakes included): calibration "
        "only, no weights.",
        "- Expect a face-swap specialist: blending traces are what it learns; GAN or diffusion faces that were never "
        "pasted into a photo carry none. Judge it by the leave-one-source-out table, not by one pooled number.",
    ])
    card = folder / "README.md"
    card.write_text(replace_marked_block(card.read_text(encoding="utf-8"), "sbi", text,
                                         heading="## Self-blended training (SBI)", before="## Intended use"),
                    encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
