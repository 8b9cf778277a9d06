"""Custom 5-block CNN family (`cnn`), as in the DLA report.

128×128 RGB crops, ImageNet mean/std; 5 × (3×3 conv, BatchNorm, ReLU, 2×2 max-pool) → flatten → FC → ReLU →
Dropout 0.5 → FC 2. Kaiming init, zero biases, BN γ=1 β=0. Width and FC size are configurable: the report's
network is `width=32, fc=1024` (32→64→128→256→512 channels, flatten 8192).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from udfd.detectors.base import ExplainTarget
from udfd.detectors.torch_classifier import TorchClassifier, register


class FiveBlockCNN(nn.Module):
    def __init__(self, *, image_size: int = 128, width: int = 32, fc: int = 1024, dropout: float = 0.5) -> None:
        super().__init__()
        chans = [3] + [width * 2**i for i in range(5)]
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                          nn.MaxPool2d(2))
            for cin, cout in zip(chans[:-1], chans[1:], strict=True)
        )
        flat = chans[-1] * (image_size // 32) ** 2
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(flat, fc), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(fc, 2))
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first = self.blocks[0](x)
        y = first
        for block in self.blocks[1:]:
            y = block(y)
        return first, self.hidden(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x)[1])


@register
class CNNDetector(TorchClassifier):
    family: ClassVar[str] = "cnn"
    default_arch: ClassVar[dict[str, Any]] = {"image_size": 128, "width": 32, "fc": 1024, "dropout": 0.5}
    tiny_arch: ClassVar[dict[str, Any]] = {"image_size": 32, "width": 4, "fc": 16}
    # The report's recipe: Adam 1e-3 with L2 1e-5, batch 32, LR ×0.1 after 3 stale epochs, stop after 5, ≤10 epochs.
    train_defaults: ClassVar[dict[str, Any]] = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-5,
                                                "batch_size": 32, "epochs": 10, "lr_factor": 0.1, "lr_patience": 3,
                                                "patience": 5}

    @classmethod
    def build(cls, arch: dict[str, Any]) -> nn.Module:
        return FiveBlockCNN(image_size=arch["image_size"], width=arch["width"], fc=arch["fc"],
                            dropout=arch.get("dropout", 0.5))

    def features(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            first, hidden = self.net.forward_features(batch)
        return first.mean(dim=(2, 3)), hidden

    def explain_target(self) -> ExplainTarget | None:
        return ExplainTarget(model=self.net, layers=(self.net.blocks[-1][2],), fake_index=self.fake_index)
