"""Latency benchmark: our image path (decode + face detection + ViT) against a plain transformers pipeline.

`run_bench` is called by `udfd bench`; it returns one JSON-ready dict (see benchmarks/README.md). Both paths
load the same checkpoint folder in fp32. The plain pipeline does no face detection, so it does less work:
the "whole image" row times our own code on that same, smaller job.
"""

from __future__ import annotations

import cProfile
import datetime as dt
import logging
import os
import platform
import pstats
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from udfd.config import PROJECT_ROOT, Settings
from udfd.detectors.base import Detector
from udfd.detectors.vit import ViTDetector
from udfd.errors import UdfdError
from udfd.faces import detect_faces, get_face_detector
from udfd.hub import parse_ref, resolve
from udfd.loader import load_detector
from udfd.media import iter_image_files, read_image
from udfd.pipeline import analyze_image

log = logging.getLogger(__name__)

SEED = 0
WARMUP = 3
BATCH = 8
BATCH_ROUNDS = 3  # batched paths see each image this many times (new seeded order each round): more samples
VIT_BASE_ARCH = {
    "image_size": 224,
    "patch_size": 16,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
}
PATHS = {  # result key -> (table label, batch)
    "ours_b1": ("udfd analyze_image (decode+faces+ViT)", 1),
    "ours_b8": ("udfd batched (decode+faces, one predict)", BATCH),
    "ours_whole_image_b1": ("udfd whole image, no face detection", 1),
    "pipeline_b1": ("transformers pipeline (no face detection)", 1),
    "pipeline_b8": ("transformers pipeline (no face detection)", BATCH),
}
NOTES = [
    "The plain transformers pipeline does no face detection: it scores the whole image, so it does less work "
    "than our path. 'udfd whole image, no face detection' times our decode + preprocess + predict on that same job.",
    "Both paths load the same checkpoint folder with fp32 weights (the pipeline with dtype=torch.float32; its "
    "default dtype='auto' would follow config.json, which is float16 for checkpoints we save in fp16).",
    "Batch 8 rows: per-image latency = time of a batch of 8 images / 8; each image is seen "
    f"{BATCH_ROUNDS} times, in a new seeded order each round.",
    "speedup_vs_pipeline = pipeline p50 / our p50 per image (> 1: our path is faster).",
    "The ViT-B/16-sized model is randomly initialised: its rows measure latency only, its scores mean nothing.",
]


def default_data_dir() -> Path:
    return Path(PROJECT_ROOT).parent / "shared" / "data" / "faces"


def run_bench(*, settings: Settings, data: Path | None, n: int, include_vit_base: bool) -> dict[str, Any]:
    """Measure per-image latency of our path and of a plain pipeline for the configured `vit` (and ViT-B/16)."""
    root = Path(data) if data is not None else default_data_dir()
    files = sample_images(root, n=n, seed=SEED)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    environment = _environment()
    try:
        with tempfile.TemporaryDirectory(prefix="udfd-bench-") as tmp:
            targets = [("vit", "vit", _configured_folder(settings), "the configured embedded model")]
            if include_vit_base:
                folder = _make_vit_base(Path(tmp) / "vit-b16")
                targets.append(
                    ("vit-b16", f"local-dir:{folder}", folder, "ViT-B/16-sized, randomly initialised: latency only")
                )
            models = [
                _bench_model(name, ref, folder, weights, files, settings) for name, ref, folder, weights in targets
            ]
    finally:
        torch.set_num_threads(threads_before)
    environment["load_avg_after"] = _load_avg()
    environment["training_running_after"] = _training_running()
    return {
        "benchmark": "per-image latency, CPU",
        "data": os.path.relpath(root, PROJECT_ROOT),
        "n_images": len(files),
        "seed": SEED,
        "images": _describe_images(files, root, settings),
        "environment": environment,
        "models": models,
        "notes": NOTES,
        "table": format_table(models),
    }


