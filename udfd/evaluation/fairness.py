"""Demographic annotations, distribution reports, balancing and per-group metrics.

Annotations are a CSV keyed by image sha256 (`ANNOTATION_FIELDS`). They come from one of three places:

- `manifest`: a `manifest.csv` beside or above the data whose `note` column says `group=<gender>/<ethnicity>`
  (the `generated_photos` faces of ../shared/data come from gender × ethnicity folders of their source repo);
- `metadata`: a CSV or JSON Lines file the user provides, one row per image with `file` (path relative to the
  data folder) or `sha256`, plus `gender` and `ethnicity`;
- `deepface`: DeepFace's gender and race models (optional extra, `pip install -r requirements-fairness.txt`;
  its weights download on first use, so offline it cannot annotate and says so).

Ethnicities use DeepFace's six groups (`ETHNICITIES`); other spellings are mapped onto them. The pure parts
(`balance_plan`, `distribution`, `group_metrics`) take lists and return dicts; reading and writing files happens
in `annotate` / `read_annotations` / `write_annotations` only.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from udfd.errors import UdfdError
from udfd.media import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

ETHNICITIES = ("white", "asian", "black", "latino hispanic", "indian", "middle eastern")
GENDERS = ("female", "male")
ANNOTATION_FIELDS = ("sha256", "file", "gender", "ethnicity", "method")
UNKNOWN = "unknown"
_ALIASES = {"latino": "latino hispanic", "hispanic": "latino hispanic", "latino_hispanic": "latino hispanic",
            "middle_eastern": "middle eastern", "caucasian": "white", "woman": "female", "man": "male",
            "f": "female", "m": "male"}
# Non-distorting geometric transforms only: no colour, no scale (the report's rule for balancing).
GEOMETRIC = ("hflip", "vflip", "rot90", "rot180", "rot270")


@dataclass(frozen=True)
class Annotation:
    sha256: str
    file: str
    gender: str
    ethnicity: str
    method: str


def normalise(value: str | None, allowed: Sequence[str]) -> str:
    """Map a label onto `allowed` (case, underscores and common aliases); anything else is "unknown"."""
    v = re.sub(r"\s+", " ", str(value or "").strip().lower().replace("_", " "))
    v = _ALIASES.get(v, _ALIASES.get(v.replace(" ", "_"), v))
    return v if v in allowed else UNKNOWN


# -- edge: reading and writing annotations --------------------------------------------------------------------
def image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_annotations(path: Path) -> dict[str, Annotation]:
    """sha256 -> Annotation from an annotations CSV written by `write_annotations`."""
    try:
        with Path(path).open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise UdfdError(f"cannot read annotations {path}: {e}") from e
    if rows and not {"sha256", "gender", "ethnicity"} <= set(rows[0]):
        raise UdfdError(f"{path}: expected columns {', '.join(ANNOTATION_FIELDS)}")
    return {r["sha256"]: Annotation(r["sha256"], r.get("file", ""), normalise(r["gender"], GENDERS),
                                    normalise(r["ethnicity"], ETHNICITIES), r.get("method", "")) for r in rows}


def write_annotations(path: Path, annotations: Iterable[Annotation]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=ANNOTATION_FIELDS)
        writer.writeheader()
        for a in sorted(annotations, key=lambda a: a.file):
            writer.writerow({k: getattr(a, k) for k in ANNOTATION_FIELDS})
    tmp.replace(path)


def annotate(root: Path, *, method: str, out: Path, metadata: Path | None = None) -> dict[str, Annotation]:
    """Annotate every image under `root` (cached: images already in `out` are not redone) and write `out`."""
    cached = read_annotations(out) if out.is_file() else {}
    files = image_files(root)
    if not files:
        raise UdfdError(f"no images under {root}")
    todo = []
    result = dict(cached)
    for path in files:
        digest = sha256_file(path)
        if digest not in cached:
            todo.append((path, digest))
    if method == "manifest":
        groups = manifest_groups(root)
        if not groups:
            raise UdfdError(f"no manifest.csv with group=<gender>/<ethnicity> notes beside or above {root}")
        for path, digest in todo:
            rel = path.relative_to(root).as_posix()
            if rel in groups:
                gender, ethnicity = groups[rel]
                result[digest] = Annotation(digest, rel, gender, ethnicity, "manifest")
    elif method == "metadata":
        if metadata is None:
            raise UdfdError("--metadata FILE is needed for method 'metadata'")
        by_file, by_sha = read_metadata(metadata)
        for path, digest in todo:
            rel = path.relative_to(root).as_posix()
            row = by_sha.get(digest) or by_file.get(rel)
            if row:
                result[digest] = Annotation(digest, rel, row[0], row[1], "metadata")
    elif method == "deepface":
        result |= _deepface(root, todo)
    else:
        raise UdfdError(f"unknown annotation method {method!r}: manifest, metadata or deepface")
    write_annotations(out, result.values())
    log.info("%d of %d images annotated (%d new) -> %s", len(result), len(files), len(result) - len(cached), out)
    return result


def manifest_groups(root: Path) -> dict[str, tuple[str, str]]:
    """file relative to root -> (gender, ethnicity) from `group=<gender>/<ethnicity>` notes in manifest.csv."""
    for manifest in (root / "manifest.csv", root.parent / "manifest.csv", root.parent.parent / "manifest.csv"):
        if not manifest.is_file():
            continue
        prefix = root.resolve().relative_to(manifest.parent.resolve()).as_posix()
        out = {}
        with manifest.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                found = note_groups(row.get("note", ""))
                if found and (prefix == "." or row["file"].startswith(prefix + "/")):
                    rel = row["file"] if prefix == "." else row["file"].removeprefix(prefix + "/")
                    out[rel] = found
        return out
    return {}


def note_groups(note: str) -> tuple[str, str] | None:
    """(gender, ethnicity) from a manifest note: `group=<gender>/<ethnicity>` (generated photos), or the dataset
    labels `gender=...;race=...` (UTKFace) / `gender=...` alone (FairFace here: ethnicity "unknown"). Pure."""
    m = re.search(r"group=([^/;]+)/([^/;]+)", note)
    if m:
        return normalise(m.group(1), GENDERS), normalise(m.group(2), ETHNICITIES)
    fields = dict(kv.split("=", 1) for kv in note.split(";") if "=" in kv)
    if "gender" not in fields:
        return None
    return normalise(fields["gender"], GENDERS), normalise(fields.get("race"), ETHNICITIES)


def read_metadata(path: Path) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    """A user's CSV or JSON Lines: rows with `file` or `sha256`, `gender`, `ethnicity` -> (by file, by sha256)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise UdfdError(f"cannot read metadata {path}: {e}") from e
    if Path(path).suffix.lower() in (".jsonl", ".json"):
        try:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        except ValueError as e:
            raise UdfdError(f"{path}: not JSON Lines ({e})") from e
    else:
        rows = list(csv.DictReader(text.splitlines()))
    by_file, by_sha = {}, {}
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not (row.get("file") or row.get("sha256")):
            raise UdfdError(f"{path}: row {i + 1} needs `file` or `sha256`, plus `gender` and `ethnicity`")
        value = (normalise(row.get("gender"), GENDERS), normalise(row.get("ethnicity"), ETHNICITIES))
        if row.get("file"):
            by_file[str(row["file"])] = value
        if row.get("sha256"):
            by_sha[str(row["sha256"])] = value
    return by_file, by_sha


