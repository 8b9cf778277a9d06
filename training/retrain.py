"""Drift-triggered, guarded retraining of a detector from accepted feedback.

    python training/retrain.py --detector vit --data ../shared/data/faces --eval-data TRUSTED_DIR [--dry-run]

1. Monitor: user-perceived accuracy on the accepted flags since the current model version vs the accuracy
   the model shipped with (udfd/feedback/monitor.py); a drop of >= --drop-points triggers, once per version.
2. Retrain: the original training data + accepted flags that carry an image (with the user's label), with the
   recipe that made the parent, as a new version: training/train_image.py with its recorded training
   configuration, or, for a frozen backbone with a fitted head (effnet_lite0), that head fitted again
   (training/loso_frozen.py). A model that records neither is refused with a clear error.
3. Guard: current and candidate are scored on a frozen, trusted evaluation set (--eval-data); the candidate is
   promoted only if its accuracy is not below the current one's minus --tolerance. Promotion replaces the model
   folder (the old one is kept under the work folder), records the lineage in config.json and the card, and
   pushes to the Hub with --push-to-hub; --protector-output retrains the protector on the new model's
   features. A rejected candidate is kept with its guard report.
The app loads a promoted version on its next request (udfd.loader keys local folders on their version).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from any folder

from udfd.config import FaceSettings, Settings  # noqa: E402
from udfd.errors import UdfdError  # noqa: E402
from udfd.feedback.monitor import (  # noqa: E402
    MonitorSettings,
    baseline_from_folder,
    check_drift,
    read_state,
    trigger_key,
    write_state,
)
from udfd.feedback.store import export_training_tree, read_records, select_records  # noqa: E402
from udfd.hub import parse_ref, push_folder, read_config, resolve  # noqa: E402
from udfd.media import IMAGE_EXTENSIONS  # noqa: E402

log = logging.getLogger(__name__)
FEEDBACK_SOURCE = "feedback"
# Training options inherited from the parent's recorded configuration (the rest are set per run).
INHERITED = ("family", "epochs", "batch_size", "lr", "weight_decay", "patience", "lr_patience", "lr_factor",
             "optimizer", "warmup_steps", "seed", "crop_size", "val_share", "test_share", "arch", "max_minutes",
             "max_samples", "init", "schedule")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--detector", default="vit", help="short name whose reference is a local-dir: folder")
    p.add_argument("--data", type=Path, help="the original training tree DIR/{real,fake}/<source>/...")
    p.add_argument("--eval-data", type=Path, help="frozen, trusted evaluation tree for the guard")
    p.add_argument("--feedback-dir", type=Path, help="default $UDFD_FEEDBACK_DIR")
    p.add_argument("--work-dir", type=Path, help="candidates, rejected and previous versions, state.json"
                                                 " (default: retrain/ next to the feedback folder)")
    p.add_argument("--window", type=int, default=MonitorSettings.window)
    p.add_argument("--min-count", type=int, default=MonitorSettings.min_count)
    p.add_argument("--drop-points", type=float, default=MonitorSettings.drop_points)
    p.add_argument("--tolerance", type=float, default=0.0, help="accuracy the candidate may lose (0.01 = 1 point)")
    p.add_argument("--force", action="store_true", help="retrain even without a trigger")
    p.add_argument("--dry-run", action="store_true", help="report what would happen; train nothing")
    p.add_argument("--version", help="version of the new model (default: parent version + .r<timestamp>)")
    p.add_argument("--train-args", default="", help="extra options for train_image.py, e.g. '--epochs 3'")
    p.add_argument("--cache-dir", type=Path, default=Path(".cache/udfd"))
    p.add_argument("--protector-output", type=Path,
                   help="after a promotion, retrain the protector on the new model's features into this folder")
    p.add_argument("--push-to-hub", action="store_true")
    p.add_argument("--hub-model-id")
    args = p.parse_args(argv)
    if args.push_to_hub and not args.hub_model_id:
        p.error("--push-to-hub needs --hub-model-id org/name")
    if not args.dry_run and not (args.data and args.eval_data):
        p.error("retraining needs --data (original training data) and --eval-data (trusted evaluation set)")
    return args


@dataclass(frozen=True)
class GuardReport:
    current_accuracy: float
    candidate_accuracy: float
    tolerance: float
    promoted: bool
    n_eval: int
    reason: str
    current: dict[str, Any]
    candidate: dict[str, Any]


def guard_decision(current_acc: float, candidate_acc: float, *, tolerance: float) -> tuple[bool, str]:
    """Promote when the candidate is not worse than the current model by more than `tolerance`. Pure."""
    ok = candidate_acc >= current_acc - tolerance
    rel = ">=" if ok else "<"
    return ok, (f"candidate accuracy {candidate_acc:.4f} {rel} current {current_acc:.4f} - tolerance {tolerance:g}"
                f" on the trusted set: {'promoted' if ok else 'rejected'}")


def evaluate_on(folder: Path, eval_root: Path, *, cache_dir: Path) -> dict[str, Any]:
    """Metrics of the checkpoint in `folder` on the trusted tree, at its own threshold (face crops cached)."""
    from training.data import cached_crops, list_samples
    from udfd.evaluation.metrics import binary_metrics
    from udfd.loader import load_detector

    det = load_detector(f"local-dir:{folder}", settings=Settings())
    size = int(read_config(folder).get("udfd", {}).get("crop_size", 144))
    samples = list_samples(eval_root)
    crops = cached_crops(eval_root, samples, faces=FaceSettings(), size=size, cache_dir=cache_dir)
    probs = [s.fake_prob for i in range(0, len(crops), 64) for s in det.predict(det.preprocess(list(crops[i:i + 64])))]
    return binary_metrics([s.label for s in samples], probs, threshold=det.threshold)


def guard(current: Path, candidate: Path, eval_root: Path, *, tolerance: float, cache_dir: Path) -> GuardReport:
    cur, cand = (evaluate_on(f, eval_root, cache_dir=cache_dir) for f in (current, candidate))
    ok, reason = guard_decision(cur["accuracy"], cand["accuracy"], tolerance=tolerance)
    return GuardReport(cur["accuracy"], cand["accuracy"], tolerance, ok, cur["n"], reason, cur, cand)


def build_training_tree(data: Path, feedback_root: Path, records: list, out: Path) -> dict[str, int]:
    """out/<data name>/ = symlinks to every original image (and manifest.csv) + the flags' images under
    {real,fake}/feedback/ with the user's label. Symlinked files, because rglob does not enter linked folders."""
    data = data.resolve()
    root = out / data.name
    originals = 0
    for label in ("real", "fake"):
        if (data / label / FEEDBACK_SOURCE).exists():
            raise UdfdError(f"{data / label / FEEDBACK_SOURCE} exists: the feedback source name is taken")
        for path in sorted((data / label).rglob("*")):
            if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
                link = root / path.relative_to(data)
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(path)
                originals += 1
    for manifest, where in ((data / "manifest.csv", root), (data.parent / "manifest.csv", out)):
        if manifest.is_file():
            (where / "manifest.csv").symlink_to(manifest)
    counts = export_training_tree(feedback_root, records, root)
    return {"original_images": originals, "feedback_real": counts["real"], "feedback_fake": counts["fake"],
            "accepted_flags": counts["records"]}


