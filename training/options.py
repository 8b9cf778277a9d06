"""Command-line options shared by the training scripts, and how they merge with YAML and family defaults."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml

from udfd.detectors.base import get_family


def study_parser(description: str | None, *, out: str) -> argparse.ArgumentParser:
    """--data, --cache-dir, --seed and --out (default `out`): what every LOSO study script takes (loso_trivial.py,
    loso_deconfound.py, loso_kinds_blend.py); each adds its own options."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--cache-dir", type=Path, default=Path(".cache/udfd"))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", type=Path, default=Path(out))
    return p


def study_samples(args: argparse.Namespace) -> tuple[Path, list[Any], Any]:
    """Logging on, then (data root, its samples, their labels as a numpy array) for a study script's `--data`."""
    import logging

    import numpy as np

    from training.data import list_samples

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = args.data.resolve()
    samples = list_samples(root)
    return root, samples, np.array([s.label for s in samples])


def common_parser(description: str | None) -> argparse.ArgumentParser:
    """Data, output, schedule, logging and Hub options every training script takes."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="YAML file of overrides (keys as the long options, snake_case)")
    p.add_argument("--data", type=Path, help="imagefolder tree DIR/{real,fake}/<source>/...")
    p.add_argument("--hub-dataset", help="Hub dataset id with image + label columns (needs network)")
    p.add_argument("--synthetic", action="store_true", help="train on 16 generated images (smoke test)")
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--patience", type=int, help="early stopping: epochs without validation-loss improvement")
    p.add_argument("--seed", type=int)
    p.add_argument("--crop-size", type=int)
    p.add_argument("--arch", type=json.loads, help='JSON architecture overrides, e.g. \'{"width": 16}\'')
    p.add_argument("--max-minutes", type=float, help="stop training after this many minutes (0 = no limit)")
    p.add_argument("--max-samples", type=int, help="use at most this many images (seeded subsample; 0 = all)")
    p.add_argument("--version", help="version string stored in config.json")
    p.add_argument("--report-to", help="tensorboard | wandb | none")
    p.add_argument("--logging-dir")
    p.add_argument("--cache-dir")
    p.add_argument("--push-to-hub", action="store_true")
    p.add_argument("--hub-model-id")
    return p


def resolve(p: argparse.ArgumentParser, args: argparse.Namespace, *, defaults: dict[str, Any],
            family: str | None = None) -> dict[str, Any]:
    """Merge script defaults < the family's `train_defaults` < YAML overrides < command line; validate."""
    from_yaml = yaml.safe_load(args.config.read_text(encoding="utf-8")) or {} if args.config else {}
    from_cli = {k: v for k, v in vars(args).items() if v is not None and k in defaults}
    family = family or from_cli.get("family") or from_yaml.get("family") or defaults["family"]
    merged = {**defaults, **get_family(family).train_defaults, **from_yaml, **from_cli, "family": family}
    if args.push_to_hub and not args.hub_model_id:
        p.error("--push-to-hub needs --hub-model-id org/name")
    if sum(bool(x) for x in (args.data, args.hub_dataset, args.synthetic)) != 1:
        p.error("give exactly one of --data, --hub-dataset, --synthetic")
    return merged


def training_record(args: argparse.Namespace, root: Path) -> tuple[str, dict[str, Any]]:
    """(version, resolved training config) as stored in config.json and rendered into the model card."""
    import time

    version = args.version or time.strftime("%Y%m%d-%H%M%S")
    cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
           if k not in ("config", "push_to_hub")}
    cfg["data"] = "synthetic" if getattr(args, "synthetic", False) else root.name  # a folder name, never an absolute path
    return version, cfg
