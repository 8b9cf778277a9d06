"""Rewrite README.md's result tables from the committed JSON in benchmarks/results/ (no measuring).

    python benchmarks/update_readme.py        # robustness, fast paths, load, memory, batching, cold start, video

Each table sits between `<!-- name -->` and `<!-- /name -->` markers; `udfd bench --fast --readme README.md`
rewrites the fast-path one while measuring.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def robustness_summary(report: dict[str, Any]) -> str:
    perts = report["perturbations"]
    lines = [f"`{report['command']}` — each cell: Δ ROC-AUC / verdict flips / real photos newly called fake.", "",
             "| detector | clean AUC | clean acc | ECE | " + " | ".join(perts) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(perts)]
    for name, e in report["robustness"].items():
        c = e["clean"]
        cells = []
        for p in perts:
            r = e["perturbed"][p]
            cells.append(f"{r['delta_roc_auc']:+.3f} / {r['flip_share']:.1%} / {r['real_newly_fake_share']:.1%}")
        lines.append(f"| {name} | {c['roc_auc']:.3f} | {c['accuracy']:.3f} | {c['ece']:.3f} | " + " | ".join(cells)
                     + " |")
    return "\n".join(lines)


def load_summary(runs: list[dict[str, Any]]) -> str:
    lines = ["| command | date | detector | concurrency / queue | requests (all at once) | errors | wall s | "
             "throughput req/s | p50 s | p95 s | max s | server peak RSS MB | load avg before |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in runs:
        s, lat = r["server"], r["latency_s"]
        lines.append(f"| `{r['command']}` | {r['date']} | {s['requested_detector']} | {s['concurrency']} / "
                     f"{s['queue_size']} | {r['requests']} | {r['errors']} | {r['wall_s']} | {r['throughput_rps']} | "
                     f"{lat['p50']} | {lat['p95']} | {lat['max']} | {s['peak_rss_mb']:.0f} | "
                     f"{r['environment']['load_avg_before'][0]} |")
    return "\n".join(lines)


def memory_summary(runs: list[dict[str, Any]]) -> str:
    lines = ["| command | date | requests (clients) | at rest MB | warm MB | peak MB | after MB | after idle vs warm | "
             "load avg before |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in runs:
        m = r["rss"]
        lines.append(f"| `{r['command']}` | {r['date']} | {r['requests']} ({r['clients']}) | {m['at_rest_mib']:.0f} | "
                     f"{m['warm_mib']:.0f} | {m['peak_during_requests_mib']:.0f} | {m['after_idle_mib']:.0f} | "
                     f"{r['after_idle_vs_warm']:+.1%} | {r['environment']['load_avg_before'][0]} |")
    return "\n".join(lines)


def throughput_summary(r: dict[str, Any]) -> str:
    ips = r["images_per_s"]
    return "\n".join([
        f"`{r['command']}` ({r['date']}, {', '.join(r['detectors'])}, {r['images']} dev faces, {r['workers']} workers, "
        f"batches of {r['batch_size']} faces, load average {r['environment']['load_avg_before'][0]}):", "",
        "| path | images/s (best) | images/s (median) |", "|---|---:|---:|",
        f"| one at a time (`analyze_image` per file) | {ips['one_at_a_time']['best']} | "
        f"{ips['one_at_a_time']['median']} |",
        f"| batched (`udfd.batch.analyze_many`) | {ips['batched']['best']} | {ips['batched']['median']} |", "",
        f"Same verdicts: max \\|Δ fake_prob\\| {r['max_abs_delta_fake_prob']:.1e}, {r['label_flips']} flips."])


def cold_start_summary(r: dict[str, Any]) -> str:
    lines = [f"`{r['command']}` ({r['date']}): {r['what']}.", "",
             "| run | first answer s | first request s | next requests s | ONNX exported / from cache | load avg |",
             "|---|---:|---:|---|---|---|"]
    for run in r["runs"]:
        lines.append(f"| {run['kind']} | {run['first_answer_s']} | {run['first_request_s']} | "
                     f"{', '.join(map(str, run['next_requests_s']))} | {run['onnx_exported']} / "
                     f"{run['onnx_from_cache']} | {run['load_avg_before'][0]} |")
    return "\n".join(lines)


def video_summary(runs: list[dict[str, Any]]) -> str:
    """One line per run (command, date, detectors, load) and one table row per path of each run."""
    lines = []
    for r in runs:
        env = r["environment"]
        contended = " (CONTENDED: other work on the cores)" if any("CONTENDED" in n for n in r["notes"]) else ""
        lines.append(f"- `{r.get('command', 'udfd bench --video')}` ({r['created']}, {', '.join(d.split('@', 1)[1] for d in r['detectors']['udfd'])}, "
                     f"best of {r['repeats']}, load average {env['load_avg_before'][0]} before / "
                     f"{env['load_avg_after'][0]} after, CPU busy {env['cpu_busy_before']} / "
                     f"{env['cpu_busy_after']}{contended})")
    lines += ["", "| clip (first 10 s) | path | frames analysed | wall s | × real time | model share | "
              "peak MiB (traced) | verdict fake_prob |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        c = r["clip"]
        clip = f"{c['file']} ({c['width']}×{c['height']}, {c['fps']:g} fps)"
        for p in r["paths"].values():
            lines.append(f"| {clip} | {p['label']} | {p['frames_analysed']} | {p['wall_s']:.2f} | "
                         f"{p['realtime_factor']:.2f} | {100 * p['stage_share']['model']:.0f}% | "
                         f"{p['peak_traced_mib']:.0f} | {p['verdict']['fake_prob']:.3f} |")
    return "\n".join(lines)


def _read(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    from udfd.bench.fast import fast_markdown
    from udfd.bench.side_by_side import side_by_side_markdown
    from udfd.bench.vit_side_by_side import vit_side_by_side_markdown
    from udfd.cards import replace_marked_block

    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    renders = {
        "robustness-summary": lambda: robustness_summary(_read("robustness.json")),
        "robustness-default": lambda: robustness_summary(_read("robustness_default.json")),
        "bench-fast": lambda: fast_markdown(_read("bench_fast.json")),
        "load-test": lambda: load_summary([json.loads(f.read_text(encoding="utf-8"))
                                           for f in sorted(RESULTS.glob("load_test*.json"))]),
        "memory-requests": lambda: memory_summary([json.loads(f.read_text(encoding="utf-8"))
                                                   for f in sorted(RESULTS.glob("memory_requests*.json"))]),
        "batch-throughput": lambda: throughput_summary(_read("batch_throughput.json")),
        "cold-start": lambda: cold_start_summary(_read("cold_start.json")),
        "bench-side-by-side": lambda: side_by_side_markdown(_read("bench_side_by_side.json")),
        "bench-side-by-side-vit-b16": lambda: vit_side_by_side_markdown(_read("bench_side_by_side_vit_b16.json")),
        "bench-video": lambda: video_summary([_read("bench_video.json"), _read("bench_video_1080p.json")]),
    }
    for name, render in renders.items():
        text = replace_marked_block(text, name, render(), heading=f"### {name}")
    readme.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
