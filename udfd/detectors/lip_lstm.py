"""Lip-region CNN-LSTM (`lip_lstm`), a PyTorch port of the facial-dynamics report's Keras model.

Input: a sequence of lip crops (T, 64, 64, 3). Per frame (TimeDistributed): Conv 32 3×3 ReLU → MaxPool 2 →
Conv 64 3×3 ReLU (L2) → MaxPool 2 → Flatten; LSTM 128 with input and recurrent dropout, last time step;
Dense 128 ReLU (L2) → Dropout 0.5 → Dense 1 (sigmoid). The single logit z is returned as two-class logits
(0, z), so softmax gives sigmoid(z) and the shared scoring/calibration code applies unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import cv2
import numpy as np
import torch
from torch import nn

from udfd.detectors.base import ExplainTarget
from udfd.detectors.torch_classifier import TorchClassifier, register


class LipCNNLSTM(nn.Module):
    def __init__(self, *, image_size: int = 64, conv1: int = 32, conv2: int = 64, hidden: int = 128,
                 dense: int = 128, input_dropout: float = 0.2, recurrent_dropout: float = 0.2,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(3, conv1, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.conv2 = nn.Sequential(nn.Conv2d(conv1, conv2, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        side = ((image_size - 2) // 2 - 2) // 2
        self.frame_features = conv2 * side * side
        self.input_dropout = nn.Dropout(input_dropout)
        self.recurrent_dropout = recurrent_dropout
        self.cell = nn.LSTMCell(self.frame_features, hidden)
        self.dense = nn.Sequential(nn.Linear(hidden, dense), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(dense, 1))
        self.hidden = hidden

    def l2_parameters(self) -> list[nn.Parameter]:
        """Weights the report regularises with L2 (second conv, first dense)."""
        return [self.conv2[0].weight, self.dense[0].weight]

    def encode_frames(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, 3, S, S) -> (first-block features (B, T, C1), flattened per-frame features (B, T, F))."""
        b, t = x.shape[:2]
        first = self.conv1(x.flatten(0, 1))
        flat = self.conv2(first).flatten(1)
        return first.mean(dim=(2, 3)).view(b, t, -1), flat.view(b, t, -1)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first, frames = self.encode_frames(x)
        frames = self.input_dropout(frames)
        b, t = frames.shape[:2]
        h = frames.new_zeros(b, self.hidden)
        c = frames.new_zeros(b, self.hidden)
        mask = None
        if self.training and self.recurrent_dropout > 0:  # one mask per sequence, as Keras does
            keep = 1.0 - self.recurrent_dropout
            mask = torch.bernoulli(frames.new_full((b, self.hidden), keep)) / keep
        for step in range(t):
            h, c = self.cell(frames[:, step], (h * mask if mask is not None else h, c))
        return first.mean(dim=1), h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.head(self.dense(self.forward_features(x)[1]))
        return torch.cat([torch.zeros_like(z), z], dim=1)


def resample_sequence(frames: np.ndarray, length: int) -> np.ndarray:
    """`length` frames taken evenly from a (T, H, W, 3) sequence, repeating frames when T < length. Pure."""
    idx = np.floor(np.linspace(0, len(frames), length, endpoint=False)).astype(int)
    return frames[np.clip(idx, 0, len(frames) - 1)]


@register
class LipLSTMDetector(TorchClassifier):
    family: ClassVar[str] = "lip_lstm"
    modality: ClassVar[Literal["image", "video"]] = "video"
    default_arch: ClassVar[dict[str, Any]] = {"image_size": 64, "seq_len": 60, "conv1": 32, "conv2": 64,
                                              "hidden": 128, "dense": 128, "input_dropout": 0.2,
                                              "recurrent_dropout": 0.2, "dropout": 0.5}
    tiny_arch: ClassVar[dict[str, Any]] = {"image_size": 16, "seq_len": 4, "conv1": 4, "conv2": 4, "hidden": 8,
                                           "dense": 8}

    @classmethod
    def build(cls, arch: dict[str, Any]) -> nn.Module:
        keys = ("image_size", "conv1", "conv2", "hidden", "dense", "input_dropout", "recurrent_dropout", "dropout")
        return LipCNNLSTM(**{k: arch[k] for k in keys if k in arch})

    @property
    def seq_len(self) -> int:
        return int(self.arch["seq_len"])

    def preprocess(self, faces: Sequence[np.ndarray]) -> torch.Tensor:
        """Lip sequences (T, H, W, 3) uint8 (a single (H, W, 3) crop counts as a 1-frame sequence) ->
        float (B, seq_len, 3, S, S) in [0, 1]. Sequences are resampled in time to `seq_len` frames."""
        size = self.image_size
        out = np.empty((len(faces), self.seq_len, size, size, 3), np.float32)
        for i, seq in enumerate(faces):
            seq = seq[None] if seq.ndim == 3 else seq
            if seq.ndim != 4 or seq.shape[-1] != 3 or len(seq) == 0:
                raise ValueError(f"expected a lip sequence (T, H, W, 3) or one crop (H, W, 3), got {seq.shape}")
            for t, frame in enumerate(resample_sequence(seq, self.seq_len)):
                shrink = frame.shape[0] > size or frame.shape[1] > size
                out[i, t] = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        return torch.from_numpy(out / 255.0).permute(0, 1, 4, 2, 3).contiguous()

    def features(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            return self.net.forward_features(batch)

    def explain_target(self) -> ExplainTarget | None:
        return None  # a CAM over a recurrent sequence model is not meaningful; the app shows the lip crops
