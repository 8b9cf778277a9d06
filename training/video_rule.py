"""Measure how track scores should be aggregated: per-clip AUC on the dev clips for every rule and detector.

    python training/video_rule.py --videos ../shared/data/videos --detector cnn --detector ensemble \
        --out runs/video_rule.json

Each clip goes through the product's video path once (frame selection, faces, tracks: `udfd.pipeline.run_video`);
every tracked face in every used frame is scored by each image detector, and each rule of `udfd.aggregate` turns a
track's frame scores into one score; the clip's score is its most-fake eligible track (tracks seen in at least a
quarter of the frames with faces, as the product does). Labels come from the folder (videos/{real,fake}/...).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from any folder

from udfd.aggregate import TRACK_RULES, aggregate  # noqa: E402
from udfd.config import Settings  # noqa: E402
from udfd.evaluation.stacking import auc  # noqa: E402
from udfd.loader import load_detector  # noqa: E402
from udfd.pipeline import run_video  # noqa: E402
from udfd.video import iter_video_files  # noqa: E402

log = logging.getLogger("training.video_rule")


def clip_track_probs(path: Path, dets: list[Any], settings: Settings) -> dict[str, list[list[float]]]:
    """{detector: [per eligible track: per-frame fake probs]} for one clip."""
    analysis = run_video(path, settings=settings, detectors=dets[:1])
    faces, tracks = analysis.faces, analysis.tracks
    with_faces = sum(1 for f in faces if f[0].face_found)
    eligible = [tr for tr in tracks if faces[tr[0][0]][tr[0][1]].face_found and len(tr) >= max(2, 0.25 * with_faces)]
    eligible = eligible or list(tracks)
    out: dict[str, list[list[float]]] = {}
    for det in dets:
        per_track = []
        for tr in eligible:
            crops = [faces[t][j].pixels for t, j in tr]
            probs = []
            for s in range(0, len(crops), 32):
                probs += [sc.fake_prob for sc in det.predict(det.preprocess(crops[s:s + 32]))]
            per_track.append(probs)
        out[det.name] = per_track
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=Path, default=Path("../shared/data/videos"))
    p.add_argument("--detector", action="append", required=True)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    dets = [load_detector(n, settings=settings) for n in args.detector]
    clips = sorted(iter_video_files([args.videos]))
    rows = []
    for path in tqdm(clips, desc="clips", unit="clip"):
        label = 1 if "fake" in path.relative_to(args.videos).parts[:1] else 0
        rows.append({"clip": str(path.relative_to(args.videos)), "label": label,
                     "tracks": clip_track_probs(path, dets, settings)})
    y = [r["label"] for r in rows]
    table: dict[str, dict[str, float | None]] = {}
    for det in dets:
        table[det.name] = {}
        for rule in TRACK_RULES:
            scores = [max(aggregate(t, rule) for t in r["tracks"][det.name]) for r in rows]
            table[det.name][rule] = auc(y, scores)
    report = {"n_clips": len(rows), "n_fake": int(np.sum(y)), "auc": table, "clips": rows}
    print(json.dumps({k: v for k, v in report.items() if k != "clips"}, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
