"""Stacking for the ensemble family: combine members' log-odds, judged by leave-one-source-out. Pure numpy.

Rules compared (training/fit_ensemble.py picks the best by mean LOSO AUC):
- `mean`: equal weights on standardised log-odds (no fitting beyond mean / std).
- `val`: logistic regression on each fold's own validation rows (in-distribution for that fold's models).
- `nested`: logistic regression on the *held-out* rows of the other folds, where every member's scores are
  unseen-source scores; fold F's own rows are never used to fit the weights that score fold F.
- `nested_pos`: as `nested`, with non-negative weights (a member whose weight comes out negative is dropped and the
  rest refitted): no member is used upside down, however well its inversion fits the other folds.
- `lse` (only with `terms`): a soft maximum, the way a kinds model combines its heads. Every member's log-odds are
  standardised on the validation *reals*; each term is the mean of its members' standardised log-odds, standardised
  again on those reals; s = log-sum-exp over the terms. A face is as fake as its most fake-looking term says, in
  standard deviations above a real face, so a specialist that is wrong on other kinds of fake (a face-swap member
  on GAN faces) can only raise a score, never drown out the term that knows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from udfd.detectors.ensemble_terms import term_matrix

EPS = 1e-6


def log_odds(prob: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(prob, dtype=np.float64), EPS, 1 - EPS)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class Stack:
    """z = (d - mu) / sd; s = z . weights + bias; fake_prob = sigmoid(s).

    With `terms` (rule `lse`): t_j = (mean of z over term j's members - term_mu_j) / term_sd_j and
    s = logsumexp_j(t_j) + bias; `weights` are then unused (kept at 1 / K)."""

    mu: tuple[float, ...]
    sd: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    rule: str
    terms: tuple[tuple[int, ...], ...] | None = None
    term_mu: tuple[float, ...] | None = None
    term_sd: tuple[float, ...] | None = None

    def score(self, d: np.ndarray) -> np.ndarray:
        z = (np.asarray(d, dtype=np.float64) - np.asarray(self.mu)) / np.asarray(self.sd)
        if self.terms is None:
            return z @ np.asarray(self.weights) + self.bias
        t = (z @ term_matrix(self.terms, len(self.mu)) - np.asarray(self.term_mu)) / np.asarray(self.term_sd)
        return np.logaddexp.reduce(t, axis=1) + self.bias

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"mu": list(self.mu), "sd": list(self.sd), "weights": list(self.weights),
                                  "bias": self.bias, "rule": self.rule}
        if self.terms is not None:
            out |= {"terms": [list(t) for t in self.terms], "term_mu": list(self.term_mu or ()),
                    "term_sd": list(self.term_sd or ())}
        return out


def fit_lse(d: np.ndarray, y: np.ndarray, terms: Sequence[Sequence[int]]) -> Stack:
    """The `lse` stack: members and terms standardised on the real rows of (d, y) (pure; no weights to fit)."""
    d = np.asarray(d, dtype=np.float64)
    reals = d[np.asarray(y, dtype=int) == 0]
    if len(reals) < 2:
        raise ValueError("the lse rule standardises on real faces: the validation rows need at least two")
    mu, sd = standardiser(reals)
    t = ((reals - mu) / sd) @ term_matrix(terms, d.shape[1])
    tmu, tsd = standardiser(t)
    k = d.shape[1]
    stack = Stack(tuple(map(float, mu)), tuple(map(float, sd)), (1.0 / k,) * k, 0.0, "lse",
                  tuple(tuple(int(i) for i in term) for term in terms), tuple(map(float, tmu)), tuple(map(float, tsd)))
    return replace(stack, bias=lse_offset(stack.score(d), y))


def lse_offset(s: np.ndarray, y: np.ndarray) -> float:
    """The bias that puts a soft maximum's decision point where the rows (s, y) put it (pure). A log-sum-exp is never
    below its largest term, so it is positive for most real faces; a temperature alone (s / T) cannot move the 0.5
    point there. b / a of a 1-D logistic fit (a > 0), else minus the reals' mean."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(y, dtype=int)
    if len(np.unique(y)) == 2:
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(np.asarray(s).reshape(-1, 1), y)
        a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        if a > 1e-6:
            return b / a
    return -float(np.mean(np.asarray(s)[y == 0]))


def standardiser(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = d.mean(axis=0)
    sd = d.std(axis=0)
    return mu, np.where(sd > 1e-6, sd, 1.0)


def fit_stack(d: np.ndarray, y: np.ndarray, *, rule: str, c: float = 1.0,
              scale: tuple[np.ndarray, np.ndarray] | None = None) -> Stack:
    """Fit a Stack on (N, K) member log-odds `d` and labels `y` (1 = fake). `scale` overrides mu / sd."""
    d = np.asarray(d, dtype=np.float64)
    y = np.asarray(y, dtype=int)
    mu, sd = scale if scale is not None else standardiser(d)
    k = d.shape[1]
    if rule == "mean" or len(np.unique(y)) < 2:
        return Stack(tuple(map(float, mu)), tuple(map(float, sd)), (1.0 / k,) * k, 0.0, "mean")
    from sklearn.linear_model import LogisticRegression

    z = (d - mu) / sd
    keep = np.ones(k, dtype=bool)
    while True:
        lr = LogisticRegression(C=c, class_weight="balanced", max_iter=1000).fit(z[:, keep], y)
        weights = np.zeros(k)
        weights[keep] = lr.coef_[0]
        if not rule.endswith("_pos") or (weights[keep] >= 0).all() or keep.sum() == 1:
            break
        keep &= weights > 0  # drop the members used upside down, refit the rest
        if not keep.any():
            return Stack(tuple(map(float, mu)), tuple(map(float, sd)), (1.0 / k,) * k, 0.0, f"{rule}:mean")
    return Stack(tuple(map(float, mu)), tuple(map(float, sd)), tuple(float(w) for w in weights),
                 float(lr.intercept_[0]), rule)


def auc(y: Sequence[int], s: Sequence[float]) -> float | None:
    y = np.asarray(y, dtype=int)
    if len(np.unique(y)) < 2:
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, np.asarray(s, dtype=np.float64)))


