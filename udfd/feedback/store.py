"""The feedback store: visitors' flags as an append-only folder in Hugging Face *imagefolder* layout.

    <root>/<shard uuid>/metadata.jsonl        one JSON line per flag (the FeedbackRecord + `file_name`)
    <root>/<shard uuid>/images/<id>.png       the flagged image, only when the visitor consented
    <root>/<shard uuid>/no_image.png          1×1 placeholder that rows without an image point to

Each process appends to its own uuid-named shard, under a lock, one `os.write` per line followed by
`fsync`, so that concurrent processes never interleave and a killed writer loses at most the record it was
writing. Images are written to a temporary name, fsynced and renamed before their line is appended, so a
line never points to a missing or half-written image. Nothing is ever rewritten.

`datasets.load_dataset("imagefolder", data_dir=root)` reads the folder (every row has a string
`file_name`, which is why rows without consent point to the placeholder; filter on `image_stored`), and a
`huggingface_hub.CommitScheduler` can push it unchanged to a private Hub dataset.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from udfd.config import FeedbackSettings
from udfd.types import FeedbackRecord, Label, ProtectorDecision

log = logging.getLogger(__name__)

METADATA_NAME = "metadata.jsonl"
IMAGES_DIR = "images"
PLACEHOLDER_NAME = "no_image.png"
SCHEMA_VERSION = 1
# Never pushed: temporary image files before their rename, and hidden files.
PUSH_IGNORE = ["*.tmp", "**/.*", ".*"]


class FeedbackStoreError(OSError):
    """The store could not write a record (disk full, permissions); the record was not stored."""


# -- rows <-> records (pure) -------------------------------------------------------------------------
def record_to_row(record: FeedbackRecord, *, file_name: str) -> dict[str, Any]:
    """The JSON object stored for one record. Types are the same in every row, so that `datasets` infers one
    schema for every shard: scores become a list of {detector, fake_prob} (detector sets differ between flags)."""
    return {
        "file_name": file_name,
        "id": record.id,
        "time": record.time,
        "media_sha256": record.media_sha256,
        "model": record.model,
        "revision": record.revision,
        "scores": [{"detector": k, "fake_prob": float(v)} for k, v in record.scores.items()],
        "predicted_label": record.predicted_label or "",
        "user_label": record.user_label,
        "protector_decision": record.protector_decision,
        "protector_score": -1.0 if record.protector_score is None else float(record.protector_score),
        "reason": record.reason,
        "consent": bool(record.consent),
        "image_stored": file_name != PLACEHOLDER_NAME,
        "schema_version": SCHEMA_VERSION,
    }


def row_to_record(row: dict[str, Any], *, shard: str) -> FeedbackRecord:
    """Inverse of `record_to_row`; `image_file` becomes a path relative to the store root."""
    score = float(row["protector_score"])
    return FeedbackRecord(
        id=str(row["id"]),
        time=str(row["time"]),
        media_sha256=str(row["media_sha256"]),
        model=str(row["model"]),
        revision=str(row["revision"]),
        scores={str(s["detector"]): float(s["fake_prob"]) for s in row["scores"]},
        user_label=row["user_label"],
        protector_decision=row["protector_decision"],
        protector_score=None if score < 0 else score,  # -1.0 marks "not screened" (JSON has no NaN)
        reason=str(row["reason"]),
        consent=bool(row["consent"]),
        predicted_label=row.get("predicted_label") or None,
        image_file=f"{shard}/{row['file_name']}" if row.get("image_stored") else None,
    )


def new_record(
    *,
    media_sha256: str,
    model: str,
    revision: str,
    scores: dict[str, float],
    predicted_label: Label | None,
    user_label: Label,
    consent: bool,
    protector_decision: ProtectorDecision = "unscreened",
    protector_score: float | None = None,
    reason: str = "not screened: no protector loaded",
    id: str | None = None,
) -> FeedbackRecord:
    """A record with the current UTC time and `id` (a client's idempotency key), or a fresh one."""
    return FeedbackRecord(
        id=id or uuid.uuid4().hex,
        time=datetime.now(UTC).isoformat(timespec="milliseconds"),
        media_sha256=media_sha256,
        model=model,
        revision=revision,
        scores=dict(scores),
        user_label=user_label,
        protector_decision=protector_decision,
        protector_score=protector_score,
        reason=reason,
        consent=consent,
        predicted_label=predicted_label,
    )


# -- writing -----------------------------------------------------------------------------------------
class FeedbackStore:
    """Appends records to this process's shard of the store at `root`. Thread-safe.

    `lock` is shared with a `CommitScheduler` when one pushes the folder, so that a push never sees a line
    or an image half written. Nothing touches the disk before the first `append`.
    """

    def __init__(self, root: Path, *, lock: AbstractContextManager | None = None, shard: str | None = None) -> None:
        self.root = Path(root)
        self.shard = shard or uuid.uuid4().hex
        self.lock = lock if lock is not None else threading.Lock()
        self._fd: int | None = None
        self._stored: dict[str, FeedbackRecord] | None = None  # every id in the store, read on first use

    @property
    def shard_dir(self) -> Path:
        return self.root / self.shard

    def append(self, record: FeedbackRecord, *, image: np.ndarray | None = None) -> FeedbackRecord:
        """Store one record (and the image when `record.consent` and an image is given); return it as stored.

        The image is the decoded RGB uint8 array, re-encoded as PNG so that no EXIF or other file metadata
        of the upload is kept. Raises `FeedbackStoreError` when the disk refuses the write.
        """
        keep_image = record.consent and image is not None
        file_name = f"{IMAGES_DIR}/{record.id}.png" if keep_image else PLACEHOLDER_NAME
        line = (json.dumps(record_to_row(record, file_name=file_name), ensure_ascii=False) + "\n").encode("utf-8")
        try:
            with self.lock:
                known = self._known().get(record.id)
                if known is not None:  # a retry of a flag already stored (same id): stored once
                    return known
                fd = self._open()
                if keep_image:
                    _write_atomic(self.shard_dir / file_name, _png_bytes(image))
                _write_all(fd, line)
                os.fsync(fd)
                stored = replace(record, image_file=f"{self.shard}/{file_name}" if keep_image else None)
                self._known()[record.id] = stored
        except OSError as e:
            raise FeedbackStoreError(f"could not store feedback in {self.shard_dir}: {e}") from e
        return stored

    def contains(self, record_id: str) -> bool:
        """Whether a record with this id is already in the store (any shard)."""
        try:
            with self.lock:
                return record_id in self._known()
        except OSError as e:
            raise FeedbackStoreError(f"could not read the feedback store {self.root}: {e}") from e

    def _known(self) -> dict[str, FeedbackRecord]:
        if self._stored is None:  # under self.lock
            self._stored = {r.id: r for r in read_records(self.root).records}
        return self._stored

    def close(self) -> None:
        with self.lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _open(self) -> int:
        if self._fd is None:
            (self.shard_dir / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
            placeholder = self.shard_dir / PLACEHOLDER_NAME
            if not placeholder.exists():
                _write_atomic(placeholder, _png_bytes(np.full((1, 1, 3), 128, np.uint8)))
            self._fd = os.open(self.shard_dir / METADATA_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            log.info("feedback shard %s", self.shard_dir)
        return self._fd


def _write_all(fd: int, data: bytes) -> None:
    # One write() for a line in practice; the loop only matters for a partial write (full disk).
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _png_bytes(pixels: np.ndarray) -> bytes:
    import io

    from PIL import Image as PILImage

    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 image, got {pixels.dtype} {pixels.shape}")
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


# -- reading -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StoreContents:
    records: tuple[FeedbackRecord, ...]
    shards: int
    torn_lines: int  # an unterminated last line (a writer died mid-write): skipped
    bad_lines: int  # a complete line that is not a valid record: skipped


def read_records(root: Path) -> StoreContents:
    """Every complete record in the store, shard by shard in file order. Tolerates a torn last line."""
    root = Path(root)
    records: list[FeedbackRecord] = []
    shards = torn = bad = 0
    for meta in sorted(root.glob(f"*/{METADATA_NAME}")) if root.is_dir() else []:
        shards += 1
        data = meta.read_bytes()
        lines = data.split(b"\n")
        if lines[-1].strip():  # no newline at the end: the last write did not complete
            torn += 1
            log.warning("%s: skipping an unterminated last line (%d bytes)", meta, len(lines[-1]))
        for n, raw in enumerate(lines[:-1], start=1):
            if not raw.strip():
                continue
            try:
                records.append(row_to_record(json.loads(raw), shard=meta.parent.name))
            except (ValueError, KeyError, TypeError) as e:
                bad += 1
                log.warning("%s:%d: skipping a line that is not a feedback record (%s)", meta, n, e)
    return StoreContents(records=tuple(records), shards=shards, torn_lines=torn, bad_lines=bad)


# -- wiring (store + optional Hub push) ----------------------------------------------------------------
@dataclass(frozen=True)
class StoreStatus:
    local_dir: str
    pushing_to: str | None  # the Hub dataset, when a CommitScheduler is running
    message: str  # one sentence for logs and the UI


def open_store(settings: FeedbackSettings, *, hf_api: Any = None) -> tuple[FeedbackStore, Any, StoreStatus]:
    """(store, scheduler or None, status). When `settings.repo` is set, a `CommitScheduler` pushes the folder
    to that private Hub dataset every `every_minutes`; if it cannot be created (offline, no or bad token), the
    reason is logged as an error and the store keeps writing locally. `hf_api` is the injection point for tests.
    """
    root = Path(settings.dir)
    if not settings.repo:
        return FeedbackStore(root), None, StoreStatus(str(root), None, f"feedback is stored locally in {root}")
    token = settings.token
    if hf_api is None and token is None:
        from huggingface_hub import get_token

        token = get_token()
        if token is None:
            msg = (f"UDFD_FEEDBACK_REPO={settings.repo} is set but no Hugging Face token was found (set HF_TOKEN"
                   f" with write access); feedback is stored locally in {root} only")
            log.error(msg)
            return FeedbackStore(root), None, StoreStatus(str(root), None, msg)
    from huggingface_hub import CommitScheduler

    try:
        scheduler = CommitScheduler(repo_id=settings.repo, repo_type="dataset", folder_path=root, private=True,
                                    every=settings.every_minutes, token=token, ignore_patterns=PUSH_IGNORE,
                                    hf_api=hf_api)
    except Exception as e:  # offline / auth / HTTP errors come in many types; report and keep storing locally
        msg = (f"cannot push feedback to the Hub dataset {settings.repo} ({type(e).__name__}: {e}); feedback is"
               f" stored locally in {root} only")
        log.error(msg)
        return FeedbackStore(root), None, StoreStatus(str(root), None, msg)
    msg = f"feedback is stored in {root} and pushed to the private dataset {settings.repo} every" \
          f" {settings.every_minutes:g} min"
    log.info(msg)
    return FeedbackStore(root, lock=scheduler.lock), scheduler, StoreStatus(str(root), settings.repo, msg)


# -- summaries (pure) --------------------------------------------------------------------------------
def feedback_stats(records: Iterable[FeedbackRecord]) -> dict[str, Any]:
    """Counts by decision, label, model version; user-perceived accuracy (flags marked correct / flags)."""
    recs: Sequence[FeedbackRecord] = list(records)

    def count(key: Any) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in recs:
            k = str(key(r))
            out[k] = out.get(k, 0) + 1
        return dict(sorted(out.items()))

    judged = [r for r in recs if r.predicted_label]
    accepted = [r for r in judged if r.protector_decision == "accepted"]
    return {
        "n": len(recs),
        "by_decision": count(lambda r: r.protector_decision),
        "by_user_label": count(lambda r: r.user_label),
        "by_model_version": count(lambda r: f"{r.model}@{r.revision}"),
        "with_image": sum(r.image_file is not None for r in recs),
        "user_accuracy": _agreement(judged),
        "user_accuracy_accepted": _agreement(accepted),
        "first": min((r.time for r in recs), default=None),
        "last": max((r.time for r in recs), default=None),
    }


def _agreement(records: Sequence[FeedbackRecord]) -> float | None:
    return sum(r.user_label == r.predicted_label for r in records) / len(records) if records else None


# -- export (edge: writes a training tree) -------------------------------------------------------------
def select_records(records: Iterable[FeedbackRecord], *, decisions: Sequence[str] = ("accepted",),
                   revision: str | None = None) -> list[FeedbackRecord]:
    """Records whose protector decision is in `decisions` (all when empty), optionally for one model revision."""
    return [r for r in records if (not decisions or r.protector_decision in decisions)
            and (revision is None or r.revision == revision)]


def export_training_tree(root: Path, records: Sequence[FeedbackRecord], out: Path) -> dict[str, int]:
    """Write `out/{real,fake}/feedback/<id>.png` (the user's label decides the folder) for every record with an
    image, and `out/records.jsonl` with every record given. This is the layout training/data.py reads."""
    import shutil

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {"records": 0, "real": 0, "fake": 0}
    with open(out / "records.jsonl", "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(asdict(r)) + "\n")
            counts["records"] += 1
            if r.image_file:
                target = out / r.user_label / "feedback" / f"{r.id}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(root) / r.image_file, target)
                counts[r.user_label] += 1
    return counts
