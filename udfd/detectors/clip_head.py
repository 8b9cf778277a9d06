"""What the `clip` family puts on top of the frozen encoder: projection head, image+text fusion, SVM, Platt, PCA.

Pure compute. The SVM is scikit-learn's at training time, but a checkpoint stores only its arrays (support
vectors, dual coefficients, intercept, kernel and gamma) and the decision function is re-implemented here in
torch (float64), so loading a model never unpickles anything and the decision stays differentiable (Grad-CAM
reaches the vision tower through it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

VARIANTS = ("image", "sum", "product")
KERNELS = ("rbf", "linear")


class ProjectionHead(nn.Module):
    """embed_dim -> hidden -> out (512 -> 256 -> 128 by default), trained with the triplet loss."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.net(nn.functional.normalize(embedding.float(), dim=-1))


def fuse(image_proj: torch.Tensor, text_proj: torch.Tensor | None, variant: str) -> torch.Tensor:
    """The fused, L2-normalised projection: image only, image + text (sum) or image ⊙ text (product)."""
    if variant == "image":
        z = image_proj
    elif text_proj is None:
        raise ValueError(f"the {variant!r} variant needs a text embedding")
    elif variant == "sum":
        z = image_proj + text_proj
    elif variant == "product":
        z = image_proj * text_proj
    else:
        raise ValueError(f"unknown variant {variant!r}; known: {VARIANTS}")
    return nn.functional.normalize(z, dim=-1)


