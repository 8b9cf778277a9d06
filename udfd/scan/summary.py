"""What a scan found: counts per verdict, per source folder and per detector agreement. Pure (table in, dict out)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import pyarrow as pa

from udfd.plain import counted

VERDICTS = ("fake", "fake (uncertain)", "real (uncertain)", "real", "error")


def file_verdict(label: str, uncertain: bool, error: str) -> str:
    """One of `VERDICTS` for a file row."""
    if error:
        return "error"
    return f"{label} (uncertain)" if uncertain else label


def summarize(table: pa.Table) -> dict[str, Any]:
    """Counts over a scan's rows: `files`, `faces`, `per_verdict`, `per_source` (verdict counts per source) and
    `agreement` (per detector after the first: faces both scored, and how many it called as the first did)."""
    cols = {n: table.column(n).to_pylist() for n in ("row_type", "source", "label", "uncertain", "error", "scores",
                                                      "thresholds", "models_key")}
    models: Counter[str] = Counter()
    per_verdict: Counter[str] = Counter()
    per_source: dict[str, Counter[str]] = defaultdict(Counter)
    agree: dict[str, Counter[str]] = defaultdict(Counter)
    faces, primary = 0, ""
    for i, row_type in enumerate(cols["row_type"]):
        if row_type == "file":
            verdict = file_verdict(cols["label"][i], cols["uncertain"][i], cols["error"][i])
            per_verdict[verdict] += 1
            per_source[cols["source"][i]][verdict] += 1
            models[cols["models_key"][i]] += 1
        elif row_type == "face":
            faces += 1
            primary = primary or next(iter(cols["scores"][i]), ("", 0.0))[0]
            _count_agreement(agree, cols["scores"][i], cols["thresholds"][i])
    return {
        "files": sum(per_verdict.values()),
        "primary": primary,
        "models": dict(models),  # files per set of model versions (a rescan with new versions adds rows)
        "faces": faces,
        "per_verdict": {v: per_verdict[v] for v in VERDICTS},
        "per_source": {s: {v: c[v] for v in VERDICTS} for s, c in sorted(per_source.items())},
        "agreement": {d: {"faces": c["faces"], "agree": c["agree"],
                          "share": round(c["agree"] / c["faces"], 4) if c["faces"] else None}
                      for d, c in agree.items()},
    }


def _count_agreement(agree: dict[str, Counter[str]], scores: list[tuple[str, float]],
                     thresholds: list[tuple[str, float]]) -> None:
    """Each detector after the first (which decides) agrees when it calls the face as the first one does."""
    limits = dict(thresholds)
    calls = [(name, p >= limits.get(name, 0.5)) for name, p in scores]
    if len(calls) < 2:
        return
    primary = calls[0][1]
    for name, call in calls[1:]:
        agree[name]["faces"] += 1
        agree[name]["agree"] += call == primary


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as the text `udfd scan --summary` prints."""
    lines = [f"{counted(summary['files'], 'file')}, {counted(summary['faces'], 'face')}"]
    if len(summary["models"]) > 1:
        lines += ["rows of several model versions (counted together below):"]
        lines += [f"  {key or '(none)'}: {counted(n, 'file')}" for key, n in summary["models"].items()]
    lines += ["", "per verdict"]
    lines += [f"  {v:<18}{n:>9}" for v, n in summary["per_verdict"].items()]
    short = ("fake", "fake?", "real?", "real", "error")
    width = min(60, max([6, *map(len, summary["per_source"])]))
    lines += ["", f"{'source':<{width}}" + "".join(f"{s:>8}" for s in short)]
    for source, counts in summary["per_source"].items():
        name = source if len(source) <= width else "\N{HORIZONTAL ELLIPSIS}" + source[1 - width:]
        lines.append(f"{name:<{width}}" + "".join(f"{counts[v]:>8}" for v in VERDICTS))
    primary = f" ({summary['primary']})" if summary["primary"] else ""
    lines += ["", f"detector agreement with the first detector{primary}"]
    if not summary["agreement"]:
        lines.append("  one detector per face: nothing to compare")
    for name, a in summary["agreement"].items():
        lines.append(f"  {name:<24}{a['agree']:>8} of {a['faces']:<8} faces ({a['share']:.1%})")
    return "\n".join(lines)
