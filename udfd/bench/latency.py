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

from udfd.bench.families import bench_families, format_family_table
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
    "speedup_vs_pipeline = pipeline p50 / our p50 per image (> 1: our path is faster); paired_median_* is the "
    "median over images (batches) of pipeline time / our time for the same input; min_* compares the fastest "
    "samples (the best guess of the cost on an idle machine).",
    "Paths are timed interleaved: each image (batch) goes through every path back to back, in a rotating order.",
    "The ViT-B/16-sized model is randomly initialised: its rows measure latency only, its scores mean nothing.",
]


def default_data_dir() -> Path:
    return Path(PROJECT_ROOT).parent / "shared" / "data" / "faces"


def run_bench(
    *, settings: Settings, data: Path | None, n: int, include_vit_base: bool, include_families: bool = True
) -> dict[str, Any]:
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
        families = bench_families(settings=settings, files=files, stats=stats) if include_families else []
    finally:
        torch.set_num_threads(threads_before)
    environment["load_avg_after"] = _load_avg()
    environment["cpu_busy_after"] = _cpu_busy()
    environment["training_running_after"] = _training_running()
    return {
        "benchmark": "per-image latency, CPU",
        "data": os.path.relpath(root, PROJECT_ROOT),
        "n_images": len(files),
        "seed": SEED,
        "images": _describe_images(files, root, settings),
        "environment": environment,
        "models": models,
        "notes": NOTES + _contention_notes(environment),
        "families": families,
        "table": format_table(models) + ("\n\nEvery configured detector, model only (face crops):\n\n"
                                         + format_family_table(families) if families else ""),
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

    ms1, out1 = _time_interleaved(
        f"{name} batch 1",
        [[f] for f in files],
        {
            "ours_b1": lambda fs: analyze_image(fs[0], settings=settings, detectors=[det]),
            "ours_whole_image_b1": lambda fs: _ours_whole_image(det, fs[0], settings),
            "pipeline_b1": lambda fs: pipe(str(fs[0]), top_k=None),
        },
    )
    ms8, _ = _time_interleaved(
        f"{name} batch {BATCH}",
        _batches(files),
        {
            "ours_b8": lambda fs: _ours_batch(det, fs, settings),
            "pipeline_b8": lambda fs: pipe([str(f) for f in fs], batch_size=BATCH, top_k=None),
        },
    )
    results = {key: stats(ms) for key, ms in ms1.items()}
    results["ours_b1"].update(_breakdown(out1["ours_b1"], det.name))
    sizes = [len(b) for b in _batches(files)]
    results.update({key: _batch_stats(ms, sizes) for key, ms in ms8.items()})
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
            "paired_median_batch_1": _paired(ms1["pipeline_b1"], ms1["ours_b1"]),
            f"paired_median_batch_{BATCH}": _paired(ms8["pipeline_b8"], ms8["ours_b8"]),
            "min_batch_1": _ratio(results["pipeline_b1"]["min_ms"], results["ours_b1"]["min_ms"]),
            f"min_batch_{BATCH}": _ratio(results["pipeline_b8"]["min_ms"], results["ours_b8"]["min_ms"]),
        },
        "agreement": _agreement(det, out1["ours_whole_image_b1"], out1["pipeline_b1"], fake_label),
    }
    if results["ours_b1"]["p50_ms"] > results["pipeline_b1"]["p50_ms"] or (
        results["ours_b8"]["p50_ms"] > results["pipeline_b8"]["p50_ms"]
    ):
        model["slower_than_pipeline"] = _explain_slower(det, files, settings, results)
    return model


def _time_interleaved(
    desc: str, items: list[list[Path]], runs: dict[str, Callable[[list[Path]], Any]]
) -> tuple[dict[str, list[float]], dict[str, list[Any]]]:
    """Time every path on every item, back to back in a rotating order, so drifting load hits all paths alike.

    Returns milliseconds and outputs per path, one per item, after WARMUP untimed calls of each path.
    """
    for item in [items[i % len(items)] for i in range(WARMUP)]:
        for run in runs.values():
            run(item)
    keys = list(runs)
    ms: dict[str, list[float]] = {k: [] for k in keys}
    outs: dict[str, list[Any]] = {k: [] for k in keys}
    for i, item in enumerate(tqdm(items, desc=desc, leave=False)):
        for key in keys[i % len(keys) :] + keys[: i % len(keys)]:
            t0 = time.perf_counter()
            out = runs[key](item)
            ms[key].append((time.perf_counter() - t0) * 1000)
            outs[key].append(out)
    return ms, outs


def _batches(files: list[Path]) -> list[list[Path]]:
    """Batches of up to BATCH files; BATCH_ROUNDS passes over the files, each in a new seeded order."""
    rng = np.random.default_rng(SEED)
    out = []
    for _ in range(BATCH_ROUNDS):
        order = [files[i] for i in rng.permutation(len(files))]
        out.extend(order[i : i + BATCH] for i in range(0, len(order), BATCH))
    return out