# -- SVM ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SVMParams:
    """A fitted binary SVM as plain arrays; decision > 0 means fake (scikit-learn's classes_ = [0, 1])."""

    kernel: str
    gamma: float
    support_vectors: np.ndarray  # (n_sv, d) float64
    dual_coef: np.ndarray  # (n_sv,) float64: y_i α_i
    intercept: float

    @classmethod
    def from_sklearn(cls, svc: Any) -> SVMParams:
        if svc.kernel not in KERNELS:
            raise ValueError(f"only {KERNELS} kernels are stored, got {svc.kernel!r}")
        if list(svc.classes_) != [0, 1]:
            raise ValueError(f"expected classes [0, 1] (real, fake), got {list(svc.classes_)}")
        return cls(kernel=str(svc.kernel), gamma=float(svc._gamma), intercept=float(svc.intercept_[0]),
                   support_vectors=np.asarray(svc.support_vectors_, np.float64).copy(),
                   dual_coef=np.asarray(svc.dual_coef_[0], np.float64).copy())

    @classmethod
    def random_linear(cls, dim: int) -> SVMParams:
        """An untrained decision: a random linear direction (like a freshly initialised classifier layer)."""
        w = torch.randn(1, dim, dtype=torch.float64).numpy() / math.sqrt(dim)
        return cls(kernel="linear", gamma=0.0, support_vectors=w * 4.0, dual_coef=np.ones(1), intercept=0.0)

    def meta(self) -> dict[str, Any]:
        return {"kernel": self.kernel, "gamma": self.gamma, "n_support": int(len(self.dual_coef)),
                "intercept": self.intercept}

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"svm.support_vectors": torch.from_numpy(np.ascontiguousarray(self.support_vectors, np.float64)),
                "svm.dual_coef": torch.from_numpy(np.ascontiguousarray(self.dual_coef, np.float64)),
                "svm.intercept": torch.tensor([self.intercept], dtype=torch.float64)}

    @classmethod
    def from_stored(cls, meta: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> SVMParams:
        if meta["kernel"] not in KERNELS:
            raise ValueError(f"unknown SVM kernel {meta['kernel']!r}")
        sv, coef = tensors["svm.support_vectors"].double().numpy(), tensors["svm.dual_coef"].double().numpy()
        if sv.ndim != 2 or coef.shape != (sv.shape[0],):
            raise ValueError(f"inconsistent SVM arrays: support vectors {sv.shape}, dual coefficients {coef.shape}")
        return cls(kernel=str(meta["kernel"]), gamma=float(meta["gamma"]), support_vectors=sv, dual_coef=coef,
                   intercept=float(tensors["svm.intercept"].double()[0]))


class SVMDecision(nn.Module):
    """f(z) = Σ_i y_i α_i K(sv_i, z) + b, K = exp(-γ‖sv_i - z‖²) (rbf) or ⟨sv_i, z⟩ (linear), in float64."""

    def __init__(self, params: SVMParams) -> None:
        super().__init__()
        self.kernel, self.gamma = params.kernel, float(params.gamma)
        self.register_buffer("support_vectors", torch.from_numpy(params.support_vectors.astype(np.float64)))
        self.register_buffer("dual_coef", torch.from_numpy(params.dual_coef.astype(np.float64)))
        self.register_buffer("intercept", torch.tensor(float(params.intercept), dtype=torch.float64))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z.double()
        sv = self.support_vectors
        if self.kernel == "linear":
            k = z @ sv.T
        else:
            sq = (z * z).sum(1, keepdim=True) + (sv * sv).sum(1)[None, :] - 2.0 * (z @ sv.T)
            k = torch.exp(-self.gamma * sq.clamp_min(0.0))
        return k @ self.dual_coef + self.intercept

    def params(self) -> SVMParams:
        return SVMParams(kernel=self.kernel, gamma=self.gamma, support_vectors=self.support_vectors.numpy().copy(),
                         dual_coef=self.dual_coef.numpy().copy(), intercept=float(self.intercept))


# -- Platt scaling ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Platt:
    """P(fake | f) = 1 / (1 + exp(a·f + b)) (Platt 1999; a < 0 when a larger decision means more fake)."""

    a: float = -1.0
    b: float = 0.0

    def logit(self, decision: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """log-odds of fake: -(a·f + b)."""
        return -(self.a * decision + self.b)


def fit_platt(decision: Sequence[float], labels: Sequence[int]) -> Platt:
    """Platt's fit with his smoothed targets ((N₊+1)/(N₊+2), 1/(N₋+2)), which keeps it finite when separable."""
    from scipy.optimize import minimize

    f = np.asarray(decision, dtype=float)
    y = np.asarray(labels, dtype=int)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if not n_pos or not n_neg:
        raise ValueError("Platt scaling needs both classes")
    t = np.where(y == 1, (n_pos + 1.0) / (n_pos + 2.0), 1.0 / (n_neg + 2.0))

    def nll(p: np.ndarray) -> tuple[float, np.ndarray]:
        z = -(p[0] * f + p[1])  # log-odds of fake
        loss = np.logaddexp(0.0, z) - t * z
        g = 0.5 * (1.0 + np.tanh(0.5 * z)) - t  # d loss / d z
        return float(loss.sum()), np.array([float(-(g * f).sum()), float(-g.sum())])

    prior = math.log((n_neg + 1.0) / (n_pos + 1.0))
    res = minimize(nll, x0=np.array([0.0, prior]), jac=True, method="L-BFGS-B")
    return Platt(a=float(res.x[0]), b=float(res.x[1]))


# -- PCA ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PCAParams:
    """PCA of the training projections, kept with the checkpoint to place new faces in the same 2-D plot."""

    mean: np.ndarray  # (d,)
    components: np.ndarray  # (k, d)
    explained_variance_ratio: np.ndarray  # (k,)

    @classmethod
    def fit(cls, x: np.ndarray) -> PCAParams:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=min(x.shape), svd_solver="full").fit(np.asarray(x, np.float64))
        return cls(mean=pca.mean_.astype(np.float64), components=pca.components_.astype(np.float64),
                   explained_variance_ratio=pca.explained_variance_ratio_.astype(np.float64))

    def transform(self, x: np.ndarray, k: int = 2) -> np.ndarray:
        return (np.asarray(x, np.float64) - self.mean) @ self.components[:k].T

    def tensors(self) -> dict[str, torch.Tensor]:
        arrays = {"pca.mean": self.mean, "pca.components": self.components,
                  "pca.explained_variance_ratio": self.explained_variance_ratio}
        return {k: torch.from_numpy(np.ascontiguousarray(v, np.float64)) for k, v in arrays.items()}

    @classmethod
    def from_stored(cls, tensors: Mapping[str, torch.Tensor]) -> PCAParams | None:
        if "pca.components" not in tensors:
            return None
        return cls(mean=tensors["pca.mean"].double().numpy(), components=tensors["pca.components"].double().numpy(),
                   explained_variance_ratio=tensors["pca.explained_variance_ratio"].double().numpy())
