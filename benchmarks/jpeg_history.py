"""How well `udfd.jpeg.pixel_jpeg_quality` reads a JPEG's quality from pixels saved losslessly afterwards.

For a seeded sample of `--per-source` dev faces per source folder of ../shared/data/faces (every one a JPEG file):

- **file**: the decoded file as-is (what a PNG of it would hold): the estimate against the quality its own tables
  give (`udfd.jpeg.jpeg_quality`); every dev file is at quality 75 or above, so an estimate at or below
  `COMPRESSED_QUALITY` here is a false "compressed";
- **clean**: the picture scaled down by `--scale` (area), which leaves no block grid: any estimate is a false one;
- **qQ**: that clean picture through a JPEG at quality Q and decoded (a PNG of a compressed photo): the estimate
  against Q, and how often it is at or below COMPRESSED_QUALITY (the "compressed" flag);
- **qQ then x0.9**: the same, then scaled by 0.9 (the grid is resampled away: no estimate is expected).

Writes the counts, the estimates' errors and the time per call (p50, p95) as JSON.

    HF_HUB_OFFLINE=1 python benchmarks/jpeg_history.py --per-source 20
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
from PIL import Image
from tqdm import tqdm

from udfd.jpeg import COMPRESSED_QUALITY, jpeg_quality, pixel_jpeg_quality

log = logging.getLogger("benchmarks.jpeg_history")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
QUALITIES = (40, 50, 60, 65, 70, 75, 80, 90)


def _through_jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _summary(estimates: list[float], truth: float | None) -> dict[str, object]:
    e = np.asarray(estimates, dtype=float)
    read = e[~np.isnan(e)]
    out: dict[str, object] = {"n": len(e), "estimated": int(len(read)),
                              "flagged_compressed": int((read <= COMPRESSED_QUALITY).sum())}
    if truth is not None and len(read):
        out["mean_abs_error"] = round(float(np.abs(read - truth).mean()), 2)
        out["max_abs_error"] = float(np.abs(read - truth).max())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=PROJECT_ROOT.parent / "shared" / "data" / "faces")
    p.add_argument("--per-source", type=int, default=20)
    p.add_argument("--scale", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results" / "jpeg_history.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    files = per_source_sample(args.data, args.per_source, seed=args.seed, suffixes=(".jpg",))
    rows: dict[str, list[float]] = {}
    file_false: list[dict[str, object]] = []
    file_err: list[float] = []
    times: list[float] = []

    def estimate(pixels: np.ndarray) -> float:
        t0 = time.perf_counter()
        q = pixel_jpeg_quality(pixels)
        times.append(time.perf_counter() - t0)
        return q

    for path in tqdm(files, desc="images", unit="img"):
        with Image.open(path) as im:
            table_q = jpeg_quality(getattr(im, "quantization", None) or {})
            img = im.convert("RGB")
        got = estimate(np.asarray(img))
        rows.setdefault("file", []).append(got)
        if not np.isnan(got):
            file_err.append(abs(got - table_q))
            if got <= COMPRESSED_QUALITY:
                file_false.append({"file": str(path.relative_to(args.data)), "tables": table_q, "pixels": got})
        side = (max(8, round(img.width * args.scale)), max(8, round(img.height * args.scale)))
        clean = img.resize(side, Image.Resampling.BOX)
        rows.setdefault("clean", []).append(estimate(np.asarray(clean)))
        for q in QUALITIES:
            decoded = _through_jpeg(clean, q)
            rows.setdefault(f"q{q}", []).append(estimate(np.asarray(decoded)))
            if q in (50, 70):
                shrunk = decoded.resize((max(8, round(decoded.width * 0.9)), max(8, round(decoded.height * 0.9))),
                                        Image.Resampling.BILINEAR)
                rows.setdefault(f"q{q} then x0.9", []).append(estimate(np.asarray(shrunk)))
    report = {
        "command": f"HF_HUB_OFFLINE=1 python benchmarks/jpeg_history.py --per-source {args.per_source} "
                   f"--scale {args.scale} --seed {args.seed}",
        "compressed_quality": COMPRESSED_QUALITY,
        "images": len(files),
        "sources": sorted({str(f.parent.relative_to(args.data)) for f in files}),
        "file": {**_summary(rows["file"], None), "mean_abs_error_vs_tables": round(float(np.mean(file_err)), 2)
                 if file_err else None, "false_compressed": file_false},
        "clean": _summary(rows["clean"], None),
        **{k: _summary(v, float(k[1:3])) for k, v in rows.items() if k.startswith("q")},
        "ms_per_call": {"p50": round(1000 * float(np.percentile(times, 50)), 2),
                        "p95": round(1000 * float(np.percentile(times, 95)), 2)},
        "load_average": list(os.getloadavg()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    log.info("wrote %s", args.out)
    for k in ("file", "clean", *(k for k in report if k.startswith("q"))):
        log.info("%-14s %s", k, {a: b for a, b in report[k].items() if a != "false_compressed"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