def _deepface(root: Path, todo: list[tuple[Path, str]]) -> dict[str, Annotation]:
    try:
        from deepface import DeepFace
    except ImportError as e:
        raise UdfdError("DeepFace is not installed: pip install -r requirements-fairness.txt (its models download"
                        " on first use and need network); offline, use --method manifest or --metadata") from e
    out = {}
    for path, digest in todo:
        try:
            res = DeepFace.analyze(str(path), actions=["gender", "race"], enforce_detection=False, silent=True)
        except (OSError, ValueError) as e:  # weights download failed (offline) or the file is unreadable
            raise UdfdError(f"DeepFace could not annotate {path.name}: {e}. Its weights download on first use "
                            "and need network; offline, use --method manifest or --metadata") from e
        r = res[0] if isinstance(res, list) else res
        out[digest] = Annotation(digest, path.relative_to(root).as_posix(),
                                 normalise(r.get("dominant_gender"), GENDERS),
                                 normalise(r.get("dominant_race"), ETHNICITIES), "deepface")
    return out


# -- pure ------------------------------------------------------------------------------------------------------
def distribution(labels: Sequence[int], genders: Sequence[str], ethnicities: Sequence[str]) -> dict[str, Any]:
    """Counts and shares by gender, ethnicity and gender × ethnicity, per class (real/fake) and overall."""
    out: dict[str, Any] = {}
    classes = {"real": 0, "fake": 1, "all": None}
    for name, keys in (("gender", genders), ("ethnicity", ethnicities),
                       ("gender_x_ethnicity", [f"{g}/{e}" for g, e in zip(genders, ethnicities, strict=True)])):
        table = {}
        for cls, value in classes.items():
            picked = [k for k, y in zip(keys, labels, strict=True) if value is None or y == value]
            counts = Counter(picked)
            total = len(picked)
            table[cls] = {k: {"n": n, "share": round(n / total, 4) if total else 0.0}
                          for k, n in sorted(counts.items())}
        out[name] = table
    return out


