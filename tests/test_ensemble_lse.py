"""The `lse` stacking rule (a soft maximum over terms): its math, torch against numpy, fitting from score files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from udfd.detectors.base import get_family
from udfd.detectors.ensemble_terms import term_matrix
from udfd.evaluation.stacking import FoldData, auc, fit_lse, loso_table
from udfd.hub import read_config


def _rows(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three members: 0 separates kind A fakes, 1 kind B fakes, 2 is noise; half the rows real."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(int)
    kind_a = (np.arange(n) % 4) == 1
    d = rng.normal(0, 1, (n, 3)) * [1.0, 2.0, 0.5] + [0.3, -1.0, 0.0]
    d[kind_a, 0] += 3.0
    d[(y == 1) & ~kind_a, 1] += 6.0
    return d, y


def test_terms_are_standardised_on_the_reals_and_the_score_is_a_soft_maximum() -> None:
    d, y = _rows()
    stack = fit_lse(d, y, [[0], [1], [1, 2]])
    z = (d - stack.mu) / stack.sd
    t = (z @ term_matrix(stack.terms, 3) - stack.term_mu) / stack.term_sd
    reals = t[y == 0]
    np.testing.assert_allclose(reals.mean(0), 0.0, atol=1e-9)  # every term: 0 at the reals' mean ...
    np.testing.assert_allclose(reals.std(0), 1.0, atol=1e-9)  # ... in units of the reals' spread
    s = stack.score(d) - stack.bias
    assert (s >= t.max(axis=1) - 1e-12).all() and (s <= t.max(axis=1) + np.log(3) + 1e-12).all()
    # each kind of fake is caught by its own term, so the soft maximum beats either member alone
    assert auc(y, stack.score(d)) > max(auc(y, d[:, 0]), auc(y, d[:, 1])) + 0.05


def test_the_offset_puts_the_decision_point_between_the_classes() -> None:
    d, y = _rows(seed=1)
    stack = fit_lse(d, y, [[0], [1]])
    p = 1 / (1 + np.exp(-stack.score(d)))
    assert stack.bias < 0, "a log-sum-exp is positive on most reals: the offset must pull it down"
    assert abs(p.mean() - y.mean()) < 0.05 and ((p > 0.5) == y).mean() > 0.75


def test_bad_terms_are_refused() -> None:
    d, y = _rows()
    with pytest.raises(ValueError, match="term 1"):
        fit_lse(d, y, [[0], [3]])
    with pytest.raises(ValueError, match="term 0"):
        term_matrix([[]], 2)
    with pytest.raises(ValueError, match="real faces"):
        fit_lse(d[y == 1], y[y == 1], [[0]])


def test_loso_table_fits_lse_on_each_folds_own_validation_rows() -> None:
    d, y = _rows(seed=2)
    folds = [FoldData("a", d[:200], y[:200], d[200:], y[200:])]
    with pytest.raises(ValueError, match="needs terms"):
        loso_table(folds, ["m0", "m1", "m2"], rules=("lse",))
    table = loso_table(folds, ["m0", "m1", "m2"], rules=("mean", "lse"), terms=[[0], [1], [2]])
    assert table["ensemble:lse"]["a"] == pytest.approx(auc(y[200:], fit_lse(d[:200], y[:200], [[0], [1], [2]])
                                                           .score(d[200:])))


def _tiny(terms: list[list[int]], d: np.ndarray, y: np.ndarray) -> object:
    cls = get_family("ensemble")
    torch.manual_seed(0)
    stack = fit_lse(d, y, terms).to_dict()
    return cls.create({"members": [{"family": "cnn"}, {"family": "cnn", "arch": {"image_size": 48}},
                                   {"family": "cnn"}], "stack": stack})


def test_the_torch_ensemble_combines_as_the_numpy_stack_and_survives_a_round_trip(tmp_path: Path) -> None:
    from udfd.loader import load_detector

    d, y = _rows(seed=3)
    ens = _tiny([[0], [1, 2]], d, y)
    stack = fit_lse(d, y, [[0], [1, 2]])
    got = ens.net.combine(torch.tensor(d[:20], dtype=torch.float32))[:, 1].double().numpy()
    np.testing.assert_allclose(got, stack.score(d[:20]), atol=1e-4)
    ens.set_calibration(temperature=1.7, threshold=0.4)
    ens.save_pretrained(tmp_path / "e", fp16=False)
    saved = read_config(tmp_path / "e")["udfd"]["stack"]
    assert saved["terms"] == [[0], [1, 2]] and saved["rule"] == "lse" and len(saved["term_sd"]) == 2
    back = load_detector(f"local-dir:{tmp_path / 'e'}")
    faces = [np.random.default_rng(i).integers(0, 256, (50, 40, 3), dtype=np.uint8) for i in range(3)]
    a = [s.fake_prob for s in ens.predict(ens.preprocess(faces))]
    b = [s.fake_prob for s in back.predict(back.preprocess(faces))]
    np.testing.assert_allclose(a, b, atol=1e-3)  # fp32 members saved as fp32: the same function
    # the fake_prob is sigmoid(s / T) of the stack's score on the members' log-odds
    dm = back.member_log_odds(back.preprocess(faces)).double().numpy()
    np.testing.assert_allclose(b, 1 / (1 + np.exp(-stack.score(dm) / 1.7)), atol=1e-4)


def _scores(root: Path, member: str, col: int, d: np.ndarray, y: np.ndarray) -> None:
    (root / member).mkdir(parents=True, exist_ok=True)
    half = len(y) // 2
    for fold in ("loso_a", "loso_b", "in_dist"):
        splits = ("val", "test") if fold == "in_dist" else ("val", "heldout")
        with (root / member / f"{fold}.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "source", "split", "fake_prob"])
            for k, split in enumerate(splits):
                for i in range(k * half, (k + 1) * half):
                    w.writerow([f"{fold}/{i}.jpg", int(y[i]), fold, split, 1 / (1 + np.exp(-d[i, col]))])


def test_fit_ensemble_writes_an_lse_checkpoint_and_refuses_bad_terms(tmp_path: Path) -> None:
    from training.fit_ensemble import main as fit

    d, y = _rows(n=400, seed=4)
    for j, name in enumerate(("ka", "kb", "noise")):
        _scores(tmp_path / "s", name, j, d, y)
    refs = []
    for j in range(3):
        cls = get_family("cnn")
        torch.manual_seed(j)
        cls.create(cls.tiny_arch).save_pretrained(tmp_path / f"m{j}", fp16=False)
        refs.append(f"local-dir:{tmp_path / f'm{j}'}")
    common = ["--member", f"ka={refs[0]}", "--member", f"kb={refs[1]}", "--member", f"noise={refs[2]}",
              "--scores", str(tmp_path / "s")]
    report = fit([*common, "--term", "ka", "--term", "kb+noise", "--output", str(tmp_path / "ens")])
    assert "ensemble:lse" in report["loso"] and report["rule"] == "lse", "the soft maximum wins on two kinds of fake"
    assert report["loso_mean"]["ensemble:lse"] > report["loso_mean"]["ensemble:mean"]
    meta = read_config(tmp_path / "ens")["udfd"]
    assert meta["stack"]["terms"] == [[0], [1, 2]] and meta["stack"]["bias"] < 0
    card = (tmp_path / "ens" / "README.md").read_text()
    assert "`ka`, `kb+noise`" in card and "## Terms" in card and "## Weights" not in card
    with pytest.raises(SystemExit, match="in no term"):
        fit([*common, "--term", "ka", "--term", "kb"])
    with pytest.raises(SystemExit, match="unknown member"):
        fit([*common, "--term", "ka+kb+noise", "--term", "kc"])
    with pytest.raises(SystemExit):  # argparse: --rule lse without terms
        fit([*common, "--rule", "lse"])
    assert json.loads(json.dumps(meta))  # plain JSON, no pickle


def test_fit_ensemble_writes_each_folds_held_out_scores_for_a_paired_gain(tmp_path: Path) -> None:
    """--heldout-scores: the chosen rule's held-out scores as a member's score files, whose AUC per fold is the
    report's LOSO column (what training/loso_gain.py compares)."""
    from training.fit_ensemble import main as fit
    from training.fit_ensemble import read_scores

    d, y = _rows(n=400, seed=6)
    for j, name in enumerate(("ka", "kb", "noise")):
        _scores(tmp_path / "s", name, j, d, y)
    common = [arg for j, name in enumerate(("ka", "kb", "noise")) for arg in ("--member", f"{name}=cnn")]
    out = tmp_path / "s" / "ens"
    report = fit([*common, "--scores", str(tmp_path / "s"), "--rule", "lse", "--term", "ka", "--term", "kb+noise",
                  "--heldout-scores", str(out)])
    assert sorted(p.name for p in out.glob("*.csv")) == ["loso_a.csv", "loso_b.csv"]
    for fold in ("a", "b"):
        rows = read_scores(out / f"loso_{fold}.csv")
        assert {r["split"] for r in rows} == {"heldout"} and len(rows) == 200
        got = auc(np.array([r["label"] for r in rows]), np.array([r["fake_prob"] for r in rows]))
        assert got == pytest.approx(report["loso"]["ensemble:lse"][fold], abs=1e-4)


def test_a_kinds_view_reads_the_kinds_a_fold_has_heads_for() -> None:
    from training.kinds import KindsFit
    from training.loso_frozen import present_kinds

    head = KindsFit(("face_swap", "gan"), np.zeros((2, 4)), np.zeros(2), {"face_swap": 1.0, "gan": 1.0})
    assert present_kinds(head, ("gan", "diffusion"), "sdfd_sd21") == ("gan",)  # diffusion's only source held out
    assert present_kinds(head, None, "dfdc") is None
    with pytest.raises(ValueError, match="none of the kinds"):
        present_kinds(head, ("diffusion",), "sdfd_sd21")

