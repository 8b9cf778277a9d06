"""Partial fine-tune: an ImageNet backbone frozen up to one block, its last block(s) + the statistics head trained.

    python training/loso_partial.py --data ../shared/data/faces --train-last 1 --member lite0_ft1 \
        --out runs/loso/lite0_ft1

Same network and outputs as `loso_frozen.py --stats-stages 4` (a `timm` checkpoint with `arch.stats_stages`: the
loader needs no new code), but the last `--train-last` inverted-residual blocks are trained too (Lite0: 1 =
blocks.6.0, 2 = blocks.5.3 + blocks.6.0, 5 = blocks[5:]). The frozen part (eval-mode batch norm) runs once per face:
its output activations for every crop and its horizontal mirror are cached (`--cache-last` >= `--train-last` caches
them earlier, so one pass serves several runs), and an epoch over the cached activations costs seconds on a CPU.
Per fold the trained blocks start from the ImageNet weights and the linear head from loso_frozen's logistic head on
the untrained features (epoch 0 *is* the frozen model); AdamW trains both on the train rows (both views), batch norm
stays in eval mode, and the epoch with the lowest validation log loss is kept (epoch 0 included, so a fine-tune that
does not help falls back to the frozen head).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from any folder

from training.data import cached_crops, list_samples, split_samples  # noqa: E402
from training.loso import loso_split, write_run_scores  # noqa: E402
from training.loso_frozen import _finish_folder, fit_head  # noqa: E402
from udfd.config import FaceSettings  # noqa: E402
from udfd.detectors.timm_classifier import TimmDetector  # noqa: E402
from udfd.evaluation.loso import FOLDS, member_summary  # noqa: E402
from udfd.evaluation.metrics import (  # noqa: E402
    best_f1_threshold,
    best_youden_threshold,
    binary_metrics,
    fake_sources_vs_reals,
    fit_temperature,
    metrics_by_group,
)

log = logging.getLogger(__name__)


class Tail(nn.Module):
    """The trained part: backbone blocks[k:] -> per-channel mean and std -> standardised linear fake logit."""

    def __init__(self, blocks: nn.Module, mu: np.ndarray, sd: np.ndarray, w: np.ndarray, b: float) -> None:
        super().__init__()
        self.blocks = copy.deepcopy(blocks).requires_grad_(True)  # the detector's copy is frozen
        self.register_buffer("mu", torch.from_numpy(mu).float())
        self.register_buffer("sd", torch.from_numpy(sd).float())
        self.w = nn.Parameter(torch.from_numpy(w * sd).float())  # the head in standardised units (well scaled)
        self.b = nn.Parameter(torch.tensor(float(b + (w * mu).sum())))

    def forward(self, acts: torch.Tensor) -> torch.Tensor:
        return ((stats(self.blocks(acts)) - self.mu) / self.sd) @ self.w + self.b

    def raw_head(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(w, b) on the raw statistics: what StageStatsNet's classifier row for *fake* holds."""
        w = (self.w / self.sd).detach()
        return w, (self.b - (w * self.mu).sum()).detach()


def stats(maps: torch.Tensor) -> torch.Tensor:
    """StageStatsNet.features of one stage's maps (the same mean and unbiased std)."""
    return torch.cat([maps.mean(dim=(2, 3)), maps.std(dim=(2, 3))], dim=1)


def ir_blocks(det: TimmDetector) -> list[tuple[str, nn.Module]]:
    """(module name, block) of every inverted-residual block the head reads, in order (EfficientNet layout)."""
    return [(f"blocks.{i}.{j}", blk) for i, stage in enumerate(det.net.backbone.blocks) for j, blk in enumerate(stage)]


def prefix_activations(det: TimmDetector, crops: np.ndarray, start: int, *, batch: int = 64) -> np.ndarray:
    """(N, C, H, W) float16 output of the frozen stem + the first `start` IR blocks for every crop (eval mode)."""
    from tqdm.auto import tqdm

    bb = det.net.backbone.eval()
    frozen = [blk for _, blk in ir_blocks(det)[:start]]
    out = []
    with torch.inference_mode():
        for s in tqdm(range(0, len(crops), batch), desc=f"frozen prefix ({start} blocks)", unit="batch"):
            h = bb.bn1(bb.conv_stem(det.preprocess(list(crops[s:s + batch]))))
            for blk in frozen:
                h = blk(h)
            out.append(h.half().numpy())
    return np.concatenate(out)