@dataclass(frozen=True)
class FoldData:
    """One LOSO fold: member log-odds on its validation rows and on its held-out rows."""

    name: str
    d_val: np.ndarray
    y_val: np.ndarray
    d_heldout: np.ndarray
    y_heldout: np.ndarray


def loso_table(folds: Sequence[FoldData], members: Sequence[str], *,
               rules: Sequence[str] = ("mean", "val", "nested", "nested_pos"),
               terms: Sequence[Sequence[int]] | None = None) -> dict[str, dict[str, float | None]]:
    """AUC on each fold's held-out rows: every member alone and every combination rule. {column: {fold: auc}}.
    `lse` among the rules needs `terms`, and is fitted on each fold's own validation rows."""
    scores = heldout_scores(folds, members, rules=rules, terms=terms)
    return {col: {f.name: auc(f.y_heldout, s) for f, s in zip(folds, per_fold, strict=True)}
            for col, per_fold in scores.items()}


def loso_pooled(folds: Sequence[FoldData], members: Sequence[str], *,
                rules: Sequence[str] = ("mean", "val", "nested", "nested_pos"),
                terms: Sequence[Sequence[int]] | None = None) -> dict[str, float | None]:
    """The AUC of every fold's held-out rows together, each scored by its own fold's model: {column: auc}. Unlike
    the mean over folds it also asks that one threshold fit every held-out source (calibration across sources)."""
    y = np.concatenate([f.y_heldout for f in folds])
    return {col: auc(y, np.concatenate(per_fold))
            for col, per_fold in heldout_scores(folds, members, rules=rules, terms=terms).items()}


def heldout_scores(folds: Sequence[FoldData], members: Sequence[str], *,
                   rules: Sequence[str] = ("mean", "val", "nested", "nested_pos"),
                   terms: Sequence[Sequence[int]] | None = None) -> dict[str, list[np.ndarray]]:
    """Each column's scores of each fold's held-out rows (members' log-odds; each rule fitted without the fold)."""
    out: dict[str, list[np.ndarray]] = {m: [f.d_heldout[:, j] for f in folds] for j, m in enumerate(members)}
    for rule in rules:
        out[f"ensemble:{rule}"] = [_rule_stack(f, folds, rule, terms).score(f.d_heldout) for f in folds]
    return out


def _rule_stack(f: FoldData, folds: Sequence[FoldData], rule: str, terms: Sequence[Sequence[int]] | None) -> Stack:
    if rule.startswith("nested"):
        others = [g for g in folds if g is not f]
        return fit_stack(np.concatenate([g.d_heldout for g in others]),
                         np.concatenate([g.y_heldout for g in others]), rule=rule)
    if rule == "val":
        return fit_stack(f.d_val, f.y_val, rule="val")
    if rule == "lse":
        if terms is None:
            raise ValueError("the lse rule needs terms")
        return fit_lse(f.d_val, f.y_val, terms)
    return fit_stack(f.d_val if len(f.d_val) else f.d_heldout, f.y_val, rule="mean")


def mean_of(column: Mapping[str, float | None]) -> float | None:
    vals = [v for v in column.values() if v is not None]
    return float(np.mean(vals)) if vals else None