def balance_plan(ethnicities: Sequence[str], labels: Sequence[int], *, min_share: float = 0.2, seed: int = 0,
                 max_copies: int = len(GEOMETRIC)) -> list[tuple[int, str]]:
    """Which samples to use, each with a transform ("none" or one of `GEOMETRIC`), so that

    1. every known ethnicity holds at least `min_share` of the annotated samples where the data allows
       (under-represented groups get geometric copies, at most `max_copies` per image; over-represented groups
       are undersampled when copies are not enough), then
    2. real and fake are equal (the larger class is undersampled, stratified by ethnicity).

    Unannotated ("unknown") samples are kept as they are and do not count towards the shares.
    """
    rng = np.random.default_rng(seed)
    idx_by_group: dict[str, list[int]] = {}
    for i, e in enumerate(ethnicities):
        idx_by_group.setdefault(e, []).append(i)
    known = sorted(g for g in idx_by_group if g != UNKNOWN)
    if len(known) * min_share > 1 + 1e-9:
        raise UdfdError(f"{len(known)} groups cannot each hold {min_share:.0%}")
    have = {g: len(idx_by_group[g]) for g in known}
    cap = {g: have[g] * (1 + max_copies) for g in known}
    target = dict(have)
    for _ in range(10 * sum(cap.values()) + 10):  # greedy: grow the neediest group, else shrink the largest
        total = sum(target.values())
        short = [g for g in known if target[g] < min_share * total - 1e-9]
        if not short:
            break
        g = min(short, key=lambda k: target[k] / total)
        if target[g] < cap[g]:
            target[g] += 1
        else:
            biggest = max(known, key=lambda k: target[k])
            if target[biggest] <= target[g]:
                break  # cannot do better: every group is at its limit
            target[biggest] -= 1
    plan: list[tuple[int, str]] = [(i, "none") for i in idx_by_group.get(UNKNOWN, [])]
    for g in known:
        plan += _group_plan(idx_by_group[g], target[g], rng)
    return _equalise_classes(plan, labels, ethnicities, rng)


