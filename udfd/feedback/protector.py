"""The protector: screens visitors' flags against label poisoning (UDFD report §3.3).

Three MLPs over a detector's `features(batch) -> (low, high)`: one on the low-level features (first hidden
layer), one on the high-level features (last hidden layer), and a classifier on their concatenated embeddings
that predicts real/fake independently of the detector's own head. A flag is **accepted** when the protector
gives the user's label at least `min_agreement` probability, **suspicious** otherwise; both are stored with
the protector's probability and a reason — nothing is dropped.

The model and the decision rule are pure (tensors and records in, dataclasses out); reading and writing a
checkpoint folder (`config.json` + `model.safetensors` + `README.md`) is at the edge, in the two methods
that say so.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from udfd.hub import weights_version
from udfd.types import Label, ProtectorDecision

FAMILY = "protector"


@dataclass(frozen=True)
class ProtectorConfig:
    low_dim: int
    high_dim: int
    hidden: int = 128
    embed: int = 64
    dropout: float = 0.2
    temperature: float = 1.0  # fitted on validation data after training
    min_agreement: float = 0.5  # accept a flag when P(user's label) >= this
    detector: str = "vit"  # the detector whose features it reads (name and version it was trained on)
    detector_version: str = ""
    feature_mean: tuple[float, ...] = field(default=())  # standardisation of [low, high], fitted on train
    feature_std: tuple[float, ...] = field(default=())


def _mlp(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d_out), nn.GELU())


class ProtectorNet(nn.Module):
    """low MLP + high MLP -> concatenated embeddings -> classifier MLP -> (real, fake) logits."""

    def __init__(self, cfg: ProtectorConfig) -> None:
        super().__init__()
        self.low = _mlp(cfg.low_dim, cfg.hidden, cfg.embed, cfg.dropout)
        self.high = _mlp(cfg.high_dim, cfg.hidden, cfg.embed, cfg.dropout)
        self.classifier = nn.Sequential(nn.Linear(2 * cfg.embed, cfg.hidden), nn.GELU(), nn.Dropout(cfg.dropout),
                                        nn.Linear(cfg.hidden, 2))
        n = cfg.low_dim + cfg.high_dim
        mean = torch.tensor(cfg.feature_mean, dtype=torch.float32) if cfg.feature_mean else torch.zeros(n)
        std = torch.tensor(cfg.feature_std, dtype=torch.float32) if cfg.feature_std else torch.ones(n)
        self.register_buffer("feature_mean", mean)
        self.register_buffer("feature_std", std)
        self.low_dim = cfg.low_dim

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        x = (torch.cat([low, high], dim=1).float() - self.feature_mean) / self.feature_std
        return self.classifier(torch.cat([self.low(x[:, :self.low_dim]), self.high(x[:, self.low_dim:])], dim=1))


@dataclass(frozen=True)
class Screening:
    """The protector's opinion on one flag."""

    decision: ProtectorDecision
    fake_prob: float  # the protector's probability that the image is fake
    agreement: float  # the protector's probability of the user's label
    reason: str


def decide(fake_prob: float, user_label: Label, *, min_agreement: float) -> Screening:
    """Accepted when the protector gives the user's label at least `min_agreement`; suspicious otherwise."""
    agreement = fake_prob if user_label == "fake" else 1.0 - fake_prob
    if agreement >= min_agreement:
        return Screening("accepted", fake_prob, agreement,
                         f"protector agrees: P({user_label}) = {agreement:.2f} >= {min_agreement:.2f}")
    return Screening("suspicious", fake_prob, agreement,
                     f"protector disagrees: P({user_label}) = {agreement:.2f} < {min_agreement:.2f}")


