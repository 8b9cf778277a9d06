"""Model time of two versions of the default ensemble, scored in turn on the same face crops (batch 1), and how much
of it is the native-resolution statistics of members that read the crop as given (`spectrum`).

    HF_HUB_OFFLINE=1 python benchmarks/ensemble_versions.py --before 02a6872 \\
        --out benchmarks/results/ensemble_versions.json

`--before REV`: the ensemble's config.json at that git revision (its members load by name, as they are now; a config
is all an ensemble folder holds). Crops: real dev faces cut by the pipeline's face detector, interleaved
before / after per crop, after a warm-up of every crop once.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from dev_sample import per_source_sample  # benchmarks/, beside this script

from udfd.config import Settings
from udfd.faces import detect_faces, get_face_detector
from udfd.hub import read_config
from udfd.loader import load_detector
from udfd.media import read_image

log = logging.getLogger("benchmarks.ensemble_versions")
ROOT = Path(__file__).resolve().parents[1]


def _ms(det, crop: np.ndarray) -> float:
    t0 = time.perf_counter()
    det.predict(det.preprocess([crop]))
    return (time.perf_counter() - t0) * 1000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", required=True, help="git revision of models/udfd-ensemble/config.json to compare")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "faces")
    p.add_argument("--per-source", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ensemble_versions.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from udfd.detectors.ensemble import EnsembleDetector

    settings = Settings()
    after = load_detector("ensemble", settings=settings)
    config = subprocess.run(["git", "show", f"{args.before}:models/udfd-ensemble/config.json"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.json").write_text(config, encoding="utf-8")
        before = EnsembleDetector.from_pretrained(Path(tmp), read_config(Path(tmp)))
    detector = get_face_detector(settings.faces)
    crops = [detect_faces(read_image(f).pixels, settings.faces, detector=detector)[0].pixels
             for f in per_source_sample(args.data, args.per_source, seed=0, suffixes=(".jpg", ".png"))]
    for c in crops:
        _ms(before, c), _ms(after, c)
    t_before, t_after, t_native = [], [], []
    for _ in range(args.repeats):
        for c in crops:
            t_before.append(_ms(before, c))
            t_after.append(_ms(after, c))
            t0 = time.perf_counter()
            for m in after.native:
                m.native_features([c])
            t_native.append((time.perf_counter() - t0) * 1000)
    result = {"command": "python benchmarks/ensemble_versions.py --before " + args.before,
              "when": datetime.now(UTC).isoformat(timespec="seconds"), "n_crops": len(crops),
              "crop_sides": [int(min(c.shape[:2])) for c in crops], "repeats": args.repeats,
              "before": {"version": before.version, "p50_ms": float(np.median(t_before))},
              "after": {"version": after.version, "p50_ms": float(np.median(t_after)),
                        "native_features_p50_ms": float(np.median(t_native))}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    log.info("%s", json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
