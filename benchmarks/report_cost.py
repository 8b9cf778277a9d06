"""What the evidence report adds to one analysis: time to gather (crops, a heat-map per face) and write the HTML
page, and its size, on each example with the default detector. Not a unit test: the machine's load is recorded.

Every Image-tab analysis writes a report, explaining the first detector when 'Explain' is off (udfd/ui/report.py);
the first call per process pays the explanation's set-up (a private copy of the network), the next ones do not.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/report_cost.py --out benchmarks/results/report_cost.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from udfd.config import Settings
from udfd.media import image_limits, read_image
from udfd.pipeline import analyze_image, load_detectors
from udfd.provenance import read_provenance
from udfd.ui.report import save_report

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "report_cost.json")
    args = p.parse_args(argv)
    settings = Settings()
    dets = load_detectors(settings)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for f in sorted((ROOT / "examples").glob("*.jpg")):
            image = read_image(f, **image_limits(settings))
            provenance = read_provenance(f, max_bytes=settings.max_file_bytes, pixels=image.pixels)
            verdict = analyze_image(image, settings=settings, detectors=dets, provenance=provenance)
            seconds = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                out = save_report(Path(folder), f, verdict, dets, image=image)
                seconds.append(time.perf_counter() - t0)
            rows.append({"file": f.name, "faces": len(verdict.faces), "report_bytes": out.stat().st_size,
                         "first_s": round(seconds[0], 3), "median_rest_s": round(statistics.median(seconds[1:]), 3)})
            print(json.dumps(rows[-1]))
    result = {"detectors": [d.name for d in dets], "repeats": args.repeats, "rows": rows,
              "load_average": os.getloadavg(), "cpus": os.cpu_count(),
              "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "command": "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/report_cost.py"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
