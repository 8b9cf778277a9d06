"""MesoNet family (`mesonet`): Meso-4 and MesoInception-4 (Afchar et al., "MesoNet: a Compact Facial Video
Forgery Detection Network", WIFS 2018), re-implemented in PyTorch so the authors' Keras weights load into it.

256×256 RGB scaled to [0, 1] (no mean/std). Each block is conv(s) with ReLU → BatchNorm (ε = 1e-3, Keras'
default) → max-pool; Meso-4 has four plain conv blocks, MesoInception-4 replaces the first two with inception
blocks of 1×1 and 3×3 (dilation 1, 2, 3) branches. Head: Flatten → Dropout 0.5 → Dense 16 → LeakyReLU 0.1 →
Dropout 0.5 → Dense 1. The authors' sigmoid output is P(real) (their class folders sort "df" < "real"), so the
two-class logits we expose are (z/2, −z/2): softmax gives fake_prob = 1 − sigmoid(z).
`training/convert_mesonet.py` turns the published .h5 files into checkpoints of this family.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from udfd.detectors.base import ExplainTarget
from udfd.detectors.torch_classifier import TorchClassifier, register

VARIANTS = ("meso4", "mesoinception4")
BN_EPS = 1e-3  # Keras BatchNormalization default; PyTorch's 1e-5 would shift every activation slightly


def _pool(size: int) -> nn.MaxPool2d:
    # ceil_mode pads at the bottom/right like Keras padding="same" when stride == pool size
    return nn.MaxPool2d(size, stride=size, ceil_mode=True)


class ConvBlock(nn.Module):
    """Conv (same padding) → ReLU → BatchNorm → max-pool, in the authors' order (BN after the activation)."""

    def __init__(self, cin: int, cout: int, kernel: int, pool: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2)
        self.relu = nn.ReLU()
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.pool = _pool(pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.bn(self.relu(self.conv(x))))


def _branch(cin: int, cout: int, dilation: int | None) -> nn.Sequential:
    """1×1 conv + ReLU, then (unless dilation is None) a 3×3 conv with that dilation + ReLU."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 1), nn.ReLU()]
    if dilation is not None:
        layers += [nn.Conv2d(cout, cout, 3, padding=dilation, dilation=dilation), nn.ReLU()]
    return nn.Sequential(*layers)


class InceptionBlock(nn.Module):
    """Four branches (1×1; 1×1→3×3; 1×1→3×3 dilated 2; 1×1→3×3 dilated 3) concatenated → BatchNorm → pool 2."""

    def __init__(self, cin: int, widths: tuple[int, int, int, int]) -> None:
        super().__init__()
        a, b, c, d = widths
        self.b1, self.b2, self.b3, self.b4 = (
            _branch(cin, a, None),
            _branch(cin, b, 1),
            _branch(cin, c, 2),
            _branch(cin, d, 3),
        )
        self.bn = nn.BatchNorm2d(a + b + c + d, eps=BN_EPS)
        self.pool = _pool(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1)
        return self.pool(self.bn(y))


class MesoNet(nn.Module):
    """Meso-4 or MesoInception-4; `forward` gives (B, 2) logits (real, fake), `real_logit` the authors' z."""

    def __init__(self, *, variant: str = "meso4", image_size: int = 256, dropout: float = 0.5) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown MesoNet variant {variant!r}; expected one of {VARIANTS}")
        if variant == "meso4":
            first: list[nn.Module] = [ConvBlock(3, 8, 3, 2), ConvBlock(8, 8, 5, 2)]
        else:
            first = [InceptionBlock(3, (1, 4, 4, 2)), InceptionBlock(11, (2, 4, 4, 2))]
        cin = 8 if variant == "meso4" else 12
        self.blocks = nn.ModuleList([*first, ConvBlock(cin, 16, 5, 2), ConvBlock(16, 16, 5, 4)])
        side = -(-image_size // 8)  # three ceil-mode pools of 2 ...
        side = -(-side // 4)  # ... then one of 4
        self.head = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(16 * side * side, 16),
            nn.LeakyReLU(0.1),
            nn.Dropout(dropout),
            nn.Linear(16, 1),
        )

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(first block's output, hidden Dense-16 activations, z) where sigmoid(z) = P(real)."""
        first = self.blocks[0](x)
        y = first
        for block in self.blocks[1:]:
            y = block(y)
        # The authors' Dense follows a Keras channels-last Flatten: flatten in (H, W, C) order.
        flat = y.permute(0, 2, 3, 1).flatten(1)
        hidden = self.head[2](self.head[1](self.head[0](flat)))
        return first, hidden, self.head[4](self.head[3](hidden))

    def real_logit(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[2][:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.real_logit(x)
        return torch.stack([z / 2, -z / 2], dim=1)  # softmax(.)[1] = sigmoid(-z) = 1 - P(real)


@register
class MesoNetDetector(TorchClassifier):
    family: ClassVar[str] = "mesonet"
    default_arch: ClassVar[dict[str, Any]] = {
        "variant": "meso4",
        "image_size": 256,
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
        "dropout": 0.5,
    }
    tiny_arch: ClassVar[dict[str, Any]] = {"variant": "mesoinception4", "image_size": 64}
    # The authors trained with Adam 1e-3 on a mean-squared-error loss; we fine-tune with our cross-entropy.
    train_defaults: ClassVar[dict[str, Any]] = {"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "epochs": 10}

    @classmethod
    def build(cls, arch: dict[str, Any]) -> nn.Module:
        return MesoNet(variant=arch["variant"], image_size=arch["image_size"], dropout=arch.get("dropout", 0.5))

    def features(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            first, hidden, _ = self.net.forward_features(batch)
        return first.mean(dim=(2, 3)), hidden

    def explain_target(self) -> ExplainTarget | None:
        # Grad-CAM on the last conv block's activations (before its BatchNorm and 4×4 pool: 32×32 at 256 px).
        return ExplainTarget(
            model=self.net,
            layers=(self.net.blocks[-1].relu,),
            fake_index=self.fake_index,
            methods=("gradcam", "fullgrad"),
        )