def cached_views(det: TimmDetector, crops: np.ndarray, start: int, cache_start: int, key: str,
                 cache_dir: Path) -> list[np.ndarray]:
    """Inputs of IR block `start` for the clean crops and their horizontal mirrors: cached after block
    `cache_start` (<= start, computed once), then through the frozen blocks in between."""
    views = []
    between = nn.Sequential(*[blk for _, blk in ir_blocks(det)[cache_start:start]]).eval()
    for name, imgs in (("clean", crops), ("flip", crops[:, :, ::-1])):
        path = cache_dir / f"acts-{key}-ir{cache_start}-{name}.npy"
        if not path.is_file():
            cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, prefix_activations(det, imgs, cache_start))
            tmp.replace(path)
            log.info("cached %s activations of %d crops in %s", name, len(crops), path.name)
        acts = np.load(path)
        views.append(acts if start == cache_start else
                     np.concatenate([run_tail(between, acts, list(range(s, min(s + 512, len(acts))))).astype(
                         np.float16) for s in range(0, len(acts), 512)]))
    return views


def run_tail(model: nn.Module, acts: np.ndarray, idx: list[int], *, batch: int = 256) -> np.ndarray:
    """Outputs of `model` on the cached activations of rows idx (eval, no grad)."""
    model.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(idx), batch):
            out.append(model(torch.from_numpy(np.asarray(acts[idx[s:s + batch]], dtype=np.float32))).numpy())
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def log_loss(y: np.ndarray, logit: np.ndarray) -> float:
    return float(np.mean(np.logaddexp(0, logit) - y * logit))


def train_tail(tail: Tail, views: list[np.ndarray], y: np.ndarray, train: list[int], val: list[int],
               args: argparse.Namespace, *, seed: int) -> dict[str, object]:
    """AdamW over both views of the train rows; the tail is left at the epoch of lowest val log loss."""
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = [tail.w, tail.b]
    opt = torch.optim.AdamW([{"params": tail.blocks.parameters(), "lr": args.lr},
                             {"params": head, "lr": args.head_lr}], weight_decay=args.weight_decay)
    rows = np.array([(v, i) for v in range(len(views)) for i in train])
    losses = [log_loss(y[val], run_tail(tail, views[0], val))]
    best, best_state, waited = 0, copy.deepcopy(tail.state_dict()), 0
    for epoch in range(1, args.epochs + 1):
        tail.train()
        tail.blocks.eval()  # batch norm keeps its ImageNet statistics (eval mode), only its affine is trained
        order = rows[rng.permutation(len(rows))]
        for s in tqdm(range(0, len(order), args.batch_size), desc=f"epoch {epoch}", unit="batch", leave=False):
            part = order[s:s + args.batch_size]
            acts = np.stack([views[v][i] for v, i in part]).astype(np.float32)
            logit = tail(torch.from_numpy(acts))
            loss = nn.functional.binary_cross_entropy_with_logits(logit, torch.from_numpy(y[part[:, 1]]).float())
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses.append(log_loss(y[val], run_tail(tail, views[0], val)))
        log.info("epoch %d: val log loss %.4f (epoch 0: %.4f)", epoch, losses[-1], losses[0])
        if losses[-1] < losses[best] or epoch <= args.min_epochs:
            best, best_state, waited = epoch, copy.deepcopy(tail.state_dict()), 0
        else:
            waited += 1
            if waited > args.patience:
                break
    tail.load_state_dict(best_state)
    return {"best_epoch": best, "val_log_loss": losses}


