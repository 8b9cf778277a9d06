"""Triplet training of the `clip` projection head on cached CLIP embeddings (anchor real, positive real,
negative fake), with early stopping on the validation triplet loss."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from udfd.detectors.clip_head import ProjectionHead, fuse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TripletConfig:
    hidden: int = 256
    out_dim: int = 128
    margin: float = 0.2
    batch_size: int = 128
    epochs: int = 30
    patience: int = 5
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 42


@dataclass(frozen=True)
class TripletResult:
    head: ProjectionHead
    train_loss: list[float]
    val_loss: list[float]
    best_epoch: int
    val_distances: dict[str, np.ndarray] = field(default_factory=dict)  # "anchor-positive", "anchor-negative"


def sample_triplets(real: np.ndarray, fake: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(len(real), 3) rows of (anchor, positive, negative) indices: every real is an anchor once, its positive
    another real (when there is one) and its negative a random fake."""
    anchors = rng.permutation(real)
    if len(real) > 1:  # shift by a random non-zero offset so a positive is never its own anchor
        positives = anchors[(np.arange(len(anchors)) + rng.integers(1, len(real), size=len(real))) % len(real)]
    else:
        positives = anchors
    negatives = rng.choice(fake, size=len(anchors), replace=True)
    return np.stack([anchors, positives, negatives], axis=1)


def project(head: ProjectionHead, emb: torch.Tensor, text: torch.Tensor | None, variant: str) -> torch.Tensor:
    return fuse(head(emb), None if text is None else head(text[None]), variant)


def _loss(head: torch.nn.Module, emb: torch.Tensor, triplets: np.ndarray, text: torch.Tensor | None, variant: str,
          margin: float) -> torch.Tensor:
    a, p, n = (project(head, emb[triplets[:, k]], text, variant) for k in range(3))
    return torch.nn.functional.triplet_margin_loss(a, p, n, margin=margin)


def train_head(emb: np.ndarray, labels: np.ndarray, train: list[int], val: list[int], *, text: torch.Tensor | None,
               variant: str, cfg: TripletConfig, accelerator: Any = None, tag: str = "") -> TripletResult:
    """Train a fresh head; returns the weights of the epoch with the lowest validation triplet loss."""
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    x = torch.from_numpy(np.asarray(emb, np.float32))
    y = np.asarray(labels)
    tr, va = np.asarray(train), np.asarray(val)
    tr_real, tr_fake, va_real, va_fake = tr[y[tr] == 0], tr[y[tr] == 1], va[y[va] == 0], va[y[va] == 1]
    if not len(tr_real) or not len(tr_fake):
        raise ValueError("triplet training needs real and fake images in the train split")
    if not len(va_real) or not len(va_fake):  # tiny data: validate on train rather than not at all
        va_real, va_fake = tr_real, tr_fake
    val_triplets = sample_triplets(va_real, va_fake, np.random.default_rng(cfg.seed + 1))
    head = ProjectionHead(x.shape[1], cfg.hidden, cfg.out_dim)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if accelerator is not None:
        head, opt = accelerator.prepare(head, opt)
    device = next(head.parameters()).device  # the embeddings follow the head (a GPU under accelerate launch)
    x = x.to(device)
    text = None if text is None else text.to(device)
    train_hist, val_hist, best, best_state, best_epoch, stale = [], [], float("inf"), None, 0, 0
    for epoch in range(cfg.epochs):
        head.train()
        triplets = sample_triplets(tr_real, tr_fake, rng)
        total = 0.0
        for s in range(0, len(triplets), cfg.batch_size):
            batch = triplets[s:s + cfg.batch_size]
            loss = _loss(head, x, batch, text, variant, cfg.margin)
            if accelerator is not None:
                accelerator.backward(loss)
            else:
                loss.backward()
            opt.step()
            opt.zero_grad()
            total += loss.item() * len(batch)
        head.eval()
        with torch.no_grad():
            val_loss = float(_loss(head, x, val_triplets, text, variant, cfg.margin))
        train_hist.append(total / len(triplets))
        val_hist.append(val_loss)
        if accelerator is not None:
            accelerator.log({f"{tag}train_loss": train_hist[-1], f"{tag}val_loss": val_loss}, step=epoch)
        log.info("%s epoch %d: triplet train_loss %.4f val_loss %.4f", tag or variant, epoch, train_hist[-1], val_loss)
        if val_loss < best:
            best, best_epoch, stale = val_loss, epoch, 0
            best_state = copy.deepcopy(_unwrap(head, accelerator).state_dict())
        else:
            stale += 1
            if stale >= cfg.patience:
                log.info("%s: early stop after epoch %d (best %d)", tag or variant, epoch, best_epoch)
                break
    head = _unwrap(head, accelerator)
    head.load_state_dict(best_state)
    head = head.cpu().eval()
    x, text = x.cpu(), None if text is None else text.cpu()
    with torch.no_grad():
        a, p, n = (project(head, x[val_triplets[:, k]], text, variant) for k in range(3))
        dists = {"anchor-positive": (a - p).norm(dim=1).numpy(), "anchor-negative": (a - n).norm(dim=1).numpy()}
    return TripletResult(head=head, train_loss=train_hist, val_loss=val_hist, best_epoch=best_epoch,
                         val_distances=dists)


def _unwrap(head: torch.nn.Module, accelerator: Any) -> torch.nn.Module:
    return accelerator.unwrap_model(head) if accelerator is not None else head


def project_all(head: ProjectionHead, emb: np.ndarray, text: torch.Tensor | None, variant: str) -> np.ndarray:
    """(N, out_dim) float64 fused projections of every embedding."""
    with torch.no_grad():
        return project(head.eval(), torch.from_numpy(np.asarray(emb, np.float32)), text, variant).double().numpy()
