"""Drift monitor: user-perceived accuracy on accepted flags vs the accuracy a model shipped with.

`check_drift` is pure (records in, a report out). The two small edge helpers read a model folder's baseline
and the retraining state file, which records each trigger so that one drop starts one retraining.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from udfd.hub import weights_version
from udfd.types import FeedbackRecord


@dataclass(frozen=True)
class MonitorSettings:
    window: int = 200  # the most recent accepted flags considered
    min_count: int = 50  # no decision on fewer accepted flags
    drop_points: float = 10.0  # trigger when accuracy falls this many percentage points below the baseline


@dataclass(frozen=True)
class DriftReport:
    model: str
    version: str
    baseline_accuracy: float | None
    n_accepted: int  # accepted flags on this version, all of them
    n_window: int
    accuracy: float | None  # share of the window's flags where the user agreed with the verdict
    drop_points: float | None
    triggered: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_drift(records: Iterable[FeedbackRecord], *, model: str, version: str, baseline_accuracy: float | None,
                settings: MonitorSettings = MonitorSettings(), already_triggered: bool = False) -> DriftReport:
    """Compare the user-perceived accuracy of `model` at `version` (accepted flags only, most recent
    `window`) with its baseline. Triggers at most once per version: `already_triggered` says it did."""
    version = weights_version(version)  # an app on a fast path records "<version>+onnx": the same weights
    mine = sorted((r for r in records if r.model == model and weights_version(r.revision) == version
                   and r.protector_decision == "accepted" and r.predicted_label), key=lambda r: r.time)
    window = mine[-settings.window:] if settings.window > 0 else mine
    acc = sum(r.user_label == r.predicted_label for r in window) / len(window) if window else None
    drop = None if acc is None or baseline_accuracy is None else 100.0 * (baseline_accuracy - acc)

    def report(triggered: bool, reason: str) -> DriftReport:
        return DriftReport(model, version, baseline_accuracy, len(mine), len(window), acc, drop, triggered, reason)

    if baseline_accuracy is None:
        return report(False, f"{model} {version} has no baseline accuracy (config.json or eval_results.json)")
    if len(window) < settings.min_count:
        return report(False, f"{len(window)} accepted flags on {version}, fewer than {settings.min_count}")
    if drop < settings.drop_points:
        return report(False, f"user-perceived accuracy {acc:.3f} is {drop:.1f} points below the baseline"
                             f" {baseline_accuracy:.3f} (trigger at {settings.drop_points:g})")
    if already_triggered:
        return report(False, f"already triggered for {version}; waiting for a new version")
    return report(True, f"user-perceived accuracy {acc:.3f} on {len(window)} accepted flags is {drop:.1f} points"
                        f" below the baseline {baseline_accuracy:.3f} (>= {settings.drop_points:g})")


# -- edge helpers -----------------------------------------------------------------------------------
def baseline_from_folder(folder: Path) -> float | None:
    """The accuracy a checkpoint shipped with: `udfd.baseline_accuracy` in config.json, else the held-out
    (test, else val) accuracy in its eval_results.json."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("udfd", {})
    except (OSError, ValueError):
        return None
    if meta.get("baseline_accuracy") is not None:
        return float(meta["baseline_accuracy"])
    try:
        results = json.loads((folder / "eval_results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for split in ("test", "val"):
        if split in results and results[split].get("accuracy") is not None:
            return float(results[split]["accuracy"])
    return None


def read_state(path: Path) -> dict[str, Any]:
    """The retraining state: {"triggers": {"<model>@<version>": {...}}}; empty when there is none yet."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"triggers": {}}


def write_state(path: Path, state: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def trigger_key(model: str, version: str) -> str:
    return f"{model}@{version}"
