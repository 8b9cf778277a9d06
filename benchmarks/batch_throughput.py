"""Images per second of `udfd predict`'s two ways of scoring a folder of real dev faces, in one process, interleaved.

"one_at_a_time" is what `udfd predict` did before issue 16 part 2 (`analyze_image` per file, in this thread);
"batched" is `udfd.batch.analyze_many` (decode + faces in `--workers` threads, `--batch-size` faces per detector
call). Both run the default detector set on the same files; each round runs both (the order alternates), and the
verdicts of the two are compared (max |Δ fake_prob|, label flips). The machine's load goes into the JSON: on a
shared host the absolute numbers are noisy, the ratio within one round less so.

    python benchmarks/batch_throughput.py --n 300 --out benchmarks/results/batch_throughput.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

log = logging.getLogger("benchmarks.batch")
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"


def dev_faces(root: Path, n: int, seed: int = 0) -> list[Path]:
    """A seeded sample of n face images over every real and fake source (not sorted by source)."""
    from udfd.media import iter_image_files

    files = iter_image_files([root / "real", root / "fake"])
    pick = np.random.default_rng(seed).choice(len(files), min(n, len(files)), replace=False)
    return [files[i] for i in sorted(pick)]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/batch_throughput.json"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import torch

    from udfd.batch import analyze_many
    from udfd.config import Settings
    from udfd.fast import set_threads
    from udfd.pipeline import analyze_image, load_detectors, prepare_image

    settings = Settings.from_env()
    threads = set_threads(settings.threads)
    files = dev_faces(args.data, args.n)
    dets = load_detectors(settings)
    for f in files[:4]:  # warm up: graphs built, ONNX sessions run once
        analyze_image(f, settings=settings, detectors=dets)

    def one_at_a_time() -> list[float]:
        return [analyze_image(f, settings=settings, detectors=dets).overall.fake_prob for f in files]

    def batched() -> list[float]:
        return [r.verdicts[0].overall.fake_prob for r in analyze_many(
            files, lambda f: [prepare_image(f, settings=settings)], detectors=dets, settings=settings,
            workers=args.workers, batch_size=args.batch_size)]

    modes = {"one_at_a_time": one_at_a_time, "batched": batched}
    seconds: dict[str, list[float]] = {m: [] for m in modes}
    probs: dict[str, list[float]] = {}
    load_before = os.getloadavg()
    for r in range(args.rounds):
        for name in list(modes) if r % 2 == 0 else list(modes)[::-1]:
            t0 = time.perf_counter()
            probs[name] = modes[name]()
            seconds[name].append(time.perf_counter() - t0)
            log.info("round %d %s: %.1f images/s", r, name, len(files) / seconds[name][-1])
    threshold = dets[0].threshold
    a, b = np.asarray(probs["one_at_a_time"]), np.asarray(probs["batched"])
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "detectors": [d.name for d in dets],
        "fast": settings.fast,
        "images": len(files),
        "data": "seeded sample (seed 0) of the dev faces, every real and fake source",
        "workers": args.workers,
        "batch_size": args.batch_size,
        "torch_threads": threads,
        "rounds": args.rounds,
        "images_per_s": {m: {"best": round(len(files) / min(s), 2), "median": round(len(files) / statistics.median(s), 2),
                             "all": [round(len(files) / x, 2) for x in s]} for m, s in seconds.items()},
        "speedup_best": round(min(seconds["one_at_a_time"]) / min(seconds["batched"]), 2),
        "max_abs_delta_fake_prob": float(np.max(np.abs(a - b))),
        "label_flips": int(np.sum((a >= threshold) != (b >= threshold))),
        "environment": {"cpu_count": os.cpu_count(), "torch": torch.__version__,
                        "load_avg_before": [round(x, 2) for x in load_before],
                        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
                        "note": "shared 2-core host (a training run and other work in the background): noisy"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("images_per_s", "speedup_best", "max_abs_delta_fake_prob",
                                              "label_flips")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