def save_checkpoint(det: TimmDetector, tail: Tail, val_logit: np.ndarray, y_val: np.ndarray,
                    args: argparse.Namespace, info: dict[str, object]) -> None:
    """The trained blocks and head written into the StageStatsNet (real logit 0, fake logit w·x + b), calibrated."""
    trained = ir_blocks(det)[-len(tail.blocks):]
    for (_, dst), src in zip(trained, tail.blocks, strict=True):
        dst.load_state_dict(src.state_dict())
    w, b = tail.raw_head()
    head = det.net.get_classifier()
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.weight[1] = w
        head.bias[1] = b
    t = fit_temperature(np.stack([np.zeros_like(val_logit), val_logit], 1), y_val)
    p_val = 1 / (1 + np.exp(-val_logit / t))
    det.set_calibration(temperature=t, threshold=best_youden_threshold(y_val, p_val))
    det.meta["threshold_max_f1"] = best_f1_threshold(y_val, p_val)
    det.save_pretrained(args.out / "model", metadata={
        "version": args.version, "threshold_rule": "youden", "crop_size": args.crop_size,
        "head": {"kind": "linear, partial fine-tune", "trained_blocks": [n for n, _ in trained], "lr": args.lr,
                 "head_lr": args.head_lr, "weight_decay": args.weight_decay, **info}})


def round_trip(folder: Path, crops: np.ndarray, idx: list[int], logit: np.ndarray) -> dict[str, float]:
    """Largest fake log-odds difference between the saved checkpoint (through the loader, fp16 weights, fp32
    activations) and training time (fp32 weights on the cached fp16 activations), next to the largest |log-odds|."""
    from udfd.config import Settings
    from udfd.loader import load_detector

    det = load_detector(f"local-dir:{folder}", settings=Settings(fast="off"))
    with torch.inference_mode():
        two = torch.cat([det.logits(det.preprocess(list(crops[idx[s:s + 64]]))) for s in range(0, len(idx), 64)])
    return {"max_abs_logit_diff": float(np.abs((two[:, 1] - two[:, 0]).numpy() - logit).max()),
            "max_abs_logit": float(np.abs(logit).max())}


