"""Fairness: annotations from manifest / metadata, balancing plans, per-group metrics (udfd/evaluation/fairness.py)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from udfd.errors import UdfdError
from udfd.evaluation.fairness import (
    GEOMETRIC,
    UNKNOWN,
    annotate,
    apply_transform,
    balance_plan,
    distribution,
    group_metrics,
    normalise,
    read_annotations,
)


def test_normalise_maps_aliases_to_deepface_groups() -> None:
    assert normalise("Latino", ("latino hispanic", "white")) == "latino hispanic"
    assert normalise("middle_eastern", ("middle eastern",)) == "middle eastern"
    assert normalise(" WHITE ", ("white",)) == "white"
    assert normalise("martian", ("white",)) == UNKNOWN and normalise(None, ("white",)) == UNKNOWN


def _shares(plan, ethnicities):
    counts = Counter(ethnicities[i] for i, _ in plan if ethnicities[i] != UNKNOWN)
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()}, counts


def test_balance_reaches_the_share_and_equal_classes() -> None:
    eth = ["white"] * 60 + ["asian"] * 20 + ["black"] * 10 + ["latino hispanic"] * 10 + [UNKNOWN] * 100
    labels = [1] * 100 + [0] * 100
    plan = balance_plan(eth, labels, min_share=0.2, seed=0)
    shares, counts = _shares(plan, eth)
    assert all(s >= 0.2 - 1e-9 for s in shares.values()), shares
    n_real = sum(labels[i] == 0 for i, _ in plan)
    n_fake = sum(labels[i] == 1 for i, _ in plan)
    assert n_real == n_fake
    assert {t for _, t in plan} <= {"none", *GEOMETRIC}
    copies = Counter(i for i, t in plan if t != "none")
    assert max(copies.values()) <= len(GEOMETRIC)
    assert len(set(plan)) == len(plan), "no sample is used twice with the same transform"
    assert all(t == "none" for i, t in plan if eth[i] == UNKNOWN), "unannotated samples are not augmented"


def test_balance_undersamples_when_copies_are_not_enough() -> None:
    eth = ["white"] * 200 + ["black"] * 5
    labels = [1] * 205
    plan = balance_plan(eth, labels + [], min_share=0.3, seed=1)
    # black can grow to 5 × 6 = 30 copies at most, so white is cut until black holds 30 %
    _, counts = _shares(plan, [*eth])
    assert counts["black"] == 30 and counts["black"] / (counts["black"] + counts["white"]) >= 0.3 - 1e-9
    assert counts["white"] == 70


def test_balance_refuses_impossible_shares() -> None:
    with pytest.raises(UdfdError, match="cannot each hold"):
        balance_plan(["a", "b", "c"], [0, 1, 0], min_share=0.4)


def test_balance_is_seeded() -> None:
    eth = ["white"] * 30 + ["asian"] * 5 + [UNKNOWN] * 35
    labels = [1] * 35 + [0] * 35
    assert balance_plan(eth, labels, seed=3) == balance_plan(eth, labels, seed=3)


@pytest.mark.parametrize("transform", GEOMETRIC)
def test_transforms_are_geometric_only(transform: str) -> None:
    img = np.random.default_rng(0).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    before = img.copy()
    out = apply_transform(img, transform)
    assert np.array_equal(img, before)
    assert sorted(out.reshape(-1, 3).tolist()) == sorted(img.reshape(-1, 3).tolist()), "same pixels, moved"
    assert out.shape in {(8, 6, 3), (6, 8, 3)}


def test_group_metrics_match_a_hand_computation() -> None:
    labels = [0, 0, 1, 1, 0, 1, 1, 1]
    probs = [0.2, 0.7, 0.9, 0.4, 0.1, 0.8, 0.6, 0.3]
    groups = ["a", "a", "a", "a", "b", "b", "b", "b"]
    r = group_metrics(labels, probs, groups, threshold=0.5)
    a, b = r["groups"]["a"], r["groups"]["b"]
    # a: real 0.2 -> TN, real 0.7 -> FP, fake 0.9 -> TP, fake 0.4 -> FN
    assert a["confusion"] == {"tp": 1, "tn": 1, "fp": 1, "fn": 1}
    assert (a["accuracy"], a["fpr"], a["fnr"], a["f1"]) == (0.5, 0.5, 0.5, 0.5)
    # b: real 0.1 -> TN, fakes 0.8, 0.6 -> TP, 0.3 -> FN
    assert b["confusion"] == {"tp": 2, "tn": 1, "fp": 0, "fn": 1}
    assert b["accuracy"] == 0.75 and b["fpr"] == 0.0 and b["fnr"] == pytest.approx(1 / 3)
    assert b["f1"] == pytest.approx(0.8)
    assert r["largest_gaps"]["fpr"] == {"gap": 0.5, "highest": "a", "lowest": "b"}
    assert r["largest_gaps"]["accuracy"]["gap"] == pytest.approx(0.25)


def test_distribution_counts_and_shares() -> None:
    d = distribution([0, 1, 1, 1], ["male", "female", "female", "male"], ["white", "asian", "white", "white"])
    assert d["ethnicity"]["fake"] == {"asian": {"n": 1, "share": 0.3333}, "white": {"n": 2, "share": 0.6667}}
    assert d["gender_x_ethnicity"]["all"]["male/white"]["n"] == 2
    assert d["gender"]["real"] == {"male": {"n": 1, "share": 1.0}}


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "data" / "faces"
    for i, (label, src) in enumerate([("fake", "gan"), ("fake", "gan"), ("real", "lfw")]):
        folder = root / label / src
        folder.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(np.full((8, 8, 3), i * 40, np.uint8)).save(folder / f"img{i}.png")
    return root


def test_annotate_from_manifest_and_cache(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    (root.parent / "manifest.csv").write_text(
        "file,kind,label,source,note\n"
        "faces/fake/gan/img0.png,faces,fake,gan,group=female/latino\n"
        "faces/fake/gan/img1.png,faces,fake,gan,group=male/white\n"
        "faces/real/lfw/img2.png,faces,real,lfw,\n", encoding="utf-8")
    out = tmp_path / "ann.csv"
    result = annotate(root, method="manifest", out=out)
    by_file = {a.file: (a.gender, a.ethnicity) for a in result.values()}
    assert by_file == {"fake/gan/img0.png": ("female", "latino hispanic"), "fake/gan/img1.png": ("male", "white")}
    assert read_annotations(out) == result
    assert annotate(root, method="manifest", out=out) == result  # cached: same rows


def test_annotate_from_user_metadata_csv_and_jsonl(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    meta = tmp_path / "meta.jsonl"
    meta.write_text(json.dumps({"file": "real/lfw/img2.png", "gender": "F", "ethnicity": "Indian"}) + "\n")
    result = annotate(root, method="metadata", out=tmp_path / "a.csv", metadata=meta)
    assert [(a.gender, a.ethnicity, a.method) for a in result.values()] == [("female", "indian", "metadata")]
    bad = tmp_path / "bad.csv"
    bad.write_text("gender,ethnicity\nmale,white\n")
    with pytest.raises(UdfdError, match="needs `file` or `sha256`"):
        annotate(root, method="metadata", out=tmp_path / "b.csv", metadata=bad)


def test_deepface_offline_or_missing_says_what_to_do(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    with pytest.raises(UdfdError, match="requirements-fairness.txt|need network|needs network"):
        annotate(root, method="deepface", out=tmp_path / "d.csv")


@pytest.mark.slow
def test_train_image_balance_smoke(tmp_path: Path) -> None:
    """--balance on the 16 synthetic images: two annotated ethnicities, copies only geometric, counts in the card."""
    import csv

    from training.data import synthetic_dataset
    from training.train_image import main
    from udfd.evaluation.fairness import image_files, sha256_file

    root = synthetic_dataset(tmp_path / "syn")
    files = image_files(root)
    ann = tmp_path / "ann.csv"
    with ann.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sha256", "file", "gender", "ethnicity", "method"])
        for i, p in enumerate(files):
            w.writerow([sha256_file(p), p.relative_to(root).as_posix(), "female", "white" if i % 4 else "asian", "t"])
    out = tmp_path / "ckpt"
    arch = '{"image_size": 32, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}'
    main(["--data", str(root), "--output", str(out), "--epochs", "1", "--batch-size", "8", "--report-to", "none",
          "--cache-dir", str(tmp_path / "cache"), "--arch", arch, "--balance", "--annotations", str(ann),
          "--min-share", "0.4"])
    meta = json.loads((out / "config.json").read_text())["udfd"]["training"]
    counts = meta["balance_counts"]
    after = counts["after"]
    total = sum(c["real"] + c["fake"] for c in after.values())
    assert all((c["real"] + c["fake"]) / total >= 0.4 - 1e-9 for c in after.values())
    assert sum(c["real"] for c in after.values()) == sum(c["fake"] for c in after.values())
    assert "Balancing (`--balance`)" in (out / "README.md").read_text()


def test_cli_annotate_report_and_evaluate_groups_into_a_card(tmp_path: Path, tiny_vit_dir: Path,
                                                             capsys: pytest.CaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from udfd.cli.main import main

    root = _tree(tmp_path)
    (root.parent / "manifest.csv").write_text(
        "file,kind,label,source,note\n"
        "faces/fake/gan/img0.png,faces,fake,gan,group=female/latino\n"
        "faces/fake/gan/img1.png,faces,fake,gan,group=male/white\n"
        "faces/real/lfw/img2.png,faces,real,lfw,group=male/white\n", encoding="utf-8")
    ann = tmp_path / "ann.csv"
    assert main(["fairness", "annotate", str(root), "--out", str(ann)]) == 0
    assert json.loads(capsys.readouterr().out)["annotated"] == 3
    assert main(["fairness", "report", str(root), "--annotations", str(ann), "--out", str(tmp_path / "rep")]) == 0
    assert "| latino hispanic | 0 | 0.000 | 1 | 0.500 |" in capsys.readouterr().out
    assert (tmp_path / "rep" / "distribution_ethnicity.png").is_file()

    card_dir = tmp_path / "model"
    card_dir.mkdir()
    (card_dir / "README.md").write_text("# model\n\nSome card.\n")
    monkeypatch.setenv("UDFD_MODEL_VIT", f"local-dir:{tiny_vit_dir}")
    for _ in range(2):  # the second run replaces the section instead of appending another
        assert main(["evaluate", str(root), "--detector", "vit", "--groups", str(ann), "--card", str(card_dir),
                     "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
    groups = report["per_group"]["ethnicity"]["groups"]
    assert set(groups) == {"latino hispanic", "white"} and report["per_group"]["annotated"] == 3
    assert groups["white"]["n_real"] == 1 and groups["white"]["n_fake"] == 1
    card = (card_dir / "README.md").read_text()
    assert card.count("## Fairness") == 1 and "both the FPR" in card and "Some card." in card
    assert (card_dir / "fairness_confusion.png").is_file()


def test_manifest_notes_with_dataset_labels_give_groups() -> None:
    """UTKFace notes carry gender and race, FairFace notes gender only, generated photos group=<gender>/<ethnicity>."""
    from udfd.evaluation.fairness import note_groups

    assert note_groups("age=21;gender=female;race=asian;folder_agrees=True") == ("female", "asian")
    assert note_groups("age=0-2;gender=male;format=JPEG") == ("male", "unknown")
    assert note_groups("group=female/white") == ("female", "white")
    assert note_groups("yunet=0.93") is None
