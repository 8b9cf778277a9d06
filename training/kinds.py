"""One logistic head per kind of fake (face swap, GAN, diffusion), combined by log-sum-exp: `--fake-kinds`.

`training/loso_frozen.py --fake-kinds training/configs/fake_kinds.json` fits, per fold, one head per kind of fake
on the frozen features: that kind's train fakes against *all* train reals (the same `fit_head`, its L2 strength
chosen by validation log loss on the same rows). Each head's logit is standardised by its mean and deviation on the
validation reals, so that the kinds' scores are on one scale, and the face's fake logit is their log-sum-exp (a
soft maximum): a face is as fake as its most fake-looking kind says; a Platt scaling fitted on the validation rows
puts that on the log-odds scale. A kind with fewer than `min_fakes` train
fakes (the one a leave-one-source-out fold holds out entirely, e.g. diffusion in the sdfd_sd21 fold) gets no head.
Fakes of the kind `ANY` ("*": a visitor's "this is fake" flag says no more than that; `training/retrain.py` files
the flags' source under it) are fakes for every head.
The product reads the result as `arch.fake_kinds` (`udfd.detectors.timm_classifier.KindsHead`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.loso_frozen import fit_head

ANY = "*"  # a fake of no known kind: a fake for every kind's head


@dataclass(frozen=True)
class KindsFit:
    kinds: tuple[str, ...]
    weight: np.ndarray  # (K, d): each kind's standardised logit is x @ weight[k] + bias[k]
    bias: np.ndarray  # (K,)
    c: dict[str, float]  # each kind's L2 strength
    platt: tuple[float, float] = (1.0, 0.0)  # (scale, offset) of the log-sum-exp, fitted on the validation rows

    def kind_logits(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weight.T + self.bias

    def logit(self, x: np.ndarray, kinds: tuple[str, ...] | None = None) -> np.ndarray:
        """The fake logit: Platt-scaled log-sum-exp of the kinds' standardised logits (pure; what `KindsHead` computes).
        `kinds`: of those kinds only (what `udfd.detectors.kinds_view.KindsView` computes), the same Platt scaling."""
        return self.platt[0] * self.lse(x, kinds) + self.platt[1]

    def lse(self, x: np.ndarray, kinds: tuple[str, ...] | None = None) -> np.ndarray:
        z = self.kind_logits(x)
        if kinds is not None:
            missing = sorted(set(kinds) - set(self.kinds))
            if missing:
                raise ValueError(f"no head for kind(s) {missing}: this fit has {list(self.kinds)}")
            z = z[:, [self.kinds.index(k) for k in kinds]]
        return np.logaddexp.reduce(z, axis=1)


def read_kinds(path: Path) -> dict[str, list[str]]:
    """{kind: [fake sources]} as the JSON file holds it, without its comment keys (those starting with "_")."""
    spec = json.loads(Path(path).read_text(encoding="utf-8"))
    return {k: list(v) for k, v in spec.items() if not k.startswith("_")}


def load_kinds(path: Path) -> dict[str, str]:
    """{fake source: kind} from a JSON file {kind: [sources]} (keys starting with "_" are comments)."""
    out: dict[str, str] = {}
    for kind, sources in read_kinds(path).items():
        for src in sources:
            if src in out:
                raise ValueError(f"{path}: source {src!r} is listed under both {out[src]!r} and {kind!r}")
            out[src] = kind
    return out


def row_kinds(labels: np.ndarray, sources: list[str], kinds: dict[str, str]) -> np.ndarray:
    """Each row's kind of fake ("" for a real face); a fake source with no kind is refused by name (pure)."""
    missing = sorted({s for s, y in zip(sources, labels, strict=True) if y == 1 and s not in kinds})
    if missing:
        raise ValueError(f"no kind of fake is given for the fake source(s) {missing}; add them to the kinds file")
    return np.array([kinds[s] if y == 1 else "" for s, y in zip(sources, labels, strict=True)], dtype=object)


def fit_kinds(x: np.ndarray, y: np.ndarray, kind: np.ndarray, train: list[int], val: list[int],
              weights: np.ndarray | None = None, *, min_fakes: int = 30) -> KindsFit:
    """One head per kind with at least `min_fakes` train fakes, standardised on the validation reals (pure)."""
    train_a, val_a = np.asarray(train), np.asarray(val)
    val_reals = val_a[y[val_a] == 0]
    if not len(val_reals):
        raise ValueError("the validation rows hold no real face: the kinds' scores cannot be standardised")
    names, ws, bs, cs = [], [], [], {}
    for k in sorted({str(v) for v in kind[train_a] if v and v != ANY}):
        rows_t = train_a[(y[train_a] == 0) | (kind[train_a] == k) | (kind[train_a] == ANY)]
        rows_v = val_a[(y[val_a] == 0) | (kind[val_a] == k) | (kind[val_a] == ANY)]
        if (kind[rows_t] == k).sum() < min_fakes:
            continue
        w, b, c = fit_head(x, y, list(rows_t), list(rows_v), weights)
        ref = x[val_reals] @ w + b
        m, s = float(ref.mean()), float(ref.std()) + 1e-6
        names.append(k)
        ws.append(w / s)
        bs.append((b - m) / s)
        cs[k] = c
    if not names:
        raise ValueError(f"no kind of fake has {min_fakes} or more train fakes")
    fit = KindsFit(tuple(names), np.stack(ws), np.array(bs), cs)
    return KindsFit(fit.kinds, fit.weight, fit.bias, cs, platt_scaling(fit.lse(x[val_a]), y[val_a]))


def platt_scaling(score: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) with sigmoid(a * score + b) calibrated on these rows (pure); a must come out positive."""
    from sklearn.linear_model import LogisticRegression

    if len(set(y.tolist())) < 2:
        raise ValueError("Platt scaling needs validation rows of both classes")
    clf = LogisticRegression(C=1e6, max_iter=1000).fit(score[:, None], y)
    a, b = float(clf.coef_[0, 0]), float(clf.intercept_[0])
    if a <= 0:
        raise ValueError("the kinds' combined score does not rank the validation fakes above the reals")
    return a, b
