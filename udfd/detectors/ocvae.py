"""One-class ResNet-18-style VAE family (`ocvae`), as in the VAE thesis (ResNetOCVAE2 after OC-FakeDect).

A symmetric VAE (residual encoder, mirrored upsampling decoder) is trained on **real faces only**
(`training/train_ocvae.py`); a face it reconstructs badly is an anomaly, i.e. probably fake.

Anomaly score (deterministic at inference: the decoder reads μ, nothing is sampled):
- `score: "pixel"` (OC-FakeDect1): RMSE between the input x and its reconstruction x̂, over channels and pixels,
  in model-input units ([0, 1] for the default `pixel_range: "unit"`);
- `score: "latent"` (OC-FakeDect2): x̂ goes through the encoder again; RMSE between μ(x) and μ(x̂).

How a raw score becomes the Detector protocol's numbers:
- calibration: `fake_prob = sigmoid((a·score + b) / temperature)` with slope a > 0 and intercept b fitted by
  logistic regression on the validation split (both classes). `logits()` returns the two-class logits
  (0, a·score + b), so the shared `scores_from_logits` applies the temperature exactly as for the other
  families (temperature stays 1 after training: the logistic fit already calibrates). Because a > 0 the
  mapping is strictly increasing, so a threshold on the score and one on fake_prob make the same decisions.
- thresholds: config.json `udfd.thresholds` holds the thesis' two rules, each as a raw `score` and as the
  `fake_prob` it maps to: `percentile_80` (80th percentile of training-real scores) and `val_f1` (max F1 on
  validation). `udfd.threshold_rule` names the one in use (`val_f1` by default); `threshold`, like in every
  family, is on fake_prob.
- explanation: there is no CAM target (`explain_target()` is None); `error_map()` gives the per-pixel
  reconstruction error, `reconstruct()` the reconstruction, and `fft_error_spectrum()` the centred
  log-amplitude spectrum of an error map.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from udfd.detectors.base import ExplainTarget, register, resize_batch, scores_from_logits
from udfd.heatmaps import fft_error_spectrum  # noqa: F401  (re-exported)
from udfd.hub import CONFIG_NAME, UDFD_KEY, WEIGHTS_NAME
from udfd.types import Score

# ResNet-18 layout ([2, 2, 2, 2] BasicBlocks) at half width: ~6 M parameters, ~12 MB in fp16.
DEFAULT_ARCH: dict[str, Any] = {
    "image_size": 128,  # must be a multiple of 16 (stem + three strided stages)
    "widths": [32, 64, 128, 256],
    "blocks": [2, 2, 2, 2],
    "latent_dim": 128,
    "bottleneck_channels": 32,  # 1×1 conv before flattening keeps the latent projections small
    "pixel_range": "unit",  # "unit": inputs in [0, 1], sigmoid output; "symmetric": [-1, 1], tanh output
    "score": "pixel",  # "pixel" (OC-FakeDect1) | "latent" (OC-FakeDect2); an inference option, kept with the arch
}
_RANGES = {"unit": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), "symmetric": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}
THRESHOLD_RULES = ("percentile_80", "val_f1")


# -- network -----------------------------------------------------------------------------------------
class _EncoderBlock(nn.Module):
    """torchvision's BasicBlock: two 3×3 convs and an identity (or strided 1×1) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class _DecoderBlock(nn.Module):
    """The encoder block mirrored: nearest upsampling + 3×3 conv where the encoder strides."""

    def __init__(self, cin: int, cout: int, scale: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        up = [nn.Upsample(scale_factor=scale, mode="nearest")] if scale > 1 else []
        self.conv2 = nn.Sequential(*up, nn.Conv2d(cin, cout, 3, 1, 1, bias=False))
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = nn.Identity()
        if scale != 1 or cin != cout:
            self.shortcut = nn.Sequential(*up, nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNetVAE(nn.Module):
    """Symmetric ResNet-18-style VAE. `forward` returns (x̂, μ, log σ²); z is sampled only in training mode."""

    def __init__(self, *, image_size: int, widths: Sequence[int], blocks: Sequence[int], latent_dim: int,
                 bottleneck_channels: int, pixel_range: str) -> None:
        super().__init__()
        if image_size % 16 or len(widths) != 4 or len(blocks) != 4:
            raise ValueError(f"need image_size % 16 == 0 and 4 stages, got {image_size}, {widths}, {blocks}")
        w, side, cb = list(widths), image_size // 16, bottleneck_channels
        self.side, self.bottleneck_channels = side, cb
        self.stem = nn.Sequential(nn.Conv2d(3, w[0], 3, 2, 1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU())
        self.stages = nn.ModuleList()
        for i, n in enumerate(blocks):
            cin, stride = (w[0], 1) if i == 0 else (w[i - 1], 2)
            self.stages.append(nn.Sequential(*[_EncoderBlock(cin if j == 0 else w[i], w[i], stride if j == 0 else 1)
                                               for j in range(n)]))
        self.to_bottleneck = nn.Sequential(nn.Conv2d(w[3], cb, 1, bias=False), nn.BatchNorm2d(cb), nn.ReLU())
        self.to_latent = nn.Linear(cb * side * side, 2 * latent_dim)
        self.from_latent = nn.Linear(latent_dim, cb * side * side)
        self.from_bottleneck = nn.Sequential(nn.Conv2d(cb, w[3], 1, bias=False), nn.BatchNorm2d(w[3]), nn.ReLU())
        self.up_stages = nn.ModuleList()
        for i in reversed(range(4)):  # stage i goes back from w[i] to w[i-1], upsampling where the encoder strided
            cout, scale = (w[0], 1) if i == 0 else (w[i - 1], 2)
            n = blocks[i]
            self.up_stages.append(nn.Sequential(*[_DecoderBlock(w[i], cout if j == n - 1 else w[i],
                                                                scale if j == n - 1 else 1) for j in range(n)]))
        self.head = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w[0], 3, 3, 1, 1))
        self.out_act = nn.Sigmoid() if pixel_range == "unit" else nn.Tanh()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(μ, log σ², first residual stage output)."""
        h = self.stem(x)
        first = h = self.stages[0](h)
        for stage in self.stages[1:]:
            h = stage(h)
        mu, logvar = self.to_latent(self.to_bottleneck(h).flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0), first

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = self.from_latent(z).view(-1, self.bottleneck_channels, self.side, self.side)
        h = self.from_bottleneck(h)
        for stage in self.up_stages:
            h = stage(h)
        return self.out_act(self.head(h))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar, _ = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu  # reparameterisation
        return self.decode(z), mu, logvar


def vae_loss(x: torch.Tensor, x_hat: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, *,
             kl_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, residual sum of squares, KL(N(μ, σ²) ‖ N(0, 1))), each summed per image and averaged over the batch."""
    rss = (x - x_hat).pow(2).flatten(1).sum(1).mean()
    kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
    return rss + kl_weight * kl, rss, kl


# -- pure helpers --------------------------------------------------------------------------------------
def fit_logistic(scores: Sequence[float], labels: Sequence[int], *, min_slope: float = 1e-3) -> tuple[float, float]:
    """(a, b) of P(fake | s) = sigmoid(a·s + b) by maximum likelihood, with a > 0 so the map is increasing.

    A small ridge keeps the fit finite on perfectly separable scores.
    """
    from scipy.optimize import minimize

    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=float)
    mean, sd = float(s.mean()), float(s.std()) or 1.0
    zs = (s - mean) / sd

    def nll(p: np.ndarray) -> float:
        z = np.exp(p[0]) * zs + p[1]
        return float(np.mean(np.logaddexp(0.0, z) - y * z) + 1e-4 * (np.exp(2 * p[0]) + p[1] ** 2))

    res = minimize(nll, x0=np.zeros(2), method="L-BFGS-B", bounds=[(math.log(min_slope), math.log(1e3)), (-50, 50)])
    a_std, b_std = float(np.exp(res.x[0])), float(res.x[1])
    return a_std / sd, b_std - a_std * mean / sd


