"""`udfd feedback stats|export` and `udfd retrain`: the feedback loop on the command line (JSON out)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from udfd.config import Settings


def add_commands(sub: Any) -> None:
    """Register the subcommands on `udfd`'s subparsers."""
    fb = sub.add_parser("feedback", help="the feedback store: stats, export")
    fb_sub = fb.add_subparsers(required=True, metavar="action")
    st = fb_sub.add_parser("stats", help="counts by decision / label / model version, user-perceived accuracy")
    st.add_argument("--dir", type=Path, help="feedback folder (default $UDFD_FEEDBACK_DIR)")
    st.set_defaults(func=cmd_stats, detector=None)
    ex = fb_sub.add_parser("export", help="write OUT/{real,fake}/feedback/*.png + OUT/records.jsonl for training")
    ex.add_argument("out", type=Path)
    ex.add_argument("--dir", type=Path, help="feedback folder (default $UDFD_FEEDBACK_DIR)")
    ex.add_argument("--decision", action="append", choices=["accepted", "suspicious", "unscreened"],
                    help="keep flags with this protector decision (repeatable; default: accepted)")
    ex.add_argument("--all", action="store_true", help="every flag, whatever the decision")
    ex.add_argument("--revision", help="only flags on this model version")
    ex.set_defaults(func=cmd_export, detector=None)

    rt = sub.add_parser("retrain", help="drift check and guarded retraining from accepted flags (training/retrain.py)")
    rt.add_argument("--dry-run", action="store_true", help="report the drift check and what would be done")
    rt.add_argument("--force", action="store_true")
    for opt in ("--detector", "--data", "--eval-data", "--feedback-dir", "--work-dir", "--window", "--min-count",
                "--drop-points", "--tolerance", "--version", "--train-args", "--cache-dir"):
        rt.add_argument(opt, dest="rt_" + opt[2:].replace("-", "_"))
    rt.set_defaults(func=cmd_retrain, detector=None)


def _root(args: argparse.Namespace, settings: Settings) -> Path:
    return args.dir or settings.feedback.dir


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    from udfd.feedback.store import feedback_stats, read_records

    root = _root(args, settings)
    contents = read_records(root)
    out = {"dir": str(root), "shards": contents.shards, "torn_lines": contents.torn_lines,
           "bad_lines": contents.bad_lines, **feedback_stats(contents.records)}
    print(json.dumps(out, indent=1))
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from udfd.feedback.store import export_training_tree, read_records, select_records

    root = _root(args, settings)
    decisions = () if args.all else tuple(args.decision or ("accepted",))
    records = select_records(read_records(root).records, decisions=decisions, revision=args.revision)
    counts = export_training_tree(root, records, args.out)
    print(json.dumps({"dir": str(root), "out": str(args.out), "decisions": list(decisions) or "all", **counts},
                     indent=1))
    return 0


def cmd_retrain(args: argparse.Namespace, settings: Settings) -> int:
    """Runs training/retrain.py from the source checkout in a child process: the library never imports training
    code (as open_clip keeps open_clip_train apart); the child inherits the environment and the terminal."""
    import subprocess
    import sys

    from udfd.config import PROJECT_ROOT
    from udfd.errors import UdfdError

    script = PROJECT_ROOT / "training" / "retrain.py"
    if not script.is_file():
        raise UdfdError(f"udfd retrain needs a source checkout with training/retrain.py (not found in {PROJECT_ROOT})")
    argv = [f"--{k[3:].replace('_', '-')}={v}" for k, v in vars(args).items() if k.startswith("rt_") and v is not None]
    argv += ["--dry-run"] * args.dry_run + ["--force"] * args.force
    sys.stdout.flush()
    return subprocess.run([sys.executable, str(script), *argv], cwd=PROJECT_ROOT, check=False).returncode
