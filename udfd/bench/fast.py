"""`udfd bench --fast`: every fast path (udfd.fast) against eager fp32, per image detector, on the same face crops.

For each detector: the eager model and each fast copy score the same crops; model time (`predict` on an already
preprocessed batch) is measured at batch 1 and batch 8, interleaved (every batch goes through every variant back
to back, in a new random order each time) so that load drifting over the run hits all alike. Agreement, on a larger sample
(`n_agree` crops, the timed ones first): max and mean |Δ fake_prob| against eager and the number of verdict flips at
the detector's threshold. A mode is `kept` for a detector only when no verdict flips.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from udfd.bench.families import image_detectors
from udfd.bench.latency import SEED, _environment, default_data_dir, sample_images, stats
from udfd.config import Settings
from udfd.faces import detect_faces
from udfd.fast import FAST_MODES, accelerate
from udfd.media import read_image

log = logging.getLogger(__name__)
BATCH = 8
B8_ROUNDS = 3  # the batch-8 passes are repeated, so that n=32 gives 12 samples rather than 4


def run_fast_bench(*, settings: Settings, data: Path | None = None, n: int = 32, n_agree: int = 240,
                   modes: tuple[str, ...] = FAST_MODES) -> dict[str, Any]:
    """JSON-ready result: environment, per detector per mode timings, speed-ups, agreement; plus `table`."""
    n = max(BATCH, n - n % BATCH)  # whole batches only, so batch-8 timings are comparable
    n_agree = max(n, n_agree)
    root = data or default_data_dir()
    files = sample_images(root, n=n_agree, seed=SEED)
    env = _environment()
    crops = [detect_faces(read_image(f).pixels, settings.faces)[0].pixels
             for f in tqdm(files, desc="face crops", unit="img")]
    plain = replace(settings, fast="")
    rows = []
    for name, det, reason in image_detectors(plain, desc="fast paths"):
        if det is None:
            rows.append({"name": name, "unavailable": reason})
            continue
        rows.append(_bench_detector(det, crops[:n], crops, modes))
    return {"environment": env, "data": str(root), "n_timed": n, "n_agreement": len(crops), "batch": BATCH,
            "torch_threads": torch.get_num_threads(), "files": [str(f.relative_to(root)) for f in files],
            "detectors": rows,
            "table": format_fast_table(rows)}


def _bench_detector(det: Any, crops: list[np.ndarray], agree: list[np.ndarray],
                    modes: tuple[str, ...]) -> dict[str, Any]:
    b1 = [det.preprocess([c]) for c in crops]
    b8 = [det.preprocess(crops[i:i + BATCH]) for i in range(0, len(crops), BATCH)]
    variants: dict[str, Any] = {"eager": det}
    failed: dict[str, str] = {}
    first_call_s: dict[str, float] = {}
    for mode in modes:
        t0 = time.perf_counter()
        try:
            fast = accelerate(det, mode, example=b8[0])
            fast.predict(b1[0])  # warm-up / compilation for both shapes
            fast.predict(b8[0])
        except Exception as e:  # a fast path may fail in many ways (export, compiler, missing package): report it
            log.warning("%s: fast path %s unavailable: %s", det.name, mode, e)
            failed[mode] = f"{type(e).__name__}: {str(e)[:300]}"
            continue
        first_call_s[mode] = round(time.perf_counter() - t0, 2)
        variants[mode] = fast
    det.predict(b1[0])
    det.predict(b8[0])

    times = {k: {"b1": [], "b8": []} for k in variants}
    rng = np.random.default_rng(0)
    for i, batch in enumerate([*b1, *(b8 * B8_ROUNDS)]):
        key = "b1" if i < len(b1) else "b8"
        # a new random order per batch: no variant always runs right after the same other one
        for name in rng.permutation(list(variants)):
            t0 = time.perf_counter()
            variants[name].predict(batch)
            times[name][key].append((time.perf_counter() - t0) * 1000 / len(batch))
    batches = [det.preprocess(agree[i:i + BATCH]) for i in range(0, len(agree), BATCH)]
    probs = {k: np.array([s.fake_prob for b in batches for s in v.predict(b)]) for k, v in variants.items()}
    eager_fake = probs["eager"] >= det.threshold
    results = {}
    for name in variants:
        b1s, b8s = stats(times[name]["b1"]), stats(times[name]["b8"])
        results[name] = {"batch1_ms": b1s, "batch8_ms_per_img": b8s}
        if name == "eager":
            continue
        delta = np.abs(probs[name] - probs["eager"])
        flips = int(((probs[name] >= det.threshold) != eager_fake).sum())
        results[name] |= {
            "speedup_b1": round(results["eager"]["batch1_ms"]["p50_ms"] / b1s["p50_ms"], 2),
            "speedup_b8": round(results["eager"]["batch8_ms_per_img"]["p50_ms"] / b8s["p50_ms"], 2),
            "max_abs_delta_fake_prob": float(delta.max()), "mean_abs_delta_fake_prob": float(delta.mean()),
            "verdict_flips": flips, "kept": flips == 0, "first_call_s": first_call_s[name],
        }
    return {"name": det.name, "version": det.version, "threshold": det.threshold, "results": results,
            "unavailable_modes": failed}


def fast_markdown(result: dict[str, Any]) -> str:
    """The README block: how it was measured, then the table (pure)."""
    env = result["environment"]
    return (f"`{result['command']}` ({env['date']}; {env['cpu_count']} cores, {result['torch_threads']} torch "
            f"threads, OMP_WAIT_POLICY={env.get('omp_env', {}).get('OMP_WAIT_POLICY', 'unset')}, load average "
            f"before {env['load_avg_before']}, training running: {env['training_running_before']}). Model time only "
            f"(`predict` on preprocessed face crops), {result['n_timed']} crops at batch 1 and in batches of "
            f"{result['batch']} (3 passes), interleaved; agreement with eager fp32 on {result['n_agreement']} crops "
            "(flips: verdicts that change at the detector's threshold; kept: no flip).\n\n" + result["table"])


def format_fast_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| detector | path | b1 p50 ms | × eager | b8 p50 ms/img | × eager | max \\|Δ fake_prob\\| | flips | kept |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if "unavailable" in r:
            continue
        for mode, m in r["results"].items():
            b1, b8 = m["batch1_ms"]["p50_ms"], m["batch8_ms_per_img"]["p50_ms"]
            if mode == "eager":
                lines.append(f"| {r['name']} | eager fp32 | {b1:.1f} | 1.00 | {b8:.1f} | 1.00 | – | – | – |")
                continue
            lines.append(f"| {r['name']} | {mode} | {b1:.1f} | {m['speedup_b1']:.2f} | {b8:.1f} | "
                         f"{m['speedup_b8']:.2f} | {m['max_abs_delta_fake_prob']:.4f} | {m['verdict_flips']} | "
                         f"{'yes' if m['kept'] else 'no'} |")
        for mode, why in r.get("unavailable_modes", {}).items():
            lines.append(f"| {r['name']} | {mode} | unavailable: {why[:80]} | | | | | | no |")
    return "\n".join(lines)