def train_candidate(parent: Path, tree: Path, out: Path, *, version: str, extra: list[str], cache_dir: Path) -> Path:
    """Retrain with the recipe that made the parent, read from its config.json.

    A recorded training configuration (`udfd.training`, written by train_image.py) -> train_image.py with it; a
    frozen backbone with a fitted head (`udfd.head`, loso_frozen.py) -> the same backbone with the head fitted
    again on the new tree. A parent that records neither is refused: anything else would train another model.
    """
    meta = read_config(parent).get("udfd", {})
    if meta.get("training"):
        return _train_image(meta["training"], tree, out, version=version, extra=extra, cache_dir=cache_dir)
    arch = meta.get("arch") or {}
    if (meta.get("head") or {}).get("kind") == "logistic" and arch.get("freeze_backbone"):
        return _refit_head(parent, meta, tree, out, version=version, extra=extra, cache_dir=cache_dir)
    raise UdfdError(f"{parent} records no training recipe (neither udfd.training from train_image.py nor a fitted "
                    "head from loso_frozen.py in its config.json): retraining it here would train a different "
                    "model. Train it again with the script its model card names.")


def _refit_head(parent: Path, meta: dict[str, Any], tree: Path, out: Path, *, version: str, extra: list[str],
                cache_dir: Path) -> Path:
    """training/loso_frozen.py on the new tree, in-distribution split only, with the parent's backbone and input."""
    import contextlib

    from training.loso_frozen import main as loso_frozen

    arch = meta["arch"]
    work = out.parent / f"{out.name}.head"
    args = ["--data", str(tree), "--model", str(arch["model"]), "--image-size", str(arch["image_size"]),
            "--crop-size", str(meta.get("crop_size", arch["image_size"])), "--only-in-dist", "--member", "retrain",
            "--scores-dir", str(work / "scores"), "--out", str(work), "--cache-dir", str(cache_dir),
            "--version", version, "--card-name", parent.name]
    if arch.get("stats_stages"):
        args += ["--stats-stages", ",".join(str(v) for v in arch["stats_stages"])]
    args += ["--select-c", (meta.get("head") or {}).get("select_c", "val"),  # as the parent's L2 strength was chosen
             "--resize", str(arch.get("resize", "auto"))]  # the crops the product shows the parent
    kinds = (meta.get("head") or {}).get("fake_kinds")
    if kinds:  # one head per kind of fake, as the parent; a flag says "fake", not which kind: a fake for every head
        from training.kinds import ANY

        work.mkdir(parents=True, exist_ok=True)
        spec = {**kinds, ANY: sorted({*kinds.get(ANY, []), FEEDBACK_SOURCE})}
        (work / "fake_kinds.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
        args += ["--fake-kinds", str(work / "fake_kinds.json"),
                 "--min-kind-fakes", str(meta["head"].get("min_kind_fakes", 30))]
    with contextlib.redirect_stdout(sys.stderr):  # its summary JSON would mix with this script's answer
        loso_frozen(args + extra)
    shutil.move(str(work / "model"), str(out))
    return out


def _train_image(recorded: dict[str, Any], tree: Path, out: Path, *, version: str, extra: list[str],
                 cache_dir: Path) -> Path:
    """training/train_image.py with the parent's recorded training configuration (as YAML overrides)."""
    import yaml

    from training.train_image import main as train_image

    overrides = {k: recorded[k] for k in INHERITED if recorded.get(k) is not None}
    cfg = out.parent / f"{out.name}.train.yaml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(yaml.safe_dump(overrides), encoding="utf-8")
    return train_image(["--config", str(cfg), "--data", str(tree), "--output", str(out), "--version", version,
                        "--report-to", "none", "--cache-dir", str(cache_dir), *extra])


def add_lineage(candidate: Path, lineage: dict[str, Any]) -> None:
    """Record parent, trigger and data counts in the candidate's config.json and card (a new folder)."""
    path = candidate / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config.setdefault("udfd", {})["lineage"] = lineage
    path.write_text(json.dumps(config, indent=1), encoding="utf-8")
    card = candidate / "README.md"
    if card.is_file():
        text = card.read_text(encoding="utf-8")
        card.write_text(text + "\n\n## Lineage\n\nRetrained from feedback by `training/retrain.py`.\n\n```json\n"
                        + json.dumps(lineage, indent=1) + "\n```\n", encoding="utf-8")


def promote(candidate: Path, folder: Path, work: Path, *, old_version: str) -> Path:
    """Replace `folder` by the candidate; the old folder goes to work/previous/. Returns the backup path."""
    incoming = folder.parent / f".{folder.name}.incoming"
    shutil.rmtree(incoming, ignore_errors=True)
    shutil.copytree(candidate, incoming)
    backup = work / "previous" / f"{folder.name}@{old_version}-{time.strftime('%Y%m%d-%H%M%S')}"
    backup.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(folder), str(backup))
    os.replace(incoming, folder)
    return backup


