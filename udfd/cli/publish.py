"""`udfd publish`: push the embedded checkpoint folders to the Hub and write the Space's detector config.

    udfd publish --org ORG [--detector NAME ...] [--dry-run] [--space-config space/detectors.json]

Each folder `models/udfd-<x>` (weights, config.json, model card with its eval metadata) goes to `ORG/udfd-<x>` in
one commit (the repo is created if needed); the commit's revision is recorded. The Space config then lists, for
every published detector, the pinned Hub reference first and the embedded folder as the fallback, so a Space that
cannot reach the Hub at start-up still serves; a detector not published this time keeps its entry. `--dry-run`
prints the plan (files, repos, commit messages) and the config it would write, with unpinned Hub references; nothing
is sent and no file is written.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from udfd.config import DEFAULT_MODELS, PROJECT_ROOT, Settings
from udfd.errors import ModelUnavailableError, UdfdError
from udfd.hub import CONFIG_NAME, UDFD_KEY, parse_ref, split_refs

log = logging.getLogger(__name__)
HUB_ONLY = {"vit": "hf-hub:dima806/deepfake_vs_real_image_detection"}  # the Space's ViT-B/16 (no embedded copy)


@dataclass(frozen=True)
class Upload:
    name: str
    folder: Path
    repo_id: str
    version: str
    files: tuple[str, ...]

    @property
    def message(self) -> str:
        return f"UDFD {self.name} {self.version} (from {self.folder.name})"


def plan(models: dict[str, str], names: list[str] | None, org: str) -> list[Upload]:
    """Which embedded folders go where. Pure apart from listing the folders."""
    # The Space's `vit` is a Hub model of its own (HUB_ONLY): the embedded ViT-tiny is published only when asked.
    chosen = names or [n for n in models if n not in HUB_ONLY and _embedded(models[n]) is not None]
    uploads = []
    for name in chosen:
        if name not in models:
            raise UdfdError(f"unknown detector {name!r}; known: {sorted(models)}")
        folder = _embedded(models[name])
        if folder is None:
            raise UdfdError(f"{name} has no embedded checkpoint folder to publish ({models[name]})")
        meta = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8")).get(UDFD_KEY, {})
        files = tuple(sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()))
        uploads.append(Upload(name, folder, f"{org}/{folder.name}", str(meta.get("version", "unversioned")), files))
    return uploads


def _embedded(value: str) -> Path | None:
    for ref in split_refs(value):
        r = parse_ref(ref)
        if r.kind == "local-dir" and (Path(r.location) / CONFIG_NAME).is_file():
            return Path(r.location)
    return None


def push(uploads: list[Upload], *, api: Any = None, private: bool = False) -> dict[str, str]:
    """Create each repo if needed and upload its folder in one commit -> {name: revision}. `api`: an HfApi."""
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    revisions = {}
    for up in uploads:
        try:
            api.create_repo(repo_id=up.repo_id, repo_type="model", private=private, exist_ok=True)
            info = api.upload_folder(folder_path=str(up.folder), repo_id=up.repo_id, repo_type="model",
                                     commit_message=up.message)
        except Exception as e:  # network and auth errors come in many types; re-raise with context
            raise ModelUnavailableError(
                f"publishing {up.name} to hf-hub:{up.repo_id} failed ({type(e).__name__}: {e}); the Hub needs "
                "network access and a token with write rights (HF_TOKEN or `hf auth login`)") from e
        revisions[up.name] = str(getattr(info, "oid", "") or "")
        log.info("published %s -> %s@%s", up.name, up.repo_id, revisions[up.name])
    return revisions


def space_config(uploads: list[Upload], revisions: dict[str, str], *, detectors: list[str],
                 video_detectors: list[str], previous: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The Space's detectors.json: Hub first (pinned when the revision is known), the embedded folder second.
    `previous`: the config's models before this publish; a detector not published now keeps its entry there."""
    models: dict[str, list[str]] = {name: [ref] for name, ref in HUB_ONLY.items()}
    published = {u.name for u in uploads}
    models |= {name: list(refs) for name, refs in (previous or {}).items() if name not in published | set(HUB_ONLY)}
    for up in (u for u in uploads if u.name not in HUB_ONLY):
        rev = revisions.get(up.name)
        hub = f"hf-hub:{up.repo_id}" + (f"@{rev}" if rev else "")
        models[up.name] = [hub, f"local-dir:{up.folder.relative_to(PROJECT_ROOT)}"]
    for name in DEFAULT_MODELS:  # a default name with no embedded folder (clip) is Hub-only
        models.setdefault(name, [f"hf-hub:{uploads[0].repo_id.split('/')[0]}/udfd-{name.replace('_', '-')}"]
                          if uploads else [])
    return {"detectors": detectors, "models": models, "video_detectors": video_detectors}


def add_commands(sub: Any) -> None:
    p = sub.add_parser("publish", help="push the embedded checkpoints to ORG/udfd-* and write space/detectors.json")
    p.add_argument("--org", required=True, help="Hub user or organisation")
    p.add_argument("--detector", action="append", dest="names", help="only these (repeatable; default: every "
                   "detector with an embedded folder)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, send nothing")
    p.add_argument("--private", action="store_true")
    p.add_argument("--space-config", type=Path, default=PROJECT_ROOT / "space" / "detectors.json")
    p.set_defaults(func=cmd_publish, detector=None)


def cmd_publish(args: argparse.Namespace, settings: Settings, *, api: Any = None) -> int:
    uploads = plan(dict(DEFAULT_MODELS), args.names, args.org)
    if args.dry_run:
        for up in uploads:
            print(json.dumps({"detector": up.name, "repo_id": up.repo_id, "commit_message": up.message,
                              "files": list(up.files)}))
        revisions: dict[str, str] = {}
    else:
        revisions = push(uploads, api=api, private=args.private)
    old = json.loads(args.space_config.read_text(encoding="utf-8")) if args.space_config.is_file() else {}
    config = space_config(uploads, revisions, detectors=old.get("detectors", list(settings.detectors)),
                          video_detectors=old.get("video_detectors", list(settings.video_detectors)),
                          previous=old.get("models"))
    if args.dry_run:  # the config it would write, on one line; the file stays as it is
        print(json.dumps({"space_config": str(args.space_config), "would_write": config}))
        return 0
    args.space_config.write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    log.info("wrote %s", args.space_config)
    return 0
