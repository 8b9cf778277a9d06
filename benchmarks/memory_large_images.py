"""Peak and retained RSS of one process analysing large images, with and without the reduced decoding (issue 14).

Each case runs in a fresh child process: warm up on a small image (models loaded, graphs built), record the RSS,
then analyse the large image `--repeat` times while a thread samples RSS every 10 ms. "peak" is the highest sample
above the warm baseline, "retained" the RSS after the last analysis (and a gc) above it. `work_side=0` disables
the reduction (the image is analysed at full resolution, as before issue 14).

    python benchmarks/memory_large_images.py --out benchmarks/results/memory_large_images.json
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

log = logging.getLogger("benchmarks.memory")
CASES = {  # name -> (width, height, format)
    "png_7000x7000": (7000, 7000, "PNG"),
    "jpeg_8000x6000": (8000, 6000, "JPEG"),
    "png_16000x1000": (16000, 1000, "PNG"),
}


def _image(width: int, height: int, fmt: str) -> bytes:
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([(x // 7) % 256, (y // 5) % 256, ((x + y) // 11) % 256], axis=2).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, quality=90) if fmt == "JPEG" else Image.fromarray(pixels).save(buf, fmt)
    return buf.getvalue()


def _child(case: str, work_side: int, repeat: int) -> dict:
    import psutil

    from udfd.config import Settings
    from udfd.pipeline import analyze_image, load_detectors

    settings = Settings.from_env()
    settings = replace(settings, work_side=work_side or 10**6)
    detectors = load_detectors(settings)
    data = _image(*CASES[case])
    analyze_image(_image(320, 240, "PNG"), settings=settings, detectors=detectors)  # warm up
    gc.collect()
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak, running = base, True

    def sample() -> None:
        nonlocal peak
        while running:
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    for _ in range(repeat):
        verdict = analyze_image(data, settings=settings, detectors=detectors, name=case)
    seconds = (time.perf_counter() - t0) / repeat
    running = False
    sampler.join()
    gc.collect()
    mib = 1024 * 1024
    return {"case": case, "work_side": work_side, "file_bytes": len(data), "base_rss_mib": round(base / mib, 1),
            "peak_above_base_mib": round((peak - base) / mib, 1),
            "retained_above_base_mib": round((proc.memory_info().rss - base) / mib, 1),
            "seconds_per_image": round(seconds, 2), "analysed_notes": list(verdict.notes)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("CASE", "WORK_SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child[0], int(args.child[1]), args.repeat)))
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = []
    for case in CASES:
        for work_side in (0, 4096):
            out = subprocess.run([sys.executable, __file__, "--child", case, str(work_side), "--repeat",
                                  str(args.repeat)], capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.splitlines()[-1]))
            log.info("%s", rows[-1])
    result = {"command": "python benchmarks/memory_large_images.py --out benchmarks/results/memory_large_images.json",
              "note": ("work_side 0: decoded and analysed at full resolution, as before issue 14 (only face detection "
                       "works on its bounded copy); 4096: the default UDFD_WORK_SIDE"),
              "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