def sample_images(root: Path, *, n: int, seed: int) -> list[Path]:
    """A seeded sample of `n` image files, round-robin over the source folders so sources and sizes mix."""
    if n < 1:
        raise UdfdError(f"--n must be at least 1, got {n}")
    files = iter_image_files([root]) if root.is_dir() else []
    if not files:
        raise UdfdError(f"no image files found in {root}; pass --data DIR")
    groups: dict[Path, list[Path]] = {}
    for f in files:
        groups.setdefault(f.parent, []).append(f)
    rng = np.random.default_rng(seed)
    queues = [[group[i] for i in rng.permutation(len(group))] for _, group in sorted(groups.items())]
    picked: list[Path] = []
    while len(picked) < n and any(queues):
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    if len(picked) < n:
        log.warning("only %d images in %s, fewer than n=%d", len(picked), root, n)
    return picked


def _configured_folder(settings: Settings) -> Path:
    return resolve(parse_ref("vit", short_names=settings.models), setting="UDFD_MODEL_VIT")


def _make_vit_base(folder: Path) -> Path:
    torch.manual_seed(SEED)
    ViTDetector.create(VIT_BASE_ARCH).save_pretrained(folder, metadata={"version": "random-init"}, fp16=False)
    return folder


def _bench_model(
    name: str, ref: str, folder: Path, weights: str, files: list[Path], settings: Settings
) -> dict[str, Any]:
    """Both paths on one checkpoint: `ref` through our loader, `folder` (the same files) through transformers."""
    from transformers import pipeline as hf_pipeline

    log.info("benchmarking %s from %s", name, folder)
    det = load_detector(ref, settings=settings)
    pipe = hf_pipeline("image-classification", model=str(folder), device=-1, dtype=torch.float32)
    fake_label = det.module().config.id2label[det.fake_index]
    results: dict[str, Any] = {}
    results["ours_b1"] = _time_ours_b1(name, det, files, settings)
    results["ours_b8"] = _time_batches(f"{name} ours b{BATCH}", files, lambda fs: _ours_batch(det, fs, settings))
    whole, our_probs = _time_whole_image(name, det, files, settings)
    results["ours_whole_image_b1"] = whole
    pipe_b1, pipe_probs = _time_pipeline_b1(name, pipe, files, fake_label)
    results["pipeline_b1"] = pipe_b1
    results["pipeline_b8"] = _time_batches(
        f"{name} pipeline b{BATCH}", files, lambda fs: pipe([str(f) for f in fs], batch_size=BATCH, top_k=None)
    )
    delta = np.abs(np.asarray(our_probs) - np.asarray(pipe_probs))
    model: dict[str, Any] = {
        "name": name,
        "weights": weights,
        "version": det.version,
        "arch": _arch(det),
        "results": results,
        "speedup_vs_pipeline": {
            "batch_1": _ratio(results["pipeline_b1"]["p50_ms"], results["ours_b1"]["p50_ms"]),
            f"batch_{BATCH}": _ratio(results["pipeline_b8"]["p50_ms"], results["ours_b8"]["p50_ms"]),
            "whole_image_batch_1": _ratio(results["pipeline_b1"]["p50_ms"], results["ours_whole_image_b1"]["p50_ms"]),
        },
        "agreement": {
            "max_abs_delta_fake_prob": float(delta.max()),
            "mean_abs_delta_fake_prob": float(delta.mean()),
            "n": len(delta),
            "what": "our preprocess + logits on the whole image (softmax, temperature 1) vs the pipeline's score "
            f"for label {fake_label!r}; checks that our resize/normalise matches the image processor",
        },
    }
    if results["ours_b1"]["p50_ms"] > results["pipeline_b1"]["p50_ms"] or (
        results["ours_b8"]["p50_ms"] > results["pipeline_b8"]["p50_ms"]
    ):
        model["slower_than_pipeline"] = _explain_slower(det, files, settings, results)
    return model


