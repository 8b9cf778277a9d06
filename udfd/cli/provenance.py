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
    pv.add_argument("--trust-anchors", type=Path, help="PEM file of extra C2PA trust anchors (default: "
                    "$UDFD_C2PA_TRUST_ANCHORS); manifests signed under them validate as Trusted")
    # loads_models=False: main() skips importing torch for this command
    pv.set_defaults(func=cmd_provenance, detector=None, loads_models=False)


def cmd_provenance(args: argparse.Namespace, settings: Settings) -> int:
    from udfd.errors import UdfdError
    from udfd.media import iter_image_files
    from udfd.provenance import read_provenance
    from udfd.video import is_video, iter_video_files

    anchors = None
    if args.trust_anchors:
        try:
            anchors = args.trust_anchors.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UdfdError(f"--trust-anchors {args.trust_anchors}: cannot be read: {e}") from e

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
        prov = read_provenance(path, max_bytes=limit, kind="video" if video else "image", trust_anchors=anchors)
        print(json.dumps({"file": str(path)} | prov.to_dict()), flush=True)
    return 1 if missing else 0
