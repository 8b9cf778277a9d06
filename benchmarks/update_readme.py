"""Rewrite README.md's result tables from the committed JSON in benchmarks/results/ (no measuring).

    python benchmarks/update_readme.py        # robustness summary, fast paths, load test

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


def _read(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    from udfd.bench.fast import fast_markdown
    from udfd.cards import replace_marked_block

    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    renders = {
        "robustness-summary": lambda: robustness_summary(_read("robustness.json")),
        "bench-fast": lambda: fast_markdown(_read("bench_fast.json")),
        "load-test": lambda: load_summary([json.loads(f.read_text(encoding="utf-8"))
                                           for f in sorted(RESULTS.glob("load_test*.json"))]),
    }
    for name, render in renders.items():
        text = replace_marked_block(text, name, render(), heading=f"### {name}")
    readme.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
