"""`udfd provenance FILE...`: what each file says about its own origin, one JSON object per line; no models load."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from udfd.config import Settings

log = logging.getLogger(__name__)


def add_commands(sub: Any) -> None:
    """Register `provenance` on `udfd`'s subparsers."""
    pv = sub.add_parser("provenance", help="C2PA manifest, invisible watermarks and generator metadata of files "
                        "(JSON Lines; no models loaded)")
    pv.add_argument("paths", nargs="+", type=Path, help="image or video files, or folders of them")
    # loads_models=False: main() skips importing torch for this command
    pv.set_defaults(func=cmd_provenance, detector=None, loads_models=False)


def cmd_provenance(args: argparse.Namespace, settings: Settings) -> int:
    from udfd.media import iter_image_files
    from udfd.provenance import read_provenance
    from udfd.video import is_video, iter_video_files

    missing = [p for p in args.paths if not p.exists()]
    for p in missing:
        log.error("%s: no such file or folder", p)
        print(json.dumps({"file": str(p), "error": "no such file or folder"}), flush=True)
    present = [p for p in args.paths if p.exists()]
    files = sorted(set(iter_image_files(present)) | set(iter_video_files(present)))
    files += [p for p in present if p.is_file() and p not in files]  # named explicitly: checked whatever the suffix
    for path in files:
        video = is_video(path)
        limit = settings.video.max_file_bytes if video else settings.max_file_bytes
        prov = read_provenance(path, max_bytes=limit, kind="video" if video else "image")
        print(json.dumps({"file": str(path)} | prov.to_dict()), flush=True)
    return 1 if missing else 0
