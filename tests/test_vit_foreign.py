"""A foreign ViT checkpoint (dima806-style: transformers config, labels in any order, no udfd metadata) loads."""

from __future__ import annotations

import json

import pytest
import torch

from udfd.config import Settings
from udfd.errors import ModelUnavailableError
from udfd.loader import clear_cache, load_detector


def _foreign(tmp_path, id2label):
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    cfg = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32,
                    patch_size=16, num_labels=len(id2label), id2label=id2label,
                    label2id={v: k for k, v in id2label.items()})
    torch.manual_seed(0)
    ViTForImageClassification(cfg).save_pretrained(tmp_path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    assert "udfd" not in json.loads((tmp_path / "config.json").read_text())
    return tmp_path


@pytest.mark.parametrize("id2label,fake_index", [({0: "Fake", 1: "Real"}, 0), ({0: "Realism", 1: "Deepfake"}, 1)])
def test_fake_label_found_whatever_order(tmp_path, id2label, fake_index):
    clear_cache()
    det = load_detector(f"local-dir:{_foreign(tmp_path, id2label)}", settings=Settings())
    assert det.fake_index == fake_index
    assert det.threshold == 0.5
    import numpy as np

    batch = det.preprocess([np.zeros((50, 50, 3), np.uint8)])
    logits = det.logits(batch)
    expected = torch.softmax(logits, -1)[0, fake_index].item()
    assert det.predict(batch)[0].fake_prob == pytest.approx(expected, abs=1e-6)


def test_labels_without_fake_raise(tmp_path):
    clear_cache()
    with pytest.raises(ModelUnavailableError, match="fake"):
        load_detector(f"local-dir:{_foreign(tmp_path, {0: 'cat', 1: 'dog'})}", settings=Settings())
