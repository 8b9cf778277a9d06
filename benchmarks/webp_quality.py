"""How well `udfd.webp.webp_quality` reads the quality a lossy WebP was saved at, from its VP8 header alone.

For a seeded sample of `--per-source` dev faces per source folder of ../shared/data/faces, each saved as a lossy
WebP by Pillow's libwebp at every quality of `QUALITIES` (and once losslessly): the estimate against the quality
written (bias, mean and largest absolute error), how often it is at or below `COMPRESSED_WEBP_QUALITY` (the
"compressed" flag), and the time per call (p50, p95). A lossless file must have no estimate.

    HF_HUB_OFFLINE=1 python benchmarks/webp_quality.py --per-source 10
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
from dev_sample import per_source_sample  # benchmarks/, beside this script
from PIL import Image, features
from tqdm import tqdm

from udfd.webp import COMPRESSED_WEBP_QUALITY, webp_quality

log = logging.getLogger("benchmarks.webp_quality")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
QUALITIES = (10, 30, 50, 60, 70, 75, 80, 85, 90, 95, 100)


def _webp(img: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "WEBP", **kw)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=PROJECT_ROOT.parent / "shared" / "data" / "faces")
    p.add_argument("--per-source", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results" / "webp_quality.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    files = per_source_sample(args.data, args.per_source, seed=args.seed, suffixes=(".jpg", ".png"))
    estimates: dict[int, list[float]] = {q: [] for q in QUALITIES}
    lossless_estimated = 0
    times: list[float] = []
    for path in tqdm(files, desc="images", unit="img"):
        with Image.open(path) as im:
            img = im.convert("RGB")
        for q in QUALITIES:
            data = _webp(img, quality=q)
            t0 = time.perf_counter()
            estimates[q].append(webp_quality(data))
            times.append(time.perf_counter() - t0)
        lossless_estimated += int(not np.isnan(webp_quality(_webp(img, lossless=True))))
    per_quality = {}
    for q, est in estimates.items():
        e = np.asarray(est, dtype=float)
        per_quality[str(q)] = {"n": len(e), "estimated": int((~np.isnan(e)).sum()),
                               "bias": round(float(np.nanmean(e - q)), 2),
                               "mean_abs_error": round(float(np.nanmean(np.abs(e - q))), 2),
                               "max_abs_error": round(float(np.nanmax(np.abs(e - q))), 1),
                               "flagged_compressed": int((e <= COMPRESSED_WEBP_QUALITY).sum())}
    report = {
        "command": f"HF_HUB_OFFLINE=1 python benchmarks/webp_quality.py --per-source {args.per_source} "
                   f"--seed {args.seed}",
        "libwebp": features.version("webp"),
        "compressed_webp_quality": COMPRESSED_WEBP_QUALITY,
        "images": len(files),
        "sources": sorted({str(f.parent.relative_to(args.data)) for f in files}),
        "per_quality": per_quality,
        "lossless_estimated": lossless_estimated,
        "ms_per_call": {"p50": round(1000 * float(np.percentile(times, 50)), 3),
                        "p95": round(1000 * float(np.percentile(times, 95)), 3)},
        "load_average": list(os.getloadavg()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    log.info("wrote %s", args.out)
    for q, row in per_quality.items():
        log.info("q%-4s %s", q, row)
    log.info("lossless files estimated: %d of %d; %s ms per call", lossless_estimated, len(files),
             report["ms_per_call"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
