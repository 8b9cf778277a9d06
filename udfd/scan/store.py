"""The scan's Parquet output: parts written atomically while scanning, compacted into one file at the end.

`OUT` is always a complete Parquet file (it is only ever replaced by `os.replace`). While a scan runs, each
flushed batch of rows becomes `OUT.parts/part-NNNNNN.parquet` (written to a temporary name, then renamed), so a
scan killed at any point leaves `OUT` and whole parts behind; the next scan (or `compact`) folds them in. Rows
are kept per file key (file, sha256, models_key): a key already in `OUT` or an earlier part is dropped from a
later part, so a crash between the rename of `OUT` and the removal of its parts cannot duplicate a row.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from udfd.errors import UdfdError
from udfd.scan.rows import SCHEMA, ScanRow, row_key, table_keys, to_table

log = logging.getLogger(__name__)


class ScanStore:
    """One scan's output file, its parts folder and its lock. Use as a context manager (it holds the lock)."""

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out)
        self.parts = self.out.with_name(self.out.name + ".parts")
        self._lock_path = self.out.with_name(self.out.name + ".lock")
        self._lock: int | None = None
        self._next = 0

    def __enter__(self) -> ScanStore:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the kernel if this process dies
        except BlockingIOError as e:
            os.close(fd)
            raise UdfdError(f"{self.out}: another scan is writing this output") from e
        self._lock = fd
        self.compact()  # fold in what a killed scan left behind
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.compact()
        finally:
            if self._lock is not None:
                fcntl.flock(self._lock, fcntl.LOCK_UN)
                os.close(self._lock)
                self._lock = None

    def done_keys(self, *, retry_errors: bool = False) -> set[str]:
        """The keys of every file already in the output or in this scan's parts (file rows; error rows too,
        unless `retry_errors`: then a file that failed is scanned again and its new rows replace the error)."""
        sources = [self.out] if self.out.exists() else []
        sources += self._parts()
        keys: set[str] = set()
        for path in sources:
            table = read_results(path, columns=["row_type", "file", "sha256", "models_key", "error"])
            files = pc.equal(table.column("row_type"), "file")
            if retry_errors:
                files = pc.and_(files, pc.equal(table.column("error"), ""))
            keys.update(table_keys(table.filter(files)))
        return keys

    def write(self, rows: Iterable[ScanRow]) -> int:
        """Write rows as one new part (atomically). Returns the number of rows written."""
        return self.write_table(to_table(rows))

    def write_table(self, table: pa.Table) -> int:
        """Write a table with `SCHEMA` as one new part (atomically). Returns the number of rows written."""
        if not table.num_rows:
            return 0
        table = table.select(SCHEMA.names).cast(SCHEMA)
        self.parts.mkdir(exist_ok=True)
        while (path := self.parts / f"part-{self._next:06d}.parquet").exists():
            self._next += 1
        tmp = path.with_suffix(".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)
        self._next += 1
        return table.num_rows

    def compact(self) -> None:
        """Fold the parts into `OUT` (deduplicated by file key), then remove them."""
        parts = self._parts()
        if not parts:
            self._clean()
            return
        tmp = self.out.with_name(self.out.name + ".tmp")
        pq.write_table(merged(self.out, parts), tmp)
        os.replace(tmp, self.out)
        for part in parts:
            part.unlink()
        self._clean()

    def _parts(self) -> list[Path]:
        return sorted(self.parts.glob("part-*.parquet")) if self.parts.is_dir() else []

    def _clean(self) -> None:
        if self.parts.is_dir():
            for tmp in self.parts.glob("*.tmp"):  # a part being written when the scan was killed
                tmp.unlink()
            if not any(self.parts.iterdir()):
                self.parts.rmdir()


def merged(out: Path, parts: list[Path]) -> pa.Table:
    """`out` (when it exists) and then each part, each file key's rows taken from one table only: the first that
    analysed the file, else (every try failed) the first that tried. An error row of a file that could not be
    read (no sha256) goes once the file has rows with its sha256."""
    tables = ([read_results(out)] if out.exists() else []) + [read_results(p) for p in parts]
    winner: dict[str, tuple[int, bool]] = {}  # key -> (table index, analysed)
    hashed: set[tuple[str, str]] = set()  # (file, models_key) with a sha256
    for i, table in enumerate(tables):
        cols = [table.column(n).to_pylist() for n in ("row_type", "file", "sha256", "models_key", "error")]
        for row_type, file, sha, models, error in zip(*cols, strict=True):
            if row_type != "file":
                continue
            key, analysed = row_key(file, sha, models), not error
            if key not in winner or (analysed and not winner[key][1]):
                winner[key] = (i, analysed)
            if sha:
                hashed.add((file, models))
    kept = []
    for i, table in enumerate(tables):
        cols = [table.column(n).to_pylist() for n in ("file", "sha256", "models_key")]
        keep = [winner.get(row_key(f, s, m), (i,))[0] == i and (bool(s) or (f, m) not in hashed)
                for f, s, m in zip(*cols, strict=True)]
        if not all(keep):
            log.info("%d rows already in the output, or replaced, dropped", keep.count(False))
        kept.append(table.filter(pa.array(keep, pa.bool_())))
    return pa.concat_tables(kept) if kept else SCHEMA.empty_table()


def read_results(path: str | os.PathLike[str], *, columns: list[str] | None = None,
                 with_parts: bool = False) -> pa.Table:
    """A scan's output file as an Arrow table (`columns`: only these). `with_parts`: also the rows an unfinished
    scan left in OUT.parts (a killed scan; the next scan folds them in)."""
    path = Path(path)
    parts_dir = path.with_name(path.name + ".parts")
    if with_parts and parts_dir.is_dir():
        table = merged(path, sorted(parts_dir.glob("part-*.parquet")))
        return table.select(columns) if columns else table
    if not path.exists():
        raise UdfdError(f"{path}: no such scan output")
    try:
        return pq.read_table(path, columns=columns, schema=SCHEMA)
    except (pa.ArrowInvalid, OSError) as e:
        raise UdfdError(f"{path}: not a scan output readable as Parquet: {e}") from e