def score_to_fake_prob(scores: np.ndarray | float, *, slope: float, intercept: float) -> np.ndarray:
    """The logistic calibration, in float64 (what `predict` computes at temperature 1)."""
    z = slope * np.asarray(scores, dtype=float) + intercept
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = sigmoid(z), without overflow warnings


# -- the family --------------------------------------------------------------------------------------
@register
class OCVAEDetector:
    family: ClassVar[str] = "ocvae"
    modality: ClassVar[Literal["image", "video"]] = "image"
    tiny_arch: ClassVar[dict[str, Any]] = {"image_size": 64, "widths": [8, 16, 16, 32], "blocks": [1, 1, 1, 1],
                                           "latent_dim": 16, "bottleneck_channels": 8}
    # Read by training/train_ocvae.py (this family is one-class: train_image.py's classifier loop does not fit it).
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "batch_size": 32}
    train_script: ClassVar[str] = "train_ocvae.py"

    def __init__(self, model: ResNetVAE, *, arch: dict[str, Any], meta: dict[str, Any], name: str = "ocvae",
                 version: str = "untrained") -> None:
        self.model = model.eval()
        self.arch = {**DEFAULT_ARCH, **arch}
        if self.arch["score"] not in ("pixel", "latent") or self.arch["pixel_range"] not in _RANGES:
            raise ValueError(f"unknown score {self.arch['score']!r} or pixel_range {self.arch['pixel_range']!r}")
        self.image_size = int(self.arch["image_size"])
        self.mean, self.std = _RANGES[self.arch["pixel_range"]]
        self.meta = dict(meta)
        self.name = name
        self.version = version
        self.fake_index = 1  # of `logits()`: (real, fake)
        calib = meta.get("calibration", {})
        self.slope = float(calib.get("a", 1.0))  # untrained: identity-ish map, fake_prob = sigmoid(score)
        self.intercept = float(calib.get("b", 0.0))
        self.thresholds: dict[str, dict[str, float]] = {k: dict(v) for k, v in meta.get("thresholds", {}).items()}
        self.threshold_rule = str(meta.get("threshold_rule", "val_f1"))
        self.threshold = float(meta.get("threshold", 0.5))
        self.temperature = float(meta.get("temperature", 1.0))

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def accepts(cls, config: dict[str, Any]) -> bool:
        return config.get(UDFD_KEY, {}).get("family") == cls.family

    @classmethod
    def create(cls, arch: dict[str, Any]) -> OCVAEDetector:
        a = {**DEFAULT_ARCH, **arch}
        return cls(_build(a), arch=a, meta={"family": cls.family})

    @classmethod
    def from_pretrained(cls, folder: Path, config: dict[str, Any]) -> OCVAEDetector:
        from safetensors.torch import load_file

        meta = config[UDFD_KEY]
        arch = {**DEFAULT_ARCH, **meta["arch"]}
        model = _build(arch)
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(Path(folder) / WEIGHTS_NAME)).items()}
        model.load_state_dict(state, strict=True)
        return cls(model, arch=arch, meta=meta, name=meta.get("name", cls.family),
                   version=str(meta.get("version", Path(folder).name)))

    def save_pretrained(self, folder: Path, *, metadata: dict[str, Any] | None = None, fp16: bool = True) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: (v.half() if fp16 and v.is_floating_point() else v).detach().contiguous()
                 for k, v in self.model.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
        # Same layout as the other own-format families: everything under the "udfd" key.
        meta = {**self.meta, **(metadata or {}), "family": self.family, "arch": self.arch,
                "labels": {0: "real", 1: "fake"}, "dtype": "float16" if fp16 else "float32",
                "preprocessing": {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std)},
                "threshold": self.threshold, "temperature": self.temperature,
                "calibration": {"a": self.slope, "b": self.intercept}, "thresholds": self.thresholds,
                "threshold_rule": self.threshold_rule}
        (folder / CONFIG_NAME).write_text(json.dumps({UDFD_KEY: meta}, indent=1), encoding="utf-8")

    # -- calibration --------------------------------------------------------------------------------
    def set_score_calibration(self, *, slope: float, intercept: float, score_thresholds: dict[str, float],
                              rule: str = "val_f1") -> None:
        """Install the logistic map and the score thresholds; `threshold` becomes the `rule` one on fake_prob."""
        if slope <= 0:
            raise ValueError(f"the calibration slope must be > 0 (higher score = more fake), got {slope}")
        if rule not in score_thresholds:
            raise ValueError(f"threshold rule {rule!r} not among {sorted(score_thresholds)}")
        self.slope, self.intercept, self.temperature = float(slope), float(intercept), 1.0
        self.thresholds = {k: {"score": float(s), "fake_prob": float(self.fake_prob_of_score(s))}
                           for k, s in score_thresholds.items()}
        self.set_threshold_rule(rule)

    def set_threshold_rule(self, rule: str) -> None:
        """Decide with another stored rule (e.g. `percentile_80`); `threshold` is the stored score mapped to fake_prob."""
        if rule not in self.thresholds:
            raise ValueError(f"no stored threshold {rule!r}; this checkpoint has {sorted(self.thresholds)}")
        self.threshold_rule = rule
        self.threshold = float(self.fake_prob_of_score(self.thresholds[rule]["score"]))

    def fake_prob_of_score(self, scores: np.ndarray | float) -> np.ndarray:
        """fake_prob for raw scores, as `predict` computes it (current temperature included)."""
        return score_to_fake_prob(scores, slope=self.slope / self.temperature,
                                  intercept=self.intercept / self.temperature)

    def set_calibration(self, *, temperature: float, threshold: float) -> None:
        self.temperature = float(temperature)
        self.threshold = float(threshold)

    # -- compute ------------------------------------------------------------------------------------
    def preprocess(self, faces: Sequence[np.ndarray]) -> torch.Tensor:
        return resize_batch(faces, self.image_size, self.mean, self.std)

    def anomaly_scores(self, batch: torch.Tensor, *, score: str | None = None) -> torch.Tensor:
        """(B,) reconstruction scores (higher = more anomalous); `score` overrides the configured kind."""
        kind = score or self.arch["score"]
        mu, _, _ = self.model.encode(batch)
        x_hat = self.model.decode(mu)
        if kind == "latent":
            mu_hat, _, _ = self.model.encode(x_hat)
            return (mu - mu_hat).pow(2).mean(1).sqrt()
        if kind != "pixel":
            raise ValueError(f"unknown score {kind!r}: expected 'pixel' or 'latent'")
        return (batch - x_hat).pow(2).flatten(1).mean(1).sqrt()

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        z = self.slope * self.anomaly_scores(batch) + self.intercept
        return torch.stack([torch.zeros_like(z), z], dim=1)

    def predict(self, batch: torch.Tensor) -> list[Score]:
        with torch.inference_mode():
            logits = self.logits(batch)
        return scores_from_logits(logits, name=self.name, fake_index=self.fake_index, temperature=self.temperature,
                                  threshold=self.threshold)

    def features(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            mu, _, first = self.model.encode(batch)
        return first.mean(dim=(2, 3)).clone(), mu.clone()

    def reconstruct(self, batch: torch.Tensor) -> np.ndarray:
        """Reconstructions (from μ) as RGB uint8 images (B, H, W, 3), ready to show."""
        return (self._reconstruct_unit(batch) * 255.0).round().astype(np.uint8).transpose(0, 2, 3, 1)

    def error_map(self, batch: torch.Tensor, *, relative: bool = False) -> np.ndarray:
        """Per-pixel reconstruction error |x − x̂| in [0, 1] pixel units, averaged over RGB: (B, H, W) float32.

        `relative=True` scales each map by its own maximum (for display; loses comparability across images).
        """
        x = (batch.detach().float().cpu().numpy() * np.asarray(self.std, np.float32)[:, None, None]
             + np.asarray(self.mean, np.float32)[:, None, None])
        err = np.abs(np.clip(x, 0.0, 1.0) - self._reconstruct_unit(batch)).mean(axis=1)
        if relative:
            peak = err.max(axis=(1, 2), keepdims=True)
            err = np.divide(err, peak, out=np.zeros_like(err), where=peak > 0)
        return np.clip(np.nan_to_num(err, nan=0.0), 0.0, 1.0).astype(np.float32)

    def _reconstruct_unit(self, batch: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            mu, _, _ = self.model.encode(batch)
            x_hat = self.model.decode(mu).float().cpu().numpy()
        unit = x_hat * np.asarray(self.std, np.float32)[:, None, None] + np.asarray(self.mean, np.float32)[:, None, None]
        return np.clip(unit, 0.0, 1.0)

    def explain_target(self) -> ExplainTarget | None:
        return None  # no CAM layer: the explanation is `error_map` (with `reconstruct`, `fft_error_spectrum`)

    def module(self) -> torch.nn.Module:
        return self.model


def _build(arch: dict[str, Any]) -> ResNetVAE:
    return ResNetVAE(image_size=int(arch["image_size"]), widths=arch["widths"], blocks=arch["blocks"],
                     latent_dim=int(arch["latent_dim"]), bottleneck_channels=int(arch["bottleneck_channels"]),
                     pixel_range=arch["pixel_range"])
