"""training/loso_sbi_features.py: the SBI checkpoint's weights land in the stage-statistics backbone (a plain timm
state dict has no `backbone.` prefix: without the mapping nothing would load and the features would be a random
network's), and a checkpoint missing a backbone tensor is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from training.loso_sbi_features import sbi_stats_detector
from udfd.detectors.timm_classifier import TimmDetector


def _checkpoint(tmp_path: Path, *, drop: str | None = None) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    plain = TimmDetector.create({"model": "tf_efficientnet_lite0", "image_size": 64})
    state = {k: v.clone().half() if v.is_floating_point() else v.clone() for k, v in plain.net.state_dict().items()
             if k != drop}
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"udfd": {"arch": {"model": "tf_efficientnet_lite0",
                                                                         "image_size": 64}}}))
    return tmp_path, state


def test_the_sbi_weights_fill_the_statistics_backbone(tmp_path: Path) -> None:
    folder, state = _checkpoint(tmp_path)
    det = sbi_stats_detector(folder)
    own = det.net.state_dict()
    backbone = [k for k in own if k.startswith("backbone.")]
    assert backbone and all(torch.equal(own[k], state[k.removeprefix("backbone.")].to(own[k].dtype)) for k in backbone)
    x = det.preprocess([torch.randint(0, 255, (64, 64, 3), dtype=torch.uint8).numpy()])
    assert det.head_input(x).shape == (1, 640)  # mean and std of stage 4's 320 channels


def test_a_checkpoint_missing_a_backbone_tensor_is_refused(tmp_path: Path) -> None:
    folder, _ = _checkpoint(tmp_path, drop="blocks.6.0.conv_pwl.weight")
    with pytest.raises(ValueError, match="no weights for 1 backbone tensors"):
        sbi_stats_detector(folder)
