"""Leave-one-source-out: fold definitions, held-out splits without leaks, metrics and the score-file contract."""

from __future__ import annotations

import numpy as np
import pytest

from training.data import Sample
from training.loso import loso_split, run_scores, subsample
from udfd.evaluation.loso import (
    FOLDS,
    ScoreRow,
    fold_of,
    get_fold,
    heldout_mask,
    loso_summary,
    member_summary,
    read_scores,
    score_file,
    summary_markdown,
    write_scores,
)

DEV_SOURCES = {  # ../shared/data/SOURCES.md: the 17 dev sources, by label
    1: ["dfdc_faces", "dfdc_frames", "dfdc_sample_crops", "generated_photos", "lfw_faceswap", "sdfd_sd21",
        "celebahq_gan_interfacegan", "stylegan_ffhq_crops", "tpdne_stylegan2"],
    0: ["dfdc_faces", "dfdc_frames", "dfdc_sample_crops", "lfw", "celebahq_real", "ffhq_real", "fairface", "utkface"],
}


def test_the_five_folds_partition_the_dev_sources():
    for label, sources in DEV_SOURCES.items():
        for src in sources:
            holders = [f.name for f in FOLDS if f.holds(label, src)]
            assert len(holders) == 1, (label, src, holders)  # every row is held out by exactly one fold
    reals = [set(f.real_sources) for f in FOLDS]
    assert all(not (a & b) for i, a in enumerate(reals) for b in reals[i + 1:]), "held-out reals must be disjoint"
    assert fold_of(1, "lfw_faceswap") == "lfw_faceswap" and fold_of(0, "lfw") == "lfw_faceswap"
    assert fold_of(1, "lfw") is None and get_fold("loso_stylegan").name == "stylegan"
    with pytest.raises(KeyError, match="known"):
        get_fold("celebdf")


def _samples() -> list[Sample]:
    out = []
    for label, sources in DEV_SOURCES.items():
        for src in sources:
            for k in range(6):
                out.append(Sample(f"{'fake' if label else 'real'}/{src}/{k}.jpg", label, src, f"{src}:{k}"))
    return out


def test_loso_split_keeps_the_fold_out_of_training():
    samples = _samples()
    split = loso_split(samples, "sdfd_sd21", seed=0, val=0.2, test=0.0)
    held = {samples[i].source for i in split["heldout"]}
    assert held == {"sdfd_sd21", "fairface"}
    seen = {(samples[i].label, samples[i].source) for k in ("train", "val", "test") for i in split[k]}
    assert (1, "sdfd_sd21") not in seen and (0, "fairface") not in seen
    assert sorted(sum(split.values(), [])) == list(range(len(samples)))  # nothing lost, nothing twice
    mask = heldout_mask([s.label for s in samples], [s.source for s in samples], get_fold("sdfd_sd21"))
    assert mask.sum() == len(split["heldout"])
    assert len(subsample(split["train"], 5, seed=1)) == 5 and subsample([3, 1], 5, seed=1) == [3, 1]


def test_summary_per_fold_mean_and_pooled():
    s = loso_summary({"a": ([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]),   # perfect
                      "b": ([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1])})  # inverted
    assert [f.roc_auc for f in s.folds] == [1.0, 0.0] and s.mean_auc == 0.5
    assert s.pooled_auc == pytest.approx(0.5)
    assert s.folds[0].n_real == 2 and s.folds[0].n_fake == 2
    table = summary_markdown({"m": s})
    assert "| m |" in table and "0.500" in table


def test_score_files_round_trip_and_reject_other_columns(tmp_path):
    samples = _samples()
    split = loso_split(samples, "stylegan", seed=0, val=0.2, test=0.0)
    probs = {k: np.linspace(0, 1, len(v)) for k, v in split.items()}
    fold, rows = run_scores(samples, split, probs, loso_fold="stylegan")
    assert fold == "loso_stylegan" and {r.split for r in rows} == {"heldout", "val"}
    path = write_scores(score_file(tmp_path, "m", fold), rows)
    assert path == tmp_path / "m" / "loso_stylegan.csv"
    back = read_scores(path)
    assert [r.path for r in back] == [r.path for r in rows] and back[0] == ScoreRow(*[getattr(rows[0], k) for k in
                                                                                    ("path", "label", "source",
                                                                                     "split", "fake_prob")])
    assert member_summary(tmp_path, "m").folds[0].fold == "stylegan"
    fold, rows = run_scores(samples, {"val": [0], "test": [1], "train": [2]}, {"val": [0.1], "test": [0.2]},
                            loso_fold=None)
    assert fold == "in_dist" and [r.split for r in rows] == ["val", "test"]
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label,prob\n", encoding="utf-8")
    with pytest.raises(ValueError, match="columns"):
        read_scores(bad)


def test_train_script_takes_loso_options(tmp_path):
    from training.train_image import parse_args

    args = parse_args(["--synthetic", "--family", "timm", "--output", str(tmp_path), "--loso-fold", "dfdc",
                       "--max-train", "100", "--schedule", "onecycle", "--init", "imagenet",
                       "--scores-dir", str(tmp_path), "--member", "x"])
    assert args.loso_fold == "dfdc" and args.max_train == 100 and args.arch["init"] == "imagenet"
    with pytest.raises(SystemExit):
        parse_args(["--synthetic", "--output", str(tmp_path), "--scores-dir", str(tmp_path)])


def test_evaluate_restricts_to_a_fold(tmp_path):
    from udfd.cli.main import _loso_files
    from udfd.errors import UdfdError

    for rel in ("real/lfw/a.jpg", "fake/lfw_faceswap/b.jpg", "real/utkface/c.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert sorted(_loso_files(tmp_path, "lfw_faceswap", None)) == ["fake/lfw_faceswap/b.jpg", "real/lfw/a.jpg"]
    with pytest.raises(UdfdError, match="no image"):
        _loso_files(tmp_path, "stylegan", None)