def _group_plan(members: list[int], n: int, rng: np.random.Generator) -> list[tuple[int, str]]:
    if n <= len(members):
        return [(int(i), "none") for i in sorted(rng.choice(members, n, replace=False))]
    out = [(i, "none") for i in members]
    extra = n - len(members)
    order = rng.permutation(members)
    for k in range(extra):  # copies cycle over the images first, then over the transforms
        out.append((int(order[k % len(order)]), GEOMETRIC[(k // len(order)) % len(GEOMETRIC)]))
    return out


def _equalise_classes(plan: list[tuple[int, str]], labels: Sequence[int], ethnicities: Sequence[str],
                      rng: np.random.Generator) -> list[tuple[int, str]]:
    by_class = {0: [p for p in plan if labels[p[0]] == 0], 1: [p for p in plan if labels[p[0]] == 1]}
    small = min(len(v) for v in by_class.values())
    if small == 0:  # one class only (e.g. an annotated set of fakes): nothing to equalise against
        log.warning("balancing: only one class present, real/fake equalisation skipped")
        return sorted(plan)
    out = []
    for items in by_class.values():
        if len(items) == small:
            out += items
            continue
        strata: dict[str, list[tuple[int, str]]] = {}
        for p in items:
            strata.setdefault(ethnicities[p[0]], []).append(p)
        quotas = _largest_remainder({k: len(v) for k, v in strata.items()}, small)
        for k, members in strata.items():
            pick = rng.choice(len(members), quotas[k], replace=False)
            out += [members[j] for j in sorted(pick)]
    return sorted(out)


def _largest_remainder(sizes: dict[str, int], total: int) -> dict[str, int]:
    whole = sum(sizes.values())
    raw = {k: total * v / whole for k, v in sizes.items()}
    quotas = {k: math.floor(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - quotas[k], reverse=True)[: total - sum(quotas.values())]:
        quotas[k] += 1
    return quotas


def apply_transform(img: np.ndarray, transform: str) -> np.ndarray:
    """A geometric copy of `img` (no colour or scale change). Pure."""
    ops = {"none": lambda x: x, "hflip": lambda x: x[:, ::-1], "vflip": lambda x: x[::-1],
           "rot90": lambda x: np.rot90(x, 1), "rot180": lambda x: np.rot90(x, 2), "rot270": lambda x: np.rot90(x, 3)}
    if transform not in ops:
        raise ValueError(f"unknown transform {transform!r}")
    return np.ascontiguousarray(ops[transform](img))


def group_metrics(labels: Sequence[int], fake_prob: Sequence[float], groups: Sequence[str], *,
                  threshold: float) -> dict[str, Any]:
    """Accuracy, F1, FPR, FNR and confusion counts per group, and the largest gaps between groups."""
    y = np.asarray(labels, int)
    pred = (np.asarray(fake_prob, float) >= threshold).astype(int)
    g = np.asarray(groups)
    rows = {}
    for name in sorted(set(groups)):
        m = g == name
        tp = int(((pred == 1) & (y == 1) & m).sum())
        tn = int(((pred == 0) & (y == 0) & m).sum())
        fp = int(((pred == 1) & (y == 0) & m).sum())
        fn = int(((pred == 0) & (y == 1) & m).sum())
        n = int(m.sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        rows[name] = {"n": n, "n_real": tn + fp, "n_fake": tp + fn, "accuracy": (tp + tn) / n if n else None,
                      "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
                      "fpr": fp / (fp + tn) if fp + tn else None, "fnr": fn / (fn + tp) if fn + tp else None,
                      "confusion": {"tp": tp, "tn": tn, "fp": fp, "fn": fn}}
    gaps = {}
    for key in ("accuracy", "fpr", "fnr"):
        values = {k: r[key] for k, r in rows.items() if r[key] is not None and k != UNKNOWN}
        if len(values) >= 2:
            hi, lo = max(values, key=values.get), min(values, key=values.get)
            gaps[key] = {"gap": values[hi] - values[lo], "highest": hi, "lowest": lo}
        else:
            gaps[key] = None
    return {"groups": rows, "largest_gaps": gaps}


# -- evaluate --groups ---------------------------------------------------------------------------------------
def per_group_report(files: list[Path], labels: list[int], probs: list[float], annotations: dict[str, Annotation],
                     *, threshold: float) -> dict[str, Any]:
    """group_metrics for gender, ethnicity and gender × ethnicity (images without annotation: "unknown")."""
    found = [annotations.get(sha256_file(f)) for f in files]
    attrs = {"gender": [a.gender if a else "unknown" for a in found],
             "ethnicity": [a.ethnicity if a else "unknown" for a in found]}
    attrs["gender_x_ethnicity"] = [f"{g}/{e}" if "unknown" not in (g, e) else "unknown"
                                   for g, e in zip(attrs["gender"], attrs["ethnicity"], strict=True)]
    report = {attr: group_metrics(labels, probs, values, threshold=threshold) for attr, values in attrs.items()}
    report["annotated"] = sum(a is not None for a in found)
    return report
