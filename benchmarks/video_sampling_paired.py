"""Frame sampling (decode + motion + selection) of this checkout against an earlier commit's, paired in one process.

`udfd/video.py` at `--old-rev` is loaded from git as a separate module; both versions sample the same clips with the
same settings, alternated `--repeats` times (ABBA order, so drift in the machine's load hits both alike). Reports the
best and all wall times per version and checks that both selected the same frames.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/video_sampling_paired.py --old-rev 1e36cd9 \
        --out benchmarks/results/video_sampling_paired.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from udfd.config import Settings  # noqa: E402

log = logging.getLogger("benchmarks.video_sampling_paired")
CLIPS = (ROOT.parent / "shared/data/videos/real/ffpp_youtube/004.mp4",
         ROOT.parent / "shared/data/videos/fake/dfdc/widuwuoiur.mp4")


def old_module(rev: str, folder: Path):
    """udfd/video.py as it was at `rev`, importable beside the current one."""
    source = subprocess.run(["git", "show", f"{rev}:udfd/video.py"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout
    path = folder / "video_at_rev.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("video_at_rev", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["video_at_rev"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old-rev", required=True, help="the commit whose udfd/video.py is the baseline")
    p.add_argument("--clip", type=Path, action="append", help="default: the 720p and 1080p benchmark clips")
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import udfd.video as new

    settings = Settings.from_env().video
    report = {"created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "old_rev": args.old_rev,
              "repeats": args.repeats, "load_avg_before": os.getloadavg(), "clips": {}}
    with tempfile.TemporaryDirectory() as tmp:
        old = old_module(args.old_rev, Path(tmp))
        for clip in args.clip or CLIPS:
            walls: dict[str, list[float]] = {"old": [], "new": []}
            picked: dict[str, tuple[int, ...]] = {}
            for r in range(args.repeats):
                order = (("old", old), ("new", new)) if r % 2 == 0 else (("new", new), ("old", old))
                for name, module in order:
                    t0 = time.perf_counter()
                    sampled = module.sample_video(clip, settings)
                    walls[name].append(round(time.perf_counter() - t0, 4))
                    picked[name] = sampled.indices
            entry = {"best_s": {k: min(v) for k, v in walls.items()}, "wall_s": walls,
                     "same_frames": picked["old"] == picked["new"]}
            report["clips"][clip.name] = entry
            log.info("%s: old %.3f s, new %.3f s, same frames %s", clip.name, entry["best_s"]["old"],
                     entry["best_s"]["new"], entry["same_frames"])
    report["load_avg_after"] = os.getloadavg()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
