"""The seeded sample of dev faces the codec benchmarks share: `per_source` files of every source folder."""

from __future__ import annotations

import random
from pathlib import Path


def per_source_sample(data: Path, per_source: int, *, seed: int, suffixes: tuple[str, ...]) -> list[Path]:
    """At most `per_source` files with these suffixes from every `data/<label>/<source>` folder, seeded (one
    generator over the folders in sorted order, so a given seed always draws the same files)."""
    rng = random.Random(seed)
    files: list[Path] = []
    for folder in sorted(d for d in data.glob("*/*") if d.is_dir()):
        images = sorted(f for f in folder.iterdir() if f.suffix.lower() in suffixes)
        files += rng.sample(images, min(per_source, len(images)))
    return files