class Protector:
    def __init__(self, net: ProtectorNet, config: ProtectorConfig, *, version: str = "untrained",
                 meta: dict[str, Any] | None = None) -> None:
        self.net = net.eval()
        self.config = config
        self.version = version
        self.meta = dict(meta or {})

    @classmethod
    def create(cls, config: ProtectorConfig) -> Protector:
        return cls(ProtectorNet(config), config)

    def logits(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return self.net(low, high)

    def fake_prob(self, low: torch.Tensor, high: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            logits = self.net(low, high).float() / self.config.temperature
        return torch.softmax(logits, dim=1)[:, 1].numpy()

    def screen(self, low: torch.Tensor, high: torch.Tensor, user_labels: Sequence[Label]) -> list[Screening]:
        """One decision per row of features, against the label each user gave."""
        if len(user_labels) != len(low):
            raise ValueError(f"{len(user_labels)} labels for {len(low)} feature rows")
        return [decide(float(p), lab, min_agreement=self.config.min_agreement)
                for p, lab in zip(self.fake_prob(low, high), user_labels, strict=True)]

    def accepts_detector(self, name: str, low_dim: int, high_dim: int, *, version: str | None = None) -> str | None:
        """None when this protector can screen flags on that detector's features, else why not. A protector
        trained on another version of the detector reads features it has never seen: retrain it."""
        if (low_dim, high_dim) != (self.config.low_dim, self.config.high_dim):
            return (f"the protector reads {self.config.detector!r} features ({self.config.low_dim}+"
                    f"{self.config.high_dim}), not {name!r} ({low_dim}+{high_dim})")
        if name != self.config.detector:
            return f"the protector was trained on {self.config.detector!r} features, not {name!r}"
        if (version and self.config.detector_version
                and weights_version(version) != weights_version(self.config.detector_version)):
            return (f"the protector was trained on {self.config.detector_version} features, the detector is now"
                    f" {version}: retrain it (training/train_protector.py)")
        return None

    def with_config(self, **changes: Any) -> Protector:
        cfg = ProtectorConfig(**{**asdict(self.config), **changes})
        return Protector(self.net, cfg, version=self.version, meta=self.meta)

    # -- edge: checkpoint folder --------------------------------------------------------------------
    def save_pretrained(self, folder: Path, *, metadata: dict[str, Any] | None = None) -> None:
        from safetensors.torch import save_file

        from udfd.hub import CONFIG_NAME, UDFD_KEY, WEIGHTS_NAME

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().float().contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
        meta = {**self.meta, **(metadata or {}), "family": FAMILY, "version": self.version,
                "protector": asdict(self.config)}
        (folder / CONFIG_NAME).write_text(json.dumps({UDFD_KEY: meta}, indent=1), encoding="utf-8")

    @classmethod
    def from_pretrained(cls, folder: Path) -> Protector:
        from safetensors.torch import load_file

        from udfd.hub import UDFD_KEY, WEIGHTS_NAME, read_config

        meta = read_config(Path(folder)).get(UDFD_KEY, {})
        if meta.get("family") != FAMILY:
            raise ValueError(f"{folder} is not a protector checkpoint (family {meta.get('family')!r})")
        raw = dict(meta["protector"])
        raw["feature_mean"], raw["feature_std"] = tuple(raw["feature_mean"]), tuple(raw["feature_std"])
        cfg = ProtectorConfig(**raw)
        net = ProtectorNet(cfg)
        net.load_state_dict(load_file(str(Path(folder) / WEIGHTS_NAME)))
        return cls(net, cfg, version=str(meta.get("version", "")), meta=meta)


def load_protector(ref: str, *, download: Any = None) -> Protector:
    """Load a protector from `local-dir:path` or `hf-hub:org/repo[@rev]` (raises ModelUnavailableError)."""
    from safetensors import SafetensorError

    from udfd.errors import ModelUnavailableError
    from udfd.hub import parse_ref, resolve

    folder = resolve(parse_ref(ref), download=download, setting="UDFD_PROTECTOR")
    try:
        return Protector.from_pretrained(folder)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:
        raise ModelUnavailableError(f"protector {ref} could not be loaded: {e}") from e