def _time_ours_b1(name: str, det: Detector, files: list[Path], settings: Settings) -> dict[str, Any]:
    def run(f: Path) -> Any:
        return analyze_image(f, settings=settings, detectors=[det])

    for f in _warmup_files(files):
        run(f)
    ms, parts, faces = [], [], []
    for f in tqdm(files, desc=f"{name} ours b1", leave=False):
        t0 = time.perf_counter()
        verdict = run(f)
        ms.append((time.perf_counter() - t0) * 1000)
        t = verdict.timings_ms
        parts.append((t["decode"], t["faces"], t[det.name], t["total"]))
        faces.append(len(verdict.faces))
    mean = np.mean(parts, axis=0)
    out = stats(ms)
    out["breakdown_mean_ms"] = {
        k: round(float(v), 2) for k, v in zip(("decode", "faces", "model", "total"), mean, strict=True)
    }
    out["faces_per_image_mean"] = round(float(np.mean(faces)), 2)
    return out


def _ours_batch(det: Detector, files: Sequence[Path], settings: Settings) -> list[Any]:
    face_detector = get_face_detector(settings.faces)
    crops = []
    for f in files:
        image = read_image(f, max_pixels=settings.max_pixels, max_file_bytes=settings.max_file_bytes)
        crops.extend(c.pixels for c in detect_faces(image.pixels, settings.faces, detector=face_detector))
    return det.predict(det.preprocess(crops))


def _time_whole_image(
    name: str, det: Detector, files: list[Path], settings: Settings
) -> tuple[dict[str, Any], list[float]]:
    """Our decode + preprocess + predict on the whole image (the pipeline's job); raw fake probs for the check."""

    def run(f: Path) -> torch.Tensor:
        image = read_image(f, max_pixels=settings.max_pixels, max_file_bytes=settings.max_file_bytes)
        batch = det.preprocess([image.pixels])
        det.predict(batch)
        return batch

    for f in _warmup_files(files):
        run(f)
    ms, probs = [], []
    for f in tqdm(files, desc=f"{name} ours whole image", leave=False):
        t0 = time.perf_counter()
        batch = run(f)
        ms.append((time.perf_counter() - t0) * 1000)
        with torch.inference_mode():  # untimed: `predict` applies the calibration temperature, the pipeline does not
            probs.append(float(torch.softmax(det.logits(batch).float(), dim=-1)[0, det.fake_index]))
    return stats(ms), probs


def _time_pipeline_b1(name: str, pipe: Any, files: list[Path], fake_label: str) -> tuple[dict[str, Any], list[float]]:
    for f in _warmup_files(files):
        pipe(str(f), top_k=None)
    ms, probs = [], []
    for f in tqdm(files, desc=f"{name} pipeline b1", leave=False):
        t0 = time.perf_counter()
        out = pipe(str(f), top_k=None)
        ms.append((time.perf_counter() - t0) * 1000)
        probs.append(next(float(o["score"]) for o in out if o["label"] == fake_label))
    return stats(ms), probs


def _time_batches(desc: str, files: list[Path], run: Callable[[list[Path]], Any]) -> dict[str, Any]:
    """Per-image latency of `run` over batches of up to BATCH files: batch time / batch size."""
    run(files[:BATCH])  # warm-up
    rng = np.random.default_rng(SEED)
    batches = []
    for _ in range(BATCH_ROUNDS):
        order = [files[i] for i in rng.permutation(len(files))]
        batches.extend(order[i : i + BATCH] for i in range(0, len(order), BATCH))
    per_image, total_ms, total_images = [], 0.0, 0
    for batch in tqdm(batches, desc=desc, leave=False):
        t0 = time.perf_counter()
        run(batch)
        ms = (time.perf_counter() - t0) * 1000
        per_image.append(ms / len(batch))
        total_ms, total_images = total_ms + ms, total_images + len(batch)
    out = stats(per_image)
    out["mean_ms"] = round(total_ms / total_images, 2)  # time-weighted, so a short last batch does not skew it
    out["batches"] = len(batches)
    return out