Trainer = Callable[..., Path]


def main(argv: list[str] | None = None, *, hf_api: Any = None, train: Trainer | None = None) -> dict[str, Any]:
    """Returns (and prints as JSON) what happened. `train` replaces train_candidate (tests)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    ref = parse_ref(args.detector, short_names=settings.models)
    if ref.kind != "local-dir":
        raise SystemExit(f"{args.detector} is {ref}: retraining promotes into a local-dir: model folder")
    folder = resolve(ref)
    meta = read_config(folder).get("udfd", {})
    name = args.detector if args.detector in settings.models else meta.get("name", folder.name)
    version = _loaded_version(folder, ref)
    feedback_root = args.feedback_dir or settings.feedback.dir
    work = args.work_dir or Path(settings.feedback.dir).parent / "retrain"
    state = read_state(work / "state.json")
    key = trigger_key(name, version)
    records = read_records(feedback_root).records
    drift = check_drift(records, model=name, version=version, baseline_accuracy=baseline_from_folder(folder),
                        settings=MonitorSettings(args.window, args.min_count, args.drop_points),
                        already_triggered=key in state["triggers"])
    accepted = [r for r in select_records(records, decisions=("accepted",)) if r.image_file and r.model == name]
    out: dict[str, Any] = {"model": name, "version": version, "folder": str(folder), "drift": drift.to_dict(),
                           "accepted_flags_with_image": len(accepted), "dry_run": args.dry_run}
    go = drift.triggered or args.force
    out["action"] = ("would retrain" if args.dry_run else "retrain") if go else "nothing to do"
    if args.dry_run or not go:
        return _done(out)

    new_version = args.version or f"{meta.get('version', 'v')}.r{time.strftime('%Y%m%d%H%M%S')}"
    state["triggers"][key] = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "reason": drift.reason,
                              "forced": not drift.triggered, "outcome": "training", "candidate": new_version}
    write_state(work / "state.json", state)  # before training: one trigger, one run, even if training fails
    run = work / "runs" / new_version
    counts = build_training_tree(args.data, feedback_root, accepted, run / "data")
    candidate = run / "candidate"
    (train or train_candidate)(folder, run / "data" / args.data.resolve().name, candidate, version=new_version,
                               extra=shlex.split(args.train_args), cache_dir=args.cache_dir)
    report = guard(folder, candidate, args.eval_data.resolve(), tolerance=args.tolerance, cache_dir=args.cache_dir)
    lineage = {"parent_version": meta.get("version"), "parent": version, "trigger_reason": drift.reason,
               "forced": not drift.triggered, "data_counts": counts,
               "guard": {k: v for k, v in asdict(report).items() if k not in ("current", "candidate")}
               | {"eval_data": args.eval_data.resolve().name}}
    add_lineage(candidate, lineage)
    (run / "guard_report.json").write_text(json.dumps(asdict(report), indent=1), encoding="utf-8")
    if report.promoted:
        out["previous_saved_to"] = str(promote(candidate, folder, work, old_version=str(meta.get("version"))))
        if args.push_to_hub:
            out["pushed"] = push_folder(folder, repo_id=args.hub_model_id, api=hf_api,
                                        commit_message=f"UDFD retrain {new_version} (parent {meta.get('version')})")
        if args.protector_output:  # the old protector reads features this version no longer produces
            from training.train_protector import main as train_protector

            out["protector"] = str(train_protector(
                ["--detector", f"local-dir:{folder}", "--data", str(run / "data" / args.data.resolve().name),
                 "--output", str(args.protector_output), "--version", new_version, "--cache-dir",
                 str(args.cache_dir)]))
    else:
        rejected = work / "rejected" / new_version
        rejected.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(candidate), str(rejected))
        shutil.copyfile(run / "guard_report.json", rejected / "guard_report.json")
        out["rejected_candidate"] = str(rejected)
    state["triggers"][key]["outcome"] = "promoted" if report.promoted else "rejected"
    write_state(work / "state.json", state)
    out |= {"new_version": new_version, "guard": lineage["guard"], "data_counts": counts,
            "action": "promoted" if report.promoted else "rejected"}
    return _done(out)


def _loaded_version(folder: Path, ref: Any) -> str:
    """The version string flags record (`Detector.version`, as udfd.loader sets it)."""
    from udfd.hub import model_version

    return model_version(folder, ref)


def _done(out: dict[str, Any]) -> dict[str, Any]:
    print(json.dumps(out, indent=1, default=lambda o: float(o) if isinstance(o, np.floating) else str(o)))
    return out


if __name__ == "__main__":
    main()
