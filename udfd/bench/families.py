"""Per-family rows for `udfd bench`: model latency on face crops (batch 1 and 8) and training images/s.

Every configured detector is measured the same way, through the Detector protocol; unavailable ones are listed
with the reason.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from udfd.config import Settings
from udfd.errors import UdfdError
from udfd.faces import detect_faces
from udfd.loader import load_detector, warm_up
from udfd.media import read_image

TRAIN_STEPS = 3
TRAIN_BATCH = 16


def bench_families(*, settings: Settings, files: list[Path], stats: Any) -> list[dict[str, Any]]:
    """Rows for every configured detector: {name, version, batch1, batch8, train_images_per_s} or {name, unavailable}."""
    crops = [detect_faces(read_image(f).pixels, settings.faces)[0].pixels for f in files]
    rows = []
    for name, det, reason in image_detectors(settings, desc="families"):
        if det is None:
            rows.append({"name": name, "unavailable": reason})
            continue
        warm_up(det)
        b1 = [_ms(det, [c]) for c in crops]
        b8 = [_ms(det, crops[s:s + 8]) / len(crops[s:s + 8]) for s in range(0, len(crops), 8)]
        rows.append({"name": name, "version": det.version, "batch1": stats(b1), "batch8": stats(b8),
                     "train_images_per_s": _train_speed(det, crops)})
    return rows


def image_detectors(settings: Settings, *, desc: str) -> Iterator[tuple[str, Any, str]]:
    """Every configured model, with a progress bar: (name, loaded image detector, "") or (name, None, why not).
    Sequence models are timed by `udfd bench --video`."""
    for name in tqdm(list(settings.models), desc=desc, unit="model"):
        try:
            det = load_detector(name, settings=settings)
        except UdfdError as e:
            yield name, None, str(e)
            continue
        if det.modality != "image":
            yield name, None, "scores videos only: see udfd bench --video"
            continue
        yield name, det, ""


def _ms(det: Any, crops: list[np.ndarray]) -> float:
    """Milliseconds for preprocess + predict of `crops` in one batch."""
    t0 = time.perf_counter()
    det.predict(det.preprocess(crops))
    return (time.perf_counter() - t0) * 1000


def _train_speed(det: Any, crops: list[np.ndarray]) -> float | str:
    """Images/s of forward + backward + Adam step with cross-entropy on a copy of the network."""
    own = getattr(det, "train_script", None)
    if own:
        return f"not measured: trains with training/{own} and its own loss"
    model = copy.deepcopy(getattr(det, "eager", det))  # a fast copy (udfd.fast) trains as its eager network
    net = model.module().train()
    params = [p for p in net.parameters() if p.requires_grad]
    batch = model.preprocess([crops[i % len(crops)] for i in range(TRAIN_BATCH)])
    labels = torch.arange(TRAIN_BATCH) % 2
    loss = torch.nn.functional.cross_entropy(model.logits(batch), labels)
    if not params or not loss.requires_grad:  # e.g. an ensemble whose members are served through ONNX
        return "not measured: no trainable weights on this path"
    opt = torch.optim.Adam(params, lr=1e-4)
    loss.backward()  # warm-up step
    opt.zero_grad()
    t0 = time.perf_counter()
    for _ in range(TRAIN_STEPS):
        torch.nn.functional.cross_entropy(model.logits(batch), labels).backward()
        opt.step()
        opt.zero_grad()
    return round(TRAIN_STEPS * TRAIN_BATCH / (time.perf_counter() - t0), 1)


def format_family_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| detector | version | b1 p50 ms | b1 p95 ms | b8 p50 ms/img | b8 p95 ms/img | train img/s |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "unavailable" in r:
            lines.append(f"| {r['name']} | unavailable: {r['unavailable'][:80]} | | | | | |")
            continue
        speed = r["train_images_per_s"]
        lines.append(f"| {r['name']} | {r['version']} | {r['batch1']['p50_ms']:.1f} | {r['batch1']['p95_ms']:.1f} | "
                     f"{r['batch8']['p50_ms']:.1f} | {r['batch8']['p95_ms']:.1f} | "
                     f"{speed if isinstance(speed, str) else f'{speed:.0f}'} |")
    return "\n".join(lines)
