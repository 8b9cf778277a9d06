"""training/loso_spectrum.py and training/loso_gain.py: the within-GAN split keeps its held-out rows out of training,
the saved checkpoint scores what the fit scored, and the paired bootstrap of a gain reads the same rows for both."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training.data import Sample
from training.kinds import fit_kinds
from training.loso_gain import bootstrap_gain, paired_rows
from training.loso_gain import main as gain_main
from training.loso_spectrum import GAN_HELDOUT_FAKES, HQ_REALS, augmentation, gan_heldout_split, save_checkpoint
from udfd.detectors.spectrum import SpectrumDetector
from udfd.hub import read_config
from udfd.spectrum import FEATURE_SETS, V1, V2


def _samples() -> list[Sample]:
    out = []
    for i in range(40):
        out.append(Sample(f"real/celebahq_real/{i}.jpg", 0, "celebahq_real", f"celebahq_real/{i}"))
        out.append(Sample(f"real/lfw/{i}.jpg", 0, "lfw", f"lfw/p{i // 2}"))
        out.append(Sample(f"fake/tpdne_stylegan2/{i}.jpg", 1, "tpdne_stylegan2", f"tpdne/{i}"))
        out.append(Sample(f"fake/generated_photos/{i}.jpg", 1, "generated_photos", f"gp/{i}"))
    return out


def test_the_gan_split_holds_out_its_generators_and_half_the_portrait_groups() -> None:
    samples = _samples()
    split = gan_heldout_split(samples, seed=3)
    held = set(split["heldout"])
    rest = set(split["train"]) | set(split["val"]) | set(split["test"])
    assert held and not held & rest and held | rest == set(range(len(samples)))
    assert all(samples[i].source in GAN_HELDOUT_FAKES for i in held if samples[i].label == 1)
    assert not any(samples[i].source in GAN_HELDOUT_FAKES for i in rest)
    hq_held = {samples[i].group for i in held if samples[i].label == 0}
    hq_rest = {samples[i].group for i in rest if samples[i].source in HQ_REALS}
    assert len(hq_held) == 20 and len(hq_rest) == 20 and not hq_held & hq_rest
    assert all(samples[i].source in HQ_REALS for i in held if samples[i].label == 0)


@pytest.mark.parametrize("features", [None, V1, V2])
def test_the_saved_checkpoint_scores_what_the_fit_scored(tmp_path: Path, features: str | None) -> None:
    """None: a namespace from before --features (the spectrum 1.1 command) saves the v1 statistics."""
    rng = np.random.default_rng(0)
    samples = _samples()
    y = np.array([s.label for s in samples])
    x = rng.normal(size=(len(samples), FEATURE_SETS[features or V1])).astype(np.float32)
    x[y == 1, 3] += 2.0
    kinds = np.array(["" if s.label == 0 else "gan" for s in samples], dtype=object)
    idx = np.arange(len(samples))
    split = {"train": list(idx[::3]) + list(idx[1::3]), "val": list(idx[2::3]), "test": list(idx[2::3])}
    head = fit_kinds(x, y, kinds, split["train"], split["val"], min_fakes=5)
    (tmp_path / "kinds.json").write_text('{"gan": ["tpdne_stylegan2", "generated_photos"]}')
    args = argparse.Namespace(fake_kinds=tmp_path / "kinds.json", version="t", seed=0,
                              **({"features": features} if features else {}))
    out = tmp_path / "model"
    save_checkpoint(out, head, x, y, samples, split, args)
    det = SpectrumDetector.from_pretrained(out, read_config(out))
    assert det.arch["features"] == (features or V1) and det.native_width == x.shape[1]
    logits = det.logits(torch.from_numpy(x[:8]))
    np.testing.assert_allclose((logits[:, 1] - logits[:, 0]).detach().numpy(), head.logit(x[:8]), atol=1e-5)
    assert (out / "split.json").is_file() and (out / "eval_results.json").is_file()
    assert 0.0 < det.threshold < 1.0 and det.temperature > 0


def _score_file(path: Path, y: np.ndarray, p: np.ndarray, *, skip: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "source", "split", "fake_prob"])
        for i in range(skip, len(y)):
            w.writerow([f"f{i}.jpg", int(y[i]), "s", "heldout", f"{p[i]:.6f}"])


def test_a_gain_is_paired_on_the_rows_both_score(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    y = np.arange(300) % 2
    weak = rng.normal(size=300) + 0.3 * y
    strong = weak + 1.5 * y
    for fold in ("dfdc", "stylegan"):
        _score_file(tmp_path / "a" / f"loso_{fold}.csv", y, 1 / (1 + np.exp(-weak)))
        _score_file(tmp_path / "b" / f"loso_{fold}.csv", y, 1 / (1 + np.exp(-strong)), skip=10)
    labels, a, b = paired_rows(tmp_path / "a" / "loso_dfdc.csv", tmp_path / "b" / "loso_dfdc.csv")
    assert len(labels) == 290  # b lacks the first ten rows: only the rows both score are compared
    out = tmp_path / "gain.json"
    assert gain_main(["--scores", str(tmp_path), "--a", "a", "--b", "b", "--resamples", "100", "--out", str(out)]) == 0
    folds = json.loads(out.read_text())["folds"]
    assert folds["mean"]["gain"] > 0.1 and folds["mean"]["lo"] > 0
    same = bootstrap_gain({"x": (y, weak, weak)}, resamples=50, seed=0)["x"]
    assert same["gain"] == 0 and same["lo"] == same["hi"] == 0


def test_no_shared_fold_is_a_clear_error(tmp_path: Path) -> None:
    y = np.arange(10) % 2
    _score_file(tmp_path / "a" / "loso_dfdc.csv", y, y * 0.5 + 0.2)
    _score_file(tmp_path / "b" / "loso_stylegan.csv", y, y * 0.5 + 0.2)
    with pytest.raises(SystemExit, match="share no"):
        gain_main(["--scores", str(tmp_path), "--a", "a", "--b", "b"])


def test_training_degradations_are_seeded_keep_the_size_and_avoid_the_robustness_suite() -> None:
    """--augment's copies: the same image and seed give the same degradation, never one the suite tests."""
    from udfd import perturb

    rng = np.random.default_rng(3)
    image = (rng.random((120, 100, 3)) * 255).astype(np.uint8)
    suite = [p.apply(image) for p in perturb.parse_perturbations("blur1,resize0.5,jpeg50,jpeg75")]
    outs = [augmentation(i, 42)(image) for i in range(30)]
    assert all(o.shape == image.shape and o.dtype == np.uint8 for o in outs)
    np.testing.assert_array_equal(augmentation(7, 42)(image), outs[7])
    assert not any(np.array_equal(o, s) for o in outs for s in suite)
    assert any(not np.array_equal(a, b) for a, b in zip(outs, outs[1:], strict=False))


