"""The scan's row format: one row per file and one per face, as a fixed Arrow schema. Pure.

A file row carries the file's verdict (the most-fake face) or its error; a face row carries one face's box,
every detector's fake_prob and its verdict. Rows are keyed for resuming by (file, sha256, models_key): a file
whose content changed, or a scan with other model versions, is analysed again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import pyarrow as pa

from udfd.types import Verdict

SCHEMA = pa.schema([
    ("row_type", pa.string()),  # "file" | "face"
    ("file", pa.string()),
    ("source", pa.string()),  # the folder (relative to the scanned root) or dataset split the file came from
    ("sha256", pa.string()),  # "" when the file could not be read
    ("kind", pa.string()),  # "image" | "video"
    ("face_index", pa.int32()),  # -1 on file rows
    ("box", pa.list_(pa.int32())),  # (x0, y0, x1, y1) in the file's pixels; empty on file rows
    ("face_found", pa.bool_()),  # file rows: some face was found
    ("confidence", pa.float64()),
    ("n_faces", pa.int32()),
    ("scores", pa.map_(pa.string(), pa.float64())),  # detector -> fake_prob (file rows: of the most-fake face)
    ("thresholds", pa.map_(pa.string(), pa.float64())),  # detector -> its decision threshold
    ("label", pa.string()),  # "real" | "fake"; "" on error rows
    ("fake_prob", pa.float64()),  # the first detector's (it decides); NaN on error rows
    ("uncertain", pa.bool_()),
    ("uncertain_reason", pa.string()),
    ("model_versions", pa.map_(pa.string(), pa.string())),
    ("models_key", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("error", pa.string()),  # "" when the file was analysed
])


@dataclass(frozen=True)
class ScanRow:
    """One row of `SCHEMA` (field for field)."""

    row_type: str
    file: str
    source: str
    sha256: str
    kind: str
    models_key: str
    face_index: int = -1
    box: tuple[int, ...] = ()
    face_found: bool = False
    confidence: float = 0.0
    n_faces: int = 0
    scores: Mapping[str, float] = field(default_factory=dict)
    thresholds: Mapping[str, float] = field(default_factory=dict)
    label: str = ""
    fake_prob: float = float("nan")
    uncertain: bool = False
    uncertain_reason: str = ""
    model_versions: Mapping[str, str] = field(default_factory=dict)
    width: int = 0
    height: int = 0
    error: str = ""

    @property
    def key(self) -> str:
        return row_key(self.file, self.sha256, self.models_key)


def models_key(versions: Mapping[str, str]) -> str:
    """The model versions as one sortable string, e.g. "cnn=ab12;vit=cd34" (the resume key's model part)."""
    return ";".join(f"{name}={version}" for name, version in sorted(versions.items()))


def row_key(file: str, sha256: str, models: str) -> str:
    return f"{file}\x1f{sha256}\x1f{models}"


def verdict_rows(verdict: Verdict, *, file: str, source: str, sha256: str, thresholds: Mapping[str, float]
                 ) -> list[ScanRow]:
    """A file row (the overall verdict; scores of its most-fake face) and one row per face, named `file` (a video
    verdict names only the file's base name)."""
    key = models_key(verdict.model_versions)
    common = {"file": file, "source": source, "sha256": sha256, "kind": verdict.kind, "models_key": key,
              "thresholds": dict(thresholds), "model_versions": dict(verdict.model_versions),
              "width": verdict.width, "height": verdict.height, "n_faces": len(verdict.faces)}
    worst = max(verdict.faces, key=lambda f: f.fake_prob)
    o = verdict.overall
    rows = [ScanRow(row_type="file", face_found=any(f.face_found for f in verdict.faces),
                    confidence=worst.confidence, scores=dict(worst.scores), label=o.label, fake_prob=o.fake_prob,
                    uncertain=o.uncertain, uncertain_reason=worst.uncertain_reason if o.uncertain else "", **common)]
    for i, f in enumerate(verdict.faces):
        rows.append(ScanRow(row_type="face", face_index=i, box=tuple(f.box), face_found=f.face_found,
                            confidence=f.confidence, scores=dict(f.scores), label=f.label, fake_prob=f.fake_prob,
                            uncertain=f.uncertain, uncertain_reason=f.uncertain_reason, **common))
    return rows


def error_row(*, file: str, source: str, kind: str, sha256: str, versions: Mapping[str, str], error: str) -> ScanRow:
    """The one row of a file that could not be analysed."""
    return ScanRow(row_type="file", file=file, source=source, sha256=sha256, kind=kind,
                   models_key=models_key(versions), model_versions=dict(versions), error=error)


def to_table(rows: Iterable[ScanRow]) -> pa.Table:
    """Rows -> an Arrow table with `SCHEMA` (maps as lists of pairs, as Arrow wants them)."""
    records = []
    for row in rows:
        d = asdict(row)
        for name in ("scores", "thresholds", "model_versions"):
            d[name] = list(d[name].items())
        d["box"] = list(d["box"])
        records.append(d)
    return pa.Table.from_pylist(records, schema=SCHEMA)


def table_keys(table: pa.Table) -> list[str]:
    """The resume key of every row of a table with `SCHEMA`."""
    cols = [table.column(n).to_pylist() for n in ("file", "sha256", "models_key")]
    return [row_key(f, s, m) for f, s, m in zip(*cols, strict=True)]


def sort_rows(rows: Sequence[ScanRow]) -> list[ScanRow]:
    """A canonical order (file, then its file row, then faces), so that two scans can be compared row by row."""
    return sorted(rows, key=lambda r: (r.file, r.models_key, r.face_index))