def _explain_slower(det: Detector, files: list[Path], settings: Settings, results: dict[str, Any]) -> dict[str, Any]:
    """Where our batch-1 time goes: the timings breakdown plus a cProfile of a few analyze_image calls."""
    b = results["ours_b1"]["breakdown_mean_ms"]
    sample = files[: min(8, len(files))]
    prof = cProfile.Profile()
    prof.enable()
    for f in sample:
        analyze_image(f, settings=settings, detectors=[det])
    prof.disable()
    rows = sorted(pstats.Stats(prof).stats.items(), key=lambda kv: kv[1][2], reverse=True)[:15]
    top = [
        {
            "function": f"{Path(file).name}:{line}({func})",
            "calls_per_image": round(nc / len(sample), 1),
            "self_ms_per_image": round(tt * 1000 / len(sample), 2),
            "cum_ms_per_image": round(ct * 1000 / len(sample), 2),
        }
        for (file, line, func), (_, nc, tt, ct, _) in rows
    ]
    summary = (
        f"face detection takes {b['faces']:.1f} of {b['total']:.1f} ms per image "
        f"({100 * b['faces'] / max(b['total'], 1e-9):.0f}%), the model {b['model']:.1f} ms, decoding {b['decode']:.1f} ms;"
        f" without face detection our path takes {results['ours_whole_image_b1']['p50_ms']:.1f} ms (p50) against "
        f"the pipeline's {results['pipeline_b1']['p50_ms']:.1f} ms"
    )
    return {"summary": summary, "profile_top_self_time": top, "profiled_images": len(sample)}


def stats(ms: Sequence[float]) -> dict[str, Any]:
    a = np.asarray(ms, dtype=np.float64)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p95_ms": round(float(np.percentile(a, 95)), 2),
        "mean_ms": round(float(a.mean()), 2),
        "samples": len(a),
    }


def format_table(models: list[dict[str, Any]]) -> str:
    lines = ["| model | path | batch | p50 ms | p95 ms | mean ms |", "|---|---|---:|---:|---:|---:|"]
    for m in models:
        for key, (label, batch) in PATHS.items():
            r = m["results"][key]
            lines.append(
                f"| {m['name']} | {label} | {batch} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['mean_ms']:.1f} |"
            )
    return "\n".join(lines)


def _warmup_files(files: list[Path]) -> list[Path]:
    return [files[i % len(files)] for i in range(WARMUP)]


def _ratio(pipeline_ms: float, ours_ms: float) -> float:
    return round(pipeline_ms / ours_ms, 3) if ours_ms > 0 else float("nan")


def _arch(det: Detector) -> dict[str, Any]:
    c = det.module().config
    return {
        "hidden_size": c.hidden_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "image_size": c.image_size,
        "patch_size": c.patch_size,
        "params_m": round(sum(p.numel() for p in det.module().parameters()) / 1e6, 2),
    }


def _describe_images(files: list[Path], root: Path, settings: Settings) -> list[dict[str, Any]]:
    out = []
    for f in files:
        image = read_image(f, max_pixels=settings.max_pixels, max_file_bytes=settings.max_file_bytes)
        h, w = image.pixels.shape[:2]
        out.append({"file": str(f.relative_to(root)), "width": w, "height": h})
    return out


def _environment() -> dict[str, Any]:
    import transformers

    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_before": _load_avg(),
        "training_running_before": _training_running(),
    }


def _load_avg() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _training_running() -> bool | None:
    """Whether another process runs one of our training scripts (it would compete for the cores); None: unknown."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # the process ended or is not ours to read
            continue
        if b"training/train_" in cmdline:
            return True
    return False