def test_gan_heldout_terms_score_each_term_per_generator_and_per_real_source() -> None:
    """Lite0's column ranks every held-out fake first, spectrum's ranks them last: the terms' AUCs say so, per
    generator and per real source, and the mean term lies between."""
    from training.gan_heldout_terms import term_aucs

    y = np.array([0, 0, 1, 1] * 6)
    sources = ["celebahq_real", "ffhq_real", "celebahq_gan_interfacegan", "tpdne_stylegan2"] * 6
    rng = np.random.default_rng(0)
    lite0 = y * 3.0 + rng.normal(0, 0.1, len(y))
    d = np.stack([lite0, -lite0], 1)
    split = {"val": list(range(8)), "heldout": list(range(8, 24))}
    out = term_aucs(d, y, sources, split)
    assert out["n_reals"] == 8 and out["n_fakes"] == 8
    assert out["lite0 (1.4)"]["all"] == 1.0 and out["spectrum"]["all"] == 0.0
    assert set(out["spectrum"]) == {"all", "celebahq_gan_interfacegan vs all reals", "tpdne_stylegan2 vs all reals",
                                    "all fakes vs celebahq_real", "all fakes vs ffhq_real"}
    assert out["lite0 (1.4)"]["all fakes vs ffhq_real"] == 1.0
    assert 0.0 <= out["lite0+spectrum (1.6)"]["all"] <= 1.0