def _ours_whole_image(det: Detector, file: Path, settings: Settings) -> torch.Tensor:
    """Our decode + preprocess + predict on the whole image (the pipeline's job); returns the model input."""
    image = read_image(file, max_pixels=settings.max_pixels, max_file_bytes=settings.max_file_bytes)
    batch = det.preprocess([image.pixels])
    det.predict(batch)
    return batch


def _ours_batch(det: Detector, files: Sequence[Path], settings: Settings) -> list[Any]:
    face_detector = get_face_detector(settings.faces)
    crops = []
    for f in files:
        image = read_image(f, max_pixels=settings.max_pixels, max_file_bytes=settings.max_file_bytes)
        crops.extend(c.pixels for c in detect_faces(image.pixels, settings.faces, detector=face_detector))
    return det.predict(det.preprocess(crops))


def _breakdown(verdicts: list[Any], model_key: str) -> dict[str, Any]:
    parts = np.mean([[v.timings_ms[k] for k in ("decode", "faces", model_key, "total")] for v in verdicts], axis=0)
    names = ("decode", "faces", "model", "total")
    # Reading the file's provenance (udfd.provenance: C2PA, watermark, metadata) is part of "total"; its own cost:
    provenance = [v.timings_ms.get("provenance", 0.0) for v in verdicts]
    return {
        "breakdown_mean_ms": {k: round(float(x), 2) for k, x in zip(names, parts, strict=True)},
        "provenance_ms": {"p50": round(float(np.percentile(provenance, 50)), 2),
                          "p95": round(float(np.percentile(provenance, 95)), 2)},
        "faces_per_image_mean": round(float(np.mean([len(v.faces) for v in verdicts])), 2),
    }


def _agreement(det: Detector, batches: list[torch.Tensor], pipe_out: list[Any], fake_label: str) -> dict[str, Any]:
    with torch.inference_mode():  # `predict` applies the calibration temperature; the pipeline does not
        ours = [float(torch.softmax(det.logits(b).float(), dim=-1)[0, det.fake_index]) for b in batches]
    theirs = [next(float(o["score"]) for o in out if o["label"] == fake_label) for out in pipe_out]
    delta = np.abs(np.asarray(ours) - np.asarray(theirs))
    return {
        "max_abs_delta_fake_prob": round(float(delta.max()), 6),
        "mean_abs_delta_fake_prob": round(float(delta.mean()), 6),
        "n": len(delta),
        "what": "our preprocess + logits on the whole image (softmax, temperature 1) vs the pipeline's score for "
        f"label {fake_label!r}; checks that our resize/normalise matches the image processor",
    }


def _batch_stats(ms: list[float], sizes: list[int]) -> dict[str, Any]:
    out = stats([t / n for t, n in zip(ms, sizes, strict=True)])
    out["mean_ms"] = round(sum(ms) / sum(sizes), 2)  # time-weighted, so a short last batch does not skew it
    out["batches"] = len(sizes)
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
        "min_ms": round(float(a.min()), 2),  # closest to the uncontended cost when other work shares the cores
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


def _ratio(pipeline_ms: float, ours_ms: float) -> float:
    return round(pipeline_ms / ours_ms, 3) if ours_ms > 0 else float("nan")


def _paired(pipeline_ms: list[float], ours_ms: list[float]) -> float:
    """Median of per-item ratios: robust when the machine's load drifts during the run."""
    return round(float(np.median(np.asarray(pipeline_ms) / np.maximum(ours_ms, 1e-9))), 3)


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
        "omp_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY") if k in os.environ},
        "load_avg_before": _load_avg(),
        "cpu_busy_before": _cpu_busy(),
        "training_running_before": _training_running(),
    }


def _contention_notes(env: dict[str, Any]) -> list[str]:
    training = env["training_running_before"] or env["training_running_after"]
    busy = max(b or 0.0 for b in (env["cpu_busy_before"], env["cpu_busy_after"]))
    if not training and busy < 0.25:
        return []
    return [
        f"CONTENDED: other work shared the {env['cpu_count']} cores during this run (training running: {training}; "
        f"CPU busy before/after: {env['cpu_busy_before']}/{env['cpu_busy_after']}); absolute numbers are inflated "
        "and noisy, min_ms and the paired ratios are the more trustworthy. Re-run on an idle machine."
    ]


def _cpu_busy(seconds: float = 1.0) -> float | None:
    """Share of all cores busy over `seconds` while this process sleeps, from /proc/stat; None: unknown."""

    def sample() -> tuple[int, int] | None:
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    first = sample()
    time.sleep(seconds)
    second = sample()
    if first is None or second is None or second[0] == first[0]:
        return None
    return round(1.0 - (second[1] - first[1]) / (second[0] - first[0]), 3)


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
