"""The default detector side by side, in one run, interleaved on the same files (`udfd bench --side-by-side`).

Three ways to score a face image, each file going through all three back to back in a rotating order:
- `ours_default`: `analyze_image` (decode + faces + the default detector on its verified fast paths);
- `ours_eager`: the same with every network in eager fp32 (what `UDFD_FAST=off` serves);
- `plain_timm`: what a user would write for the default's timm member alone: PIL + torchvision transforms + the
  timm network on the whole image (no face detection, so it does less work than our paths).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from udfd.bench.latency import default_data_dir, sample_images
from udfd.config import Settings
from udfd.detectors.base import Detector
from udfd.errors import UdfdError
from udfd.hub import WEIGHTS_NAME, parse_ref, resolve
from udfd.loader import clear_cache, load_detector
from udfd.pipeline import analyze_image

log = logging.getLogger(__name__)

WARMUP = 3
PATHS = {
    "ours_default": "udfd analyze_image, default paths (decode+faces+{det})",
    "ours_eager": "udfd analyze_image, eager fp32 (decode+faces+{det})",
    "plain_timm": "PIL + torchvision + timm {member}, whole image (no face detection)",
}


def run_side_by_side(*, settings: Settings, data: Path | None, n: int) -> dict[str, Any]:
    """p50 ms per image of the three paths on `n` dev faces; max |Δ fake_prob| and flips of default vs eager."""
    name = settings.detectors[0]
    files = sample_images(Path(data) if data is not None else default_data_dir(), n=n, seed=0)
    eager = _load_eager(name, settings)
    default = load_detector(name, settings=settings)
    found = _timm_member(default)
    if found is None:
        raise UdfdError(f"{name} has no timm network to compare with a plain timm + torchvision script")
    member, member_ref = found
    plain = _plain_timm(member, member_ref, settings)
    paths: dict[str, Callable[[Path], float]] = {
        "ours_default": lambda f: analyze_image(f, settings=settings, detectors=[default]).overall.fake_prob,
        "ours_eager": lambda f: analyze_image(f, settings=settings, detectors=[eager]).overall.fake_prob,
        "plain_timm": plain,
    }
    for f in files[:WARMUP]:
        for run in paths.values():
            run(f)
    load_before = os.getloadavg()
    ms: dict[str, list[float]] = {k: [] for k in paths}
    probs: dict[str, list[float]] = {k: [] for k in paths}
    order = list(paths)
    for i, f in enumerate(files):
        for key in order[i % 3:] + order[:i % 3]:  # rotating: no path always runs first (or right after another)
            t0 = time.perf_counter()
            probs[key].append(paths[key](f))
            ms[key].append((time.perf_counter() - t0) * 1000)
    a, b = np.asarray(probs["ours_default"]), np.asarray(probs["ours_eager"])
    rows = {k: {"label": PATHS[k].format(det=name, member=member.name), "p50_ms": round(statistics.median(v), 2),
                "min_ms": round(min(v), 2)} for k, v in ms.items()}
    for row in rows.values():
        row["x_plain"] = round(row["p50_ms"] / rows["plain_timm"]["p50_ms"], 2)
    return {
        "benchmark": "default detector side by side, per image, CPU, interleaved",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "detector": name, "timm_member": member.name, "n_images": len(files), "torch_threads": torch.get_num_threads(),
        "rows": rows,
        "default_vs_eager": {"max_abs_delta_fake_prob": float(np.max(np.abs(a - b))),
                             "flips": int(np.sum((a >= default.threshold) != (b >= default.threshold)))},
        "environment": {"cpu_count": os.cpu_count(), "load_avg_before": [round(x, 2) for x in load_before],
                        "load_avg_after": [round(x, 2) for x in os.getloadavg()]},
        "notes": ["x_plain = p50 / plain_timm p50 (< 1: faster than the plain script). The plain script scores the "
                  "whole image with one member and no face detection: it does less work than our paths.",
                  "Shared 2-core host: absolute numbers are noisy; the paths are interleaved so the ratios less so."],
    }


def side_by_side_markdown(result: dict[str, Any]) -> str:
    d = result["default_vs_eager"]
    lines = [f"`{result.get('command', 'udfd bench --side-by-side')}` ({result['date']}, {result['n_images']} dev "
             f"faces, {result['torch_threads']} torch threads, load average {result['environment']['load_avg_before'][0]})"
             f"; default vs eager: max \\|Δ fake_prob\\| {d['max_abs_delta_fake_prob']:.1e}, {d['flips']} flips.", "",
             "| path | p50 ms/image | min ms | × plain |", "|---|---:|---:|---:|"]
    for row in result["rows"].values():
        lines.append(f"| {row['label']} | {row['p50_ms']} | {row['min_ms']} | {row['x_plain']} |")
    return "\n".join(lines)


def _load_eager(name: str, settings: Settings) -> Detector:
    """The detector with every network eager: an ensemble loads its members under the environment's UDFD_FAST, so
    that is set to "off" for this one load (the loader cache is cleared before and after)."""
    before = os.environ.get("UDFD_FAST")
    os.environ["UDFD_FAST"] = "off"
    try:
        clear_cache()
        return load_detector(name, settings=replace(settings, fast="off"))
    finally:
        if before is None:
            os.environ.pop("UDFD_FAST", None)
        else:
            os.environ["UDFD_FAST"] = before
        clear_cache()


def _timm_member(det: Detector) -> tuple[Detector, str] | None:
    """(eager network, reference it was loaded from) of the detector itself or of its first member whose
    architecture names a timm model (what it is built from, not which family or name it has)."""
    import timm

    for d in [det, *getattr(det, "members", [])]:
        eager = getattr(d, "eager", d)
        arch = getattr(eager, "arch", None)
        if isinstance(arch, dict) and timm.is_model(str(arch.get("model", ""))):
            return eager, getattr(d, "loaded_from", "")
    return None


def _plain_timm(member: Detector, member_ref: str, settings: Settings) -> Callable[[Path], float]:
    """A plain script's scoring: timm.create_model + the checkpoint's weights + torchvision transforms."""
    import timm
    from PIL import Image as PILImage
    from safetensors.torch import load_file
    from torchvision import transforms

    arch = member.arch
    ref = parse_ref(member_ref or member.name, short_names=settings.models)
    state = {k: v.float() for k, v in load_file(str(resolve(ref) / WEIGHTS_NAME)).items()}
    net = timm.create_model(arch["model"], pretrained=False, num_classes=2)
    stages = [int(i) for i in arch.get("stats_stages") or []]
    if stages:
        net, logits = _plain_stage_stats(net, state, stages)
    else:
        net.load_state_dict(state)
        logits = net
    net.eval()
    size = int(arch["image_size"])
    tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                             transforms.Normalize(arch["mean"], arch["std"])])

    def run(path: Path) -> float:
        with PILImage.open(path) as im, torch.inference_mode():
            x = tf(im.convert("RGB")).unsqueeze(0)
            return float(torch.softmax(logits(x), dim=-1)[0, member.fake_index])

    return run


def _plain_stage_stats(net: torch.nn.Module, state: dict[str, torch.Tensor],
                       stages: list[int]) -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """What a plain script writes for an `arch.stats_stages` checkpoint: the timm backbone's weights (the tail the
    checkpoint trimmed stays unused), `forward_intermediates` up to the last stage, per-channel mean and std, and
    a linear layer with the checkpoint's classifier weights."""
    backbone = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    unexpected = net.load_state_dict(backbone, strict=False).unexpected_keys
    if unexpected or not backbone:
        raise UdfdError(f"stats_stages checkpoint does not fit {type(net).__name__}: unexpected {unexpected[:3]}")
    kinds = "classifier.linear.weight" in state  # arch.fake_kinds: one score per kind, Platt-scaled log-sum-exp
    prefix = "classifier.linear." if kinds else "classifier."
    weight = state[prefix + "weight"]
    head = torch.nn.Linear(weight.shape[1], weight.shape[0])
    head.load_state_dict({"weight": weight, "bias": state[prefix + "bias"]})
    head.eval()

    def logits(x: torch.Tensor) -> torch.Tensor:
        maps = net.forward_intermediates(x, indices=stages, intermediates_only=True, stop_early=True)
        out = head(torch.cat([t for m in maps for t in (m.mean(dim=(2, 3)), m.std(dim=(2, 3)))], dim=1))
        if not kinds:
            return out
        a, b = state["classifier.platt"].tolist()
        s = a * torch.logsumexp(out, dim=1) + b
        return torch.stack([torch.zeros_like(s), s], dim=1)

    return net, logits
