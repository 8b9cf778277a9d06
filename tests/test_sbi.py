"""Self-blended images (training/sbi.py) on generated faces with fake landmarks; the SBI datasets on tiny arrays."""

from __future__ import annotations

import numpy as np
import pytest

from training.sbi import REGIONS, SbiConfig, blend_mask, mask_margin, self_blend, support_region, transform_source
from training.sbi_data import DATA_FAKE, REAL, SBI, fixed_val, sbi_items

SIZE = 96


def _face(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured image and 468 'landmarks' on an ellipse-filled face region in its middle."""
    rng = np.random.default_rng(seed)
    img = rng.integers(40, 220, size=(SIZE, SIZE, 3), dtype=np.uint8)
    r, t = np.sqrt(rng.random(468)), rng.uniform(0, 2 * np.pi, 468)
    pts = np.stack([SIZE / 2 + 0.22 * SIZE * r * np.cos(t), SIZE / 2 + 0.28 * SIZE * r * np.sin(t)], 1)
    return img, pts.astype(np.float32)


def test_output_shape_dtype_and_mask_range():
    img, pts = _face()
    for seed in range(8):
        out = self_blend(img, pts, np.random.default_rng(seed))
        assert out.image.shape == img.shape and out.image.dtype == np.uint8
        assert out.mask.shape == img.shape[:2] and out.mask.dtype == np.float32
        assert out.mask.min() >= 0.0 and out.mask.max() <= 1.0 and out.mask.max() > 0
        assert out.region in REGIONS


def test_deterministic_given_a_seed_and_varies_across_seeds():
    img, pts = _face()
    a = self_blend(img, pts, np.random.default_rng(3))
    b = self_blend(img, pts, np.random.default_rng(3))
    c = self_blend(img, pts, np.random.default_rng(4))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)


def test_changes_only_inside_the_dilated_hull_and_does_change_inside():
    img, pts = _face(1)
    cfg = SbiConfig()
    support = support_region(pts, img.shape[:2], mask_margin(cfg, SIZE)) > 0
    assert support.mean() < 0.95  # the test means something: there is an outside
    changed_somewhere = False
    for seed in range(12):
        out = self_blend(img, pts, np.random.default_rng(seed), cfg)
        diff = np.any(out.image != img, axis=2)
        assert not diff[~support].any(), f"seed {seed}: pixels changed outside the dilated hull"
        assert (out.mask[~support] == 0).all()
        changed_somewhere |= bool(diff[support].any())
    assert changed_somewhere


def test_inputs_not_mutated():
    img, pts = _face(2)
    img0, pts0 = img.copy(), pts.copy()
    self_blend(img, pts, np.random.default_rng(0))
    transform_source(img, np.random.default_rng(0))
    assert np.array_equal(img, img0) and np.array_equal(pts, pts0)


def test_every_region_gives_a_mask_and_bad_input_is_refused():
    img, pts = _face()
    for region in REGIONS:
        assert blend_mask(pts, img.shape[:2], np.random.default_rng(0), region=region).max() > 0
    with pytest.raises(ValueError):
        blend_mask(pts, img.shape[:2], np.random.default_rng(0), region="ears")
    with pytest.raises(ValueError):
        self_blend(img.astype(np.float32), pts, np.random.default_rng(0))
    with pytest.raises(ValueError):
        self_blend(img, pts[:2], np.random.default_rng(0))


def test_items_only_ignores_data_fakes_and_skips_faces_without_mesh():
    labels = np.array([0, 0, 1, 0, 1])
    only = sbi_items("only", labels, [0, 1, 2, 3, 4], with_mesh={0, 3})
    assert sorted(only) == [(0, REAL), (0, SBI), (1, REAL), (3, REAL), (3, SBI)]
    mix = sbi_items("mix", labels, [0, 1, 2, 3, 4], with_mesh={0, 3})
    assert sorted(mix) == sorted(only + [(2, DATA_FAKE), (4, DATA_FAKE)])
    with pytest.raises(ValueError):
        sbi_items("off", labels, [0], with_mesh=set())


def test_fixed_val_is_reproducible_and_has_no_data_fakes_in_only_mode():
    img, pts = _face()
    crops = np.stack([img, _face(5)[0], img])
    labels = np.array([0, 1, 0])
    marks = {0: pts, 2: pts}
    a = fixed_val("only", crops, labels, [0, 1, 2], marks, seed=1)
    b = fixed_val("only", crops, labels, [0, 1, 2], marks, seed=1)
    assert np.array_equal(a[0], b[0]) and list(a[1]) == [0, 0, 1, 1] and a[2] == [0, 1, 2, 3]
    assert not any(np.array_equal(x, crops[1]) for x in a[0])


@pytest.mark.slow
def test_train_image_sbi_only_smoke(tmp_path, monkeypatch):
    """One epoch of `--sbi only` on generated images (FaceMesh replaced by fixed landmarks), then the card."""
    import json

    from training import sbi_data
    from training.train_image import main

    def fake_landmarks(crops, idx, *, cache_dir):
        side = crops.shape[1]
        pts = _face()[1] * (side / SIZE)
        return sbi_data.Landmarks(index=np.asarray(sorted(idx)), points=np.stack([pts] * len(idx)),
                                  missing=np.zeros(0, np.int64))

    monkeypatch.setattr(sbi_data, "cached_landmarks", fake_landmarks)
    out = tmp_path / "ckpt"
    main(["--synthetic", "--family", "timm", "--arch", '{"image_size": 32, "model": "mobilenetv2_035"}',
          "--sbi", "only", "--sbi-epoch-size", "8", "--epochs", "1", "--batch-size", "8", "--report-to", "none",
          "--cache-dir", str(tmp_path / "cache"), "--crop-size", "48", "--output", str(out)])
    meta = json.loads((out / "config.json").read_text())["udfd"]
    assert meta["training"]["sbi"] == "only" and meta["family"] == "timm"
    card = (out / "README.md").read_text()
    assert "Self-Blended Images" in card and "Shiohara" in card and "<!-- sbi -->" in card


def test_fold_rows_hold_out_fakes_and_only_unseen_reals():
    from training.data import Sample
    from training.sbi_scores import fold_rows

    samples = [Sample("fake/lfw_faceswap/a.jpg", 1, "lfw_faceswap", "g1"),  # a train-split fake: still unseen
               Sample("real/lfw/b.jpg", 0, "lfw", "g2"),  # train real: never a held-out row
               Sample("real/lfw/c.jpg", 0, "lfw", "g3"),  # test real
               Sample("real/utkface/d.jpg", 0, "utkface", "g4"),  # val real of another fold
               Sample("fake/sdfd_sd21/e.jpg", 1, "sdfd_sd21", "g5")]  # val fake of another fold
    splits = {"train": {"fake/lfw_faceswap/a.jpg", "real/lfw/b.jpg"}, "val": {"real/utkface/d.jpg", "fake/sdfd_sd21/e.jpg"},
              "test": {"real/lfw/c.jpg"}}
    probs = {0: 0.9, 2: 0.1, 3: 0.2, 4: 0.7}
    files = fold_rows(samples, probs, splits)
    lfw = files["loso_lfw_faceswap"]
    assert sorted((r.path, r.split) for r in lfw) == [
        ("fake/lfw_faceswap/a.jpg", "heldout"), ("fake/sdfd_sd21/e.jpg", "val"), ("real/lfw/c.jpg", "heldout"),
        ("real/utkface/d.jpg", "val")]
    assert all(r.split == "val" for r in files["loso_generated_photos"] if r.source == "sdfd_sd21")
    assert not any(r.source == "utkface" and r.split == "val" for r in files["loso_generated_photos"])
    assert sorted(r.split for r in files["in_dist"]) == ["test", "val", "val"]
