"""What a scan reads: a folder (any depth), a list file, or a `datasets` dataset (saved to disk, or on the Hub).

Each source becomes a list of `FileRecord`s. Folder and list-file records hold paths (the workers read them);
dataset records hold the image bytes, read here from the dataset's Arrow files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from udfd.errors import UdfdError
from udfd.media import iter_image_files
from udfd.scan.core import FileRecord
from udfd.video import is_video, iter_video_files

log = logging.getLogger(__name__)

HUB_PREFIX = "hf://datasets/"
LIST_SUFFIXES = (".txt", ".lst", ".list")
DatasetLoader = Callable[..., Any]  # datasets.load_dataset's signature: (name, *, split=..., revision=...)


def records_for(src: str, *, image_column: str | None = None, split: str | None = None,
                load_hub: DatasetLoader | None = None) -> list[FileRecord]:
    """The records of `src`, each file once: a folder, a list file (one path per line), a folder written by
    `Dataset.save_to_disk`, or `hf://datasets/ORG/NAME[@REVISION]` (needs network; `load_hub` stands in for
    `datasets.load_dataset`, e.g. in tests)."""
    records = _records(src, image_column=image_column, split=split, load_hub=load_hub)
    unique = list({r.file: r for r in reversed(records)}.values())[::-1]  # first of each file, in order
    if len(unique) < len(records):
        log.warning("%s: %d files are listed more than once; each is scanned once", src, len(records) - len(unique))
    return unique


def _records(src: str, *, image_column: str | None, split: str | None, load_hub: DatasetLoader | None
             ) -> list[FileRecord]:
    if src.startswith(HUB_PREFIX):
        return dataset_records(_hub_dataset(src, split=split, load=load_hub), name=src, image_column=image_column)
    path = Path(src)
    if path.is_dir() and _is_saved_dataset(path):
        import datasets

        return dataset_records(datasets.load_from_disk(str(path)), name=os.path.abspath(path),
                               image_column=image_column, split=split)
    if path.is_dir():
        return folder_records(path)
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        return list_file_records(path)
    if path.is_file():
        raise UdfdError(f"{src}: a scan reads a folder, a list file ({', '.join(LIST_SUFFIXES)}) or a dataset; "
                        "for one file use `udfd predict`")
    hint = f"; for a Hub dataset write {HUB_PREFIX}{src}" if src.count("/") == 1 else ""
    raise UdfdError(f"{src}: not found (not a folder, a list file or a saved dataset){hint}")


def folder_records(root: Path) -> list[FileRecord]:
    """Every image and video under `root`, sorted, as absolute paths (the resume key does not depend on the
    working directory); each one's source is its folder relative to `root`."""
    files = sorted(set(iter_image_files([root])) | set(iter_video_files([root])))
    return [FileRecord(os.path.abspath(f), _source(f, root), "video" if is_video(f) else "image") for f in files]


def list_file_records(path: Path) -> list[FileRecord]:
    """One path per line (blank lines and `#` comments skipped); relative paths are relative to the list file
    (a listed folder is scanned whole).

    Every listed path becomes a record, also when it is missing or not an image, so that it gets an error row."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        f = Path(line) if Path(line).is_absolute() else path.parent / line
        if f.is_dir():
            records += folder_records(f)
            continue
        records.append(FileRecord(os.path.abspath(f), str(Path(line).parent), "video" if is_video(f) else "image"))
    return records


def dataset_records(ds: Any, *, name: str, image_column: str | None = None, split: str | None = None
                    ) -> list[FileRecord]:
    """Records of a `datasets.Dataset` (or every split of a `DatasetDict`, or `split` of it): the image column's
    encoded bytes, undecoded; each record is named NAME#SPLIT/INDEX."""
    import datasets

    if isinstance(ds, datasets.DatasetDict):
        if split is not None and split not in ds:
            raise UdfdError(f"{name}: no split {split!r}; splits: {', '.join(ds)}")
        parts = [(s, ds[s]) for s in ([split] if split else list(ds))]
    else:
        parts = [(split or str(ds.split or "train"), ds)]
    records = []
    for split_name, part in parts:
        column = _image_column(part, name, image_column)
        part = part.select_columns([column]).cast_column(column, datasets.Image(decode=False))
        source = f"{name}#{split_name}"
        for i, item in enumerate(part[column]):
            records.append(FileRecord(f"{source}/{i}", source, "image", _image_bytes(item, f"{source}/{i}")))
    return records


def _hub_dataset(src: str, *, split: str | None, load: DatasetLoader | None) -> Any:
    ref = src.removeprefix(HUB_PREFIX)
    repo, _, revision = ref.partition("@")
    if load is None:
        import datasets

        load = datasets.load_dataset
    try:
        return load(repo, split=split, revision=revision or None)
    except (ConnectionError, OSError, ValueError, FileNotFoundError) as e:
        raise UdfdError(f"{src}: cannot load the Hub dataset {repo!r} (it needs network access to the Hub; "
                        f"offline, save it with Dataset.save_to_disk and scan that folder): {e}") from e


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()


def _image_column(ds: Any, name: str, wanted: str | None) -> str:
    import datasets

    if wanted:
        if wanted not in ds.column_names:
            raise UdfdError(f"{name}: no column {wanted!r}; columns: {', '.join(ds.column_names)}")
        return wanted
    images = [c for c, feature in ds.features.items() if isinstance(feature, datasets.Image)]
    if len(images) != 1:
        what = "no image column" if not images else f"several image columns ({', '.join(images)})"
        raise UdfdError(f"{name}: {what}; name one with --image-column (columns: {', '.join(ds.column_names)})")
    return images[0]


def _image_bytes(item: Any, name: str) -> bytes:
    """The encoded bytes of one undecoded image cell ({"bytes", "path"}); b"" when it holds none (an error row)."""
    if isinstance(item, dict):
        if item.get("bytes"):
            return bytes(item["bytes"])
        if item.get("path"):
            try:
                return Path(item["path"]).read_bytes()
            except OSError as e:
                log.warning("%s: cannot read %s: %s", name, item["path"], e)
        return b""
    if isinstance(item, bytes | bytearray):
        return bytes(item)
    raise UdfdError(f"{name}: the image column holds {type(item).__name__}, not images")


def _source(path: Path, root: Path) -> str:
    rel = path.parent.relative_to(root).as_posix()
    return rel if rel != "." else "."

