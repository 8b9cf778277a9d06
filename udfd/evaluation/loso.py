"""Leave-one-source-out (LOSO) evaluation: fold definitions, held-out metrics and the ensemble's score files.

Why: on this data in-distribution validation does not predict how a detector does on a generator it has never
seen (issue 15), so models are selected by LOSO. A fold holds out a family of fake sources *and* a disjoint set of
real sources entirely (so neither the fakes nor their matching reals are seen in training); the model trained on
everything else scores them. The five folds below partition the 17 dev sources of ../shared/data/faces.

Score files (the contract other members of the ensemble rely on): `<scores_dir>/<member>/<fold>.csv` with columns
`path` (relative to the faces root, e.g. `real/lfw/x.jpg`), `label` (1 = fake), `source`, `split`, `fake_prob`.
Fold `loso_<name>`: rows of the held-out fold (split `heldout`) plus that run's own validation rows (split `val`),
all scored by the model trained without the fold. Fold `in_dist`: the in-distribution val and test rows
(splits `val`, `test`) scored by the final model. Only the two small CSV helpers at the end touch files.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCORE_COLUMNS = ("path", "label", "source", "split", "fake_prob")
IN_DIST = "in_dist"


@dataclass(frozen=True)
class Fold:
    """One held-out family: these fake sources against these real sources, both absent from training."""

    name: str
    fake_sources: tuple[str, ...]
    real_sources: tuple[str, ...]

    def holds(self, label: int, source: str) -> bool:
        return source in (self.fake_sources if label == 1 else self.real_sources)

    @property
    def file_name(self) -> str:
        return f"loso_{self.name}"


_DFDC = ("dfdc_faces", "dfdc_sample_crops", "dfdc_frames")
FOLDS: tuple[Fold, ...] = (
    Fold("dfdc", _DFDC, _DFDC),
    Fold("lfw_faceswap", ("lfw_faceswap",), ("lfw",)),
    Fold("generated_photos", ("generated_photos",), ("utkface",)),
    Fold("sdfd_sd21", ("sdfd_sd21",), ("fairface",)),
    Fold("stylegan", ("stylegan_ffhq_crops", "celebahq_gan_interfacegan", "tpdne_stylegan2"),
         ("ffhq_real", "celebahq_real")),
)


def get_fold(name: str) -> Fold:
    """A fold by name (`dfdc`, ...; a `loso_` prefix is accepted). Unknown names raise with the known ones."""
    key = name.removeprefix("loso_")
    for fold in FOLDS:
        if fold.name == key:
            return fold
    raise KeyError(f"unknown LOSO fold {name!r}; known: {[f.name for f in FOLDS]}")


def heldout_mask(labels: Sequence[int], sources: Sequence[str], fold: Fold) -> np.ndarray:
    """Boolean mask of the rows the fold holds out (train on `~mask`)."""
    return np.array([fold.holds(int(y), s) for y, s in zip(labels, sources, strict=True)], dtype=bool)


def cap_per_class(idx: Sequence[int], labels: Sequence[int], n: int, *, seed: int = 0) -> list[int]:
    """At most n rows of each label from idx (seeded, order kept; n = 0 keeps all). A reduced evaluation budget
    that stays the same rows for every model scored with the same seed, so their AUCs compare like for like."""
    if not n:
        return list(idx)
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for label in (0, 1):
        rows = [i for i in idx if int(labels[i]) == label]
        keep += rows if len(rows) <= n else [rows[j] for j in rng.choice(len(rows), n, replace=False)]
    return sorted(keep)


def fold_of(label: int, source: str) -> str | None:
    """The fold that holds out this (label, source), or None when no fold does."""
    return next((f.name for f in FOLDS if f.holds(int(label), source)), None)


@dataclass(frozen=True)
class FoldResult:
    fold: str
    n_real: int
    n_fake: int
    roc_auc: float | None


@dataclass(frozen=True)
class LosoSummary:
    """Per-fold held-out AUC, their mean (the selection criterion) and the AUC of all held-out rows pooled."""

    folds: tuple[FoldResult, ...]
    mean_auc: float | None
    pooled_auc: float | None

    def as_dict(self) -> dict[str, object]:
        return {"folds": {f.fold: {"n_real": f.n_real, "n_fake": f.n_fake, "roc_auc": f.roc_auc} for f in self.folds},
                "mean_auc": self.mean_auc, "pooled_auc": self.pooled_auc}


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else None


def loso_summary(heldout: dict[str, tuple[Sequence[int], Sequence[float]]]) -> LosoSummary:
    """From {fold name: (labels, fake_probs) of its held-out rows} -> per-fold AUC, mean over folds, pooled AUC."""
    results, ys, ps = [], [], []
    for name, (y, p) in heldout.items():
        y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
        results.append(FoldResult(name, int((y == 0).sum()), int((y == 1).sum()), _auc(y, p)))
        ys.append(y)
        ps.append(p)
    aucs = [r.roc_auc for r in results if r.roc_auc is not None]
    pooled = _auc(np.concatenate(ys), np.concatenate(ps)) if ys else None
    return LosoSummary(tuple(results), float(np.mean(aucs)) if aucs else None, pooled)


def summary_markdown(summaries: dict[str, LosoSummary]) -> str:
    """A table, one row per model, one column per fold, then mean and pooled AUC."""
    names = [f.name for f in FOLDS]
    head = "| model | " + " | ".join(names) + " | mean | pooled |\n|---|" + "---|" * (len(names) + 2)
    rows = []
    for model, s in summaries.items():
        by = {f.fold: f.roc_auc for f in s.folds}
        cells = [_fmt(by.get(n)) for n in names] + [_fmt(s.mean_auc), _fmt(s.pooled_auc)]
        rows.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join([head, *rows])


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


# -- score files (the only I/O here: two small CSV helpers so every member writes and reads them alike) --------------
@dataclass(frozen=True)
class ScoreRow:
    path: str
    label: int
    source: str
    split: str
    fake_prob: float


def score_file(scores_dir: Path, member: str, fold: str) -> Path:
    """`<scores_dir>/<member>/<fold>.csv`; fold is `in_dist` or `loso_<name>`."""
    return Path(scores_dir) / member / f"{fold}.csv"


def write_scores(path: Path, rows: Iterable[ScoreRow]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(SCORE_COLUMNS)
        for r in rows:
            w.writerow([r.path, int(r.label), r.source, r.split, f"{float(r.fake_prob):.6f}"])
    tmp.replace(path)
    return path


def read_scores(path: Path) -> list[ScoreRow]:
    with Path(path).open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != SCORE_COLUMNS:
            raise ValueError(f"{path}: expected columns {SCORE_COLUMNS}, got {reader.fieldnames}")
        return [ScoreRow(r["path"], int(r["label"]), r["source"], r["split"], float(r["fake_prob"])) for r in reader]


def member_summary(scores_dir: Path, member: str, *, like: str | None = None) -> LosoSummary:
    """LOSO summary of a member from its score files (the `heldout` rows of every `loso_<fold>.csv` present).

    `like`: only the held-out rows that member `like` scored too (a like-for-like comparison on the same faces).
    """
    heldout = {}
    for fold in FOLDS:
        path = score_file(scores_dir, member, fold.file_name)
        other = score_file(scores_dir, like, fold.file_name) if like else None
        if path.is_file() and (other is None or other.is_file()):
            keep = {r.path for r in read_scores(other) if r.split == "heldout"} if other else None
            rows = [r for r in read_scores(path) if r.split == "heldout" and (keep is None or r.path in keep)]
            heldout[fold.name] = ([r.label for r in rows], [r.fake_prob for r in rows])
    return loso_summary(heldout)
