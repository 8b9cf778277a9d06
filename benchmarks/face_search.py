"""Face search on the dev sources: the MediaPipe cascade and the tiled second pass (issue 14 item 8, issue 16 part 3).

Two measurements, one JSON (`--out`, default benchmarks/results/face_search.json), with the machine's load:

- **cascade**: per source folder of ../shared/data/faces (real/* and fake/*), a seeded sample of `--per-source`
  images, decoded as the pipeline decodes them, searched in one pass (no tiling) the old way (both BlazeFace graphs
  on every image, `both=True`), the new default (short-range graph first, the full-range one only when it finds no
  face), full-range first (`order=(1, 0)`), and the default with its tiled second pass (how often it runs on
  ordinary images, and what it costs).
  Faces are matched across the two by their crop boxes (IoU >= 0.5, or one mostly inside the other): "lost" = old faces with no new match,
  "gained" = the reverse. Time per image (face search only) for both, interleaved in random order.
- **group_photos**: square grids of n x n real dev faces (`--grids`, e.g. 6x256 = 36 faces in 256 px cells), built
  here in memory; faces found (with max_faces high enough not to cap) by the old search (both graphs, no tiling)
  and the new default (cascade + tiled second pass), counted per grid cell ("cells with a face" out of n*n).

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/face_search.py --per-source 50
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from udfd.config import FaceSettings, Settings
from udfd.faces import MediaPipeFaceDetector, search_faces
from udfd.media import image_limits, read_image
from udfd.types import Box, FaceSearch

log = logging.getLogger("benchmarks.face_search")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
FACES = PROJECT_ROOT.parent / "shared" / "data" / "faces"
OUT = PROJECT_ROOT / "benchmarks" / "results" / "face_search.json"
SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
SEED = 0
GRID_SOURCES = ("lfw", "utkface", "fairface", "celebahq_real", "ffhq_real")


def face_grid(files: Sequence[Path], n: int, cell: int, *, seed: int = 0) -> np.ndarray:
    """An (n*cell)^2 RGB image: n*n distinct images of `files` (seeded choice), each resized to a cell."""
    from PIL import Image

    if len(files) < n * n:
        raise ValueError(f"{n * n} faces needed for a {n}x{n} grid, {len(files)} given")
    pick = random.Random(seed).sample(list(files), n * n)
    out = np.zeros((n * cell, n * cell, 3), np.uint8)
    for k, path in enumerate(pick):
        with Image.open(path) as im:
            row, col = divmod(k, n)
            out[row * cell:(row + 1) * cell, col * cell:(col + 1) * cell] = np.asarray(
                im.convert("RGB").resize((cell, cell)))
    return out


def grid_faces(faces: FaceSearch, cell: int) -> dict[str, int]:
    """How many grid cells hold the centre of at least one found face, and how many faces share a cell."""
    per_cell: dict[tuple[int, int], int] = {}
    for face in faces.crops:
        if face.face_found:
            x0, y0, x1, y1 = face.box
            key = (int((y0 + y1) / 2 // cell), int((x0 + x1) / 2 // cell))
            per_cell[key] = per_cell.get(key, 0) + 1
    return {"faces": faces.found, "cells_with_a_face": len(per_cell),
            "extra_in_a_cell": sum(v - 1 for v in per_cell.values())}


def grid_sources(root: Path = FACES) -> list[Path]:
    files: list[Path] = []
    for name in GRID_SOURCES:
        files += sorted(p for p in (root / "real" / name).glob("*") if p.suffix.lower() in SUFFIXES)
    return files


def _iou(a: Box, b: Box) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _contained(a: Box, b: Box) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return inter / smaller if smaller > 0 else 0.0


def same_face(a: Box, b: Box) -> bool:
    """IoU >= 0.5, or one box mostly (>= 0.6 of it) inside the other: the two models draw the same face at
    different scales."""
    return _iou(a, b) >= 0.5 or _contained(a, b) >= 0.6


def _unmatched(these: Sequence[Box], others: Sequence[Box]) -> int:
    return sum(1 for box in these if not any(same_face(box, other) for other in others))


def _boxes(search: FaceSearch) -> list[Box]:
    return [f.box for f in search.crops if f.face_found]


# way -> (MediaPipeFaceDetector keywords, tiled second pass). short_first is the default cascade; "default" adds the
# tiled pass as analyze_image runs it.
WAYS = {"both": ({"both": True}, False), "short_first": ({}, False), "full_first": ({"order": (1, 0)}, False),
        "default": ({}, True)}


def cascade(root: Path, per_source: int, faces: FaceSettings, settings: Settings) -> list[dict]:
    """Per source: faces found by each way of `WAYS`, faces lost / gained against "both", time per image."""
    detectors = {way: MediaPipeFaceDetector(**kw) for way, (kw, _) in WAYS.items()}
    rng = random.Random(SEED)
    rows = []
    sources = sorted(d for kind in ("real", "fake") for d in (root / kind).iterdir() if d.is_dir())
    for source in tqdm(sources, desc="sources"):
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in SUFFIXES)
        files = sorted(rng.sample(files, min(per_source, len(files))))
        row: dict = {"source": f"{source.parent.name}/{source.name}", "images": len(files)}
        counts = {way: {"faces": 0, "images_with_a_face": 0, "lost": 0, "gained": 0, "tiled_images": 0}
                  for way in WAYS}
        times: dict[str, list[float]] = {way: [] for way in WAYS}
        for path in files:
            pixels = read_image(path, max_file_bytes=settings.max_file_bytes, **image_limits(settings)).pixels
            boxes = {}
            for way in rng.sample(list(WAYS), len(WAYS)):  # interleaved, in random order
                t0 = time.perf_counter()
                found = search_faces(pixels, faces, detector=detectors[way], tiled=WAYS[way][1])
                times[way].append((time.perf_counter() - t0) * 1000)
                boxes[way] = _boxes(found)
                counts[way]["tiled_images"] += found.tiles > 0
            for way, found in boxes.items():
                counts[way]["faces"] += len(found)
                counts[way]["images_with_a_face"] += bool(found)
                counts[way]["lost"] += _unmatched(boxes["both"], found)
                counts[way]["gained"] += _unmatched(found, boxes["both"])
        for way in WAYS:
            counts[way]["ms_per_image"] = {"mean": round(float(np.mean(times[way])), 2) if files else None,
                                           "p50": round(float(np.median(times[way])), 2) if files else None}
        rows.append(row | counts)
    for detector in detectors.values():
        detector.close()
    return rows


def group_photos(root: Path, grids: Sequence[tuple[int, int]], faces: FaceSettings) -> list[dict]:
    files = grid_sources(root)
    old, new = MediaPipeFaceDetector(both=True), MediaPipeFaceDetector()
    rows = []
    for n, cell in tqdm(grids, desc="grids"):
        pixels = face_grid(files, n, cell, seed=SEED)
        row: dict = {"grid": f"{n}x{n}", "cell_px": cell, "image_px": n * cell, "faces_in_image": n * n}
        for way, det, tiled in (("old", old, False), ("new", new, True)):  # old: both graphs, one pass
            t0 = time.perf_counter()
            found = search_faces(pixels, faces, detector=det, tiled=tiled)
            row[way] = grid_faces(found, cell) | {"tiles": found.tiles,
                                                  "ms": round((time.perf_counter() - t0) * 1000, 1)}
        rows.append(row)
    old.close()
    new.close()
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=FACES, help="folder with real/<source> and fake/<source>")
    parser.add_argument("--per-source", type=int, default=50, help="images sampled per source folder")
    parser.add_argument("--grids", default="6x256,10x256,6x128,10x128,10x96",
                        help="comma-separated NxCELL grids of real faces (N*N faces in CELL px cells)")
    parser.add_argument("--out", type=Path, default=OUT)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    faces = replace(settings.faces, max_faces=1000)  # count every face: the cap is not what is measured
    grids = [tuple(int(v) for v in g.split("x")) for g in args.grids.split(",") if g]
    load_before = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    result = {
        "benchmark": "face search: MediaPipe cascade vs both graphs; tiled second pass on grids of real faces",
        "command": f"python benchmarks/face_search.py --per-source {args.per_source} --grids {args.grids}",
        "data": os.path.relpath(args.data, PROJECT_ROOT),
        "per_source": args.per_source,
        "seed": SEED,
        "face_settings": {"backend": faces.backend, "min_confidence": faces.min_confidence,
                          "max_tiles": faces.max_tiles},
        "cascade": cascade(args.data, args.per_source, faces, settings),
        "group_photos": group_photos(args.data, grids, faces),
    }
    result["environment"] = {"cpu_count": os.cpu_count(), "load_avg_before": load_before,
                             "load_avg_after": [round(x, 2) for x in os.getloadavg()],
                             "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                             "seconds": round(time.perf_counter() - t0, 1)}
    rows = result["cascade"]
    totals: dict = {"images": sum(r["images"] for r in rows)}
    for way in WAYS:
        totals[way] = {k: sum(r[way][k] for r in rows)
                       for k in ("faces", "images_with_a_face", "lost", "gained", "tiled_images")}
        totals[way]["ms_per_image_mean"] = round(sum(r[way]["ms_per_image"]["mean"] * r["images"] for r in rows)
                                                 / max(1, totals["images"]), 2)
    result["cascade_totals"] = totals
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"cascade_totals": totals, "group_photos": result["group_photos"]}, indent=1))


if __name__ == "__main__":
    main()
