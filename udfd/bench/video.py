"""Video benchmark: our selection pipeline against the plain alternative (every frame through the image model).

`run_video_bench` is called by `udfd bench --video`; it returns one JSON-ready dict (benchmarks/README.md).
Three paths on the same clip, in one run:

1. `udfd` — what the app's Video tab runs by default: optical-flow selection of K frames, faces tracked, and
   every detector of `settings.video_detectors` in order (the first decides; image detectors score every tracked
   face, video detectors each track's lip sequence).
2. `uniform` — K frames spread uniformly (no flow), the image detectors of that set only.
3. `every frame` — the plain approach: decode every frame, detect faces in each, score every face with them.

Without an image detector in the video set, paths 2-3 use the Image tab's default (`settings.detectors[0]`).

Each path reports wall time, the share of decode / motion / faces / lips / model, frames decoded per second,
the real-time factor (wall time / clip duration; < 1 means faster than playing the clip), peak traced memory
(numpy and Python allocations through tracemalloc) and the video-level score, so the cost of each shortcut is
visible next to what it changes.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import resource
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from udfd.bench.latency import _contention_notes, _cpu_busy, _environment, _load_avg, _training_running
from udfd.config import PROJECT_ROOT, Settings
from udfd.detectors.base import Detector
from udfd.errors import UdfdError
from udfd.loader import load_detector, warm_up
from udfd.pipeline import run_video

log = logging.getLogger(__name__)

DEFAULT_CLIP = PROJECT_ROOT.parent / "shared" / "data" / "videos" / "real" / "ffpp_youtube" / "004.mp4"
STAGES = ("decode", "motion", "faces", "lips")


def run_video_bench(*, settings: Settings, clip: Path | None = None, seconds: float = 10.0,
                    repeats: int = 2) -> dict[str, Any]:
    """Time the three paths on the first `seconds` of `clip` (default: a 1280×720 FaceForensics++ clip)."""
    clip = Path(clip or DEFAULT_CLIP)
    if not clip.is_file():
        raise UdfdError(f"benchmark clip not found: {clip} (pass --video-file)")
    torch.set_num_threads(os.cpu_count() or 1)
    loaded, missing = [], {}
    for name in settings.video_detectors:
        try:
            loaded.append(load_detector(name, settings=settings))
        except UdfdError as e:
            log.warning("%s unavailable, the udfd path runs without it: %s", name, e)
            missing[name] = str(e)
    if not loaded:
        raise UdfdError(f"no video detector could be loaded ({', '.join(settings.video_detectors) or 'none set'})")
    image_dets = [d for d in loaded if d.modality == "image"]
    if not image_dets:
        image_dets = [load_detector(settings.detectors[0], settings=settings)]
    for det in {id(d): d for d in [*loaded, *image_dets]}.values():
        warm_up(det)
    all_names, image_names = ", ".join(d.name for d in loaded), ", ".join(d.name for d in image_dets)
    env = _environment()
    k = settings.video.frames
    base = replace(settings.video, max_seconds=seconds)
    paths = {
        "udfd": (f"optical-flow selection, {all_names}", loaded, replace(base)),
        "uniform": (f"uniform selection, {image_names}", image_dets, replace(base, selection="uniform")),
        "every_frame": (f"every frame, {image_names} (plain)", image_dets,
                        replace(base, selection="uniform", frames=base.max_frames)),
    }
    results: dict[str, Any] = {}
    for key, (label, dets, video) in paths.items():
        runs = [_timed(clip, replace(settings, video=video), dets) for _ in range(repeats)]
        best = min(runs, key=lambda r: r["wall_s"])
        results[key] = {"label": label, **best, "wall_s_runs": [r["wall_s"] for r in runs]}
    duration = results["udfd"]["clip_seconds"]
    env |= {"load_avg_after": _load_avg(), "cpu_busy_after": _cpu_busy(),
            "training_running_after": _training_running()}
    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "clip": {"file": clip.name, "analysed_seconds": round(duration, 2), **results["udfd"].pop("clip")},
        "k": k,
        "repeats": repeats,
        "detectors": {"udfd": [f"{d.name}@{d.version}" for d in loaded],
                      "image": [f"{d.name}@{d.version}" for d in image_dets], "missing": missing},
        "paths": results,
        "environment": env,
        "notes": _contention_notes(env) + [
            "wall_s is the best of `repeats` runs; stage shares come from Verdict.timings_ms of that run.",
            "peak_traced_mib counts numpy/Python allocations (tracemalloc), not OpenCV's or torch's own buffers.",
        ],
        "table": format_video_table(results, duration),
    }


def _timed(clip: Path, settings: Settings, dets: list[Detector]) -> dict[str, Any]:
    tracemalloc.start()
    t0 = time.perf_counter()
    analysis = run_video(clip, settings=settings, detectors=dets)
    wall = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    v = analysis.verdict
    timings = v.timings_ms
    model_ms = sum(timings.get(d.name, 0.0) for d in dets)
    stage_ms = {s: timings.get(s, 0.0) for s in STAGES} | {"model": model_ms}
    clip_seconds = v.video.frames_decoded / v.video.fps if v.video.fps else 0.0
    return {
        "wall_s": round(wall, 3),
        "stage_ms": {s: round(ms, 1) for s, ms in stage_ms.items()},
        "stage_share": {s: round(ms / (wall * 1000), 3) for s, ms in stage_ms.items()},
        "frames_decoded": v.video.frames_decoded,
        "frames_analysed": len(v.video.frames_used),
        "decoded_frames_per_s": round(v.video.frames_decoded / wall, 1),
        "realtime_factor": round(wall / clip_seconds, 3) if clip_seconds else None,
        "peak_traced_mib": round(peak / 2**20, 1),
        "peak_rss_mib_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "video_scores": {k: {m: round(x, 4) for m, x in s.items()} for k, s in v.video.video_scores.items()},
        "verdict": {"label": v.overall.label, "fake_prob": round(v.overall.fake_prob, 4)},
        "clip_seconds": clip_seconds,
        "clip": {"width": v.width, "height": v.height, "fps": v.video.fps},
    }


def format_video_table(results: dict[str, Any], duration: float) -> str:
    head = (f"Video benchmark on {duration:.1f} s of video\n\n"
            "| path | frames analysed | wall s | × real time | decode | motion | faces | lips | model "
            "| peak MiB (traced) | video score (image det.) |\n|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for r in results.values():
        share = r["stage_share"]
        image_scores = [s.get("score") for name, s in r["video_scores"].items() if "frame_mean" in s]
        score = f"{image_scores[0]:.3f}" if image_scores and image_scores[0] is not None else "–"
        rows.append(f"| {r['label']} | {r['frames_analysed']} | {r['wall_s']:.2f} | {r['realtime_factor']:.2f} | "
                    + " | ".join(f"{100 * share[s]:.0f}%" for s in (*STAGES, "model"))
                    + f" | {r['peak_traced_mib']:.0f} | {score} |")
    return "\n".join([head, *rows])