def parser(*, description: str = __doc__, member: str = "lite0_ft1") -> argparse.ArgumentParser:
    """This script's options (loso_partial_sbi.py adds its own to them)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--model", default="tf_efficientnet_lite0")
    p.add_argument("--image-size", type=int, default=160)
    p.add_argument("--crop-size", type=int, default=160)
    p.add_argument("--stats-stage", type=int, default=4, help="the feature stage whose mean and std feed the head")
    p.add_argument("--train-last", type=int, default=1, help="train the last N inverted-residual blocks")
    p.add_argument("--cache-last", type=int, help="cache the activations before the last M >= N blocks (default N)")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--min-epochs", type=int, default=0, help="keep at least this epoch (tests; default: best)")
    p.add_argument("--patience", type=int, default=1, help="epochs without a better val log loss before stopping")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate of the trained blocks")
    p.add_argument("--head-lr", type=float, default=1e-3, help="AdamW learning rate of the standardised head")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--member", default=member)
    p.add_argument("--scores-dir", type=Path, default=Path("runs/scores"))
    p.add_argument("--out", type=Path, default=Path("runs/loso") / member)
    p.add_argument("--cache-dir", type=Path, default=Path(".cache/udfd"))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--card-name", help="the model's name in its card (default: the output folder's name)")
    p.add_argument("--version", default="1.0", help="checkpoint version written to config.json and the card")
    p.add_argument("--only-in-dist", action="store_true", help="skip the LOSO folds")
    p.add_argument("--fold", action="append", help="only these LOSO folds (default: all)")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return parser().parse_args(argv)


class Stats(nn.Module):
    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return stats(maps)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    root = args.data.resolve()
    samples = list_samples(root)
    crops = cached_crops(root, samples, faces=FaceSettings(), size=args.crop_size, cache_dir=args.cache_dir)
    y = np.array([s.label for s in samples])
    det = TimmDetector.create({"model": args.model, "init": "imagenet", "image_size": args.image_size,
                               "freeze_backbone": True, "stats_stages": [args.stats_stage]})
    named = ir_blocks(det)
    cache_last = args.cache_last or args.train_last
    if not 0 < args.train_last <= cache_last <= len(named):
        raise SystemExit(f"need 1 <= --train-last <= --cache-last <= {len(named)} (the blocks the head reads)")
    start = len(named) - args.train_last
    ident = [[s.path for s in samples], args.model, args.image_size, args.crop_size,
             hashlib.sha256(crops[::50].tobytes()).hexdigest()]
    views = cached_views(det, crops, start, len(named) - cache_last,
                         hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:16], args.cache_dir)
    blocks = nn.Sequential(*[blk for _, blk in named[start:]])
    x0 = run_tail(nn.Sequential(copy.deepcopy(blocks), Stats()), views[0], list(range(len(samples))))
    folds = [f.name for f in FOLDS if not args.fold or f.name in args.fold]
    runs = [] if args.only_in_dist else [(f, loso_split(samples, f, seed=args.seed, val=0.1, test=0.1)) for f in folds]
    runs.append(("in_dist", split_samples(samples, seed=args.seed, val=0.1, test=0.1)))
    results: dict[str, object] = {}
    for name, split in runs:
        train, val = split["train"], split["val"]
        w, b, c = fit_head(x0, y, train, val)
        tail = Tail(blocks, x0[train].mean(0), x0[train].std(0) + 1e-6, w, b)
        info = train_tail(tail, views, y, train, val, args, seed=args.seed)
        logit = {k: run_tail(tail, views[0], v) for k, v in split.items() if v}
        probs = {k: 1 / (1 + np.exp(-v)) for k, v in logit.items()}
        loso = name if name != "in_dist" else None
        write_run_scores(args.scores_dir, args.member, samples, split, probs, loso_fold=loso)
        held = "heldout" if loso else "test"
        srcs = [samples[i].source for i in split[held]]
        frozen = 1 / (1 + np.exp(-(x0[split[held]] @ w + b)))  # epoch 0: loso_frozen's model on these features
        entry = {"C": c, **info, "val_auc": binary_metrics(y[val], probs["val"])["roc_auc"],
                 f"{held}_auc": binary_metrics(y[split[held]], probs[held])["roc_auc"],
                 f"{held}_auc_frozen": binary_metrics(y[split[held]], frozen)["roc_auc"],
                 "by_source": {k: m["roc_auc"] for k, m in (
                     metrics_by_group(y[split[held]], probs[held], srcs)
                     | fake_sources_vs_reals(y[split[held]], probs[held], srcs)).items()}}
        if name == "in_dist":
            save_checkpoint(det, tail, logit["val"], y[val], args, {"C_init": c, **info})
            n_trained = sum(p.numel() for p in tail.parameters())
            _finish_folder(det, logit, y, samples, split, root, args, c, script="loso_partial.py",
                           n_trained=n_trained, architecture=_arch_desc(args, c, info))
            entry["round_trip"] = round_trip(args.out / "model", crops, split["test"],
                                                                logit["test"])
        results[name] = entry
        log.info("%s: %s", name, json.dumps(entry))
    write_summary(args, results)
    return 0


def write_summary(args: argparse.Namespace, results: dict[str, object]) -> None:
    """summary.json: the member's LOSO summary from its score files, every run's entry and the options used."""
    summary = member_summary(args.scores_dir, args.member).as_dict()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps({"loso": summary, "runs": results, "args": {
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}, indent=1), encoding="utf-8")
    print(json.dumps(summary, indent=1))


def _arch_desc(args: argparse.Namespace, c: float, info: dict[str, object]) -> str:
    return (f"timm {args.model}, ImageNet weights; all but the last {args.train_last} inverted-residual block(s) "
            f"frozen (eval-mode batch norm), those fine-tuned (batch norm in eval mode) with a linear head on the "
            f"per-channel mean and std of feature stage {args.stats_stage}; head started from a logistic regression "
            f"(L2 C={c}) on the untrained features; AdamW (lr {args.lr:g}, head {args.head_lr:g}, weight decay "
            f"{args.weight_decay:g}) on the train faces and their horizontal mirrors, epoch {info['best_epoch']} of "
            f"{len(info['val_log_loss']) - 1} kept by validation log loss")


if __name__ == "__main__":
    raise SystemExit(main())
