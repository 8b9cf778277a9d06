"""The ensemble family and its stacking: combination math, LOSO rules, fitting from score files, loading members."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from udfd.detectors.base import get_family
from udfd.evaluation.loso import FOLDS as LOSO_FOLDS
from udfd.evaluation.stacking import FoldData, auc, fit_stack, log_odds, loso_table
from udfd.hub import read_config

FOLDS = ("a", "b", "c")


def _faces(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(40 + 7 * i, 50, 3), dtype=np.uint8) for i in range(n)]


def test_fit_stack_weights_the_informative_member() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    good = (2 * y - 1) * 2.0 + rng.normal(0, 1, 400)
    noise = rng.normal(0, 3, 400)
    stack = fit_stack(np.stack([good, noise], 1), y, rule="val")
    assert abs(stack.weights[0]) > 5 * abs(stack.weights[1])
    assert auc(y, stack.score(np.stack([good, noise], 1))) > 0.9
    mean = fit_stack(np.stack([good, noise], 1), y, rule="mean")
    assert mean.weights == (0.5, 0.5) and mean.rule == "mean"


def test_nested_rule_never_fits_on_the_fold_it_scores() -> None:
    """A member that is perfect on fold 'a' only: nested weights for 'a' come from 'b' and 'c', where it is noise."""
    rng = np.random.default_rng(1)
    folds = []
    for name in FOLDS:
        y = rng.integers(0, 2, 200)
        informative = (2 * y - 1) * 3.0 + rng.normal(0, 0.5, 200)
        steady = (2 * y - 1) * 1.0 + rng.normal(0, 1, 200)
        first = informative if name == "a" else rng.normal(0, 1, 200)
        d = np.stack([first, steady], 1)
        folds.append(FoldData(name, d, y, d, y))
    table = loso_table(folds, ["spiky", "steady"], rules=("nested",))
    assert table["spiky"]["a"] > 0.99 and table["spiky"]["b"] < 0.7
    # Fitted on b and c, where 'spiky' is noise, the nested weights lean on 'steady': fold a scores ~ steady's AUC.
    assert table["ensemble:nested"]["a"] == pytest.approx(table["steady"]["a"], abs=0.05)


def test_pooled_loso_asks_one_threshold_to_fit_every_fold() -> None:
    """A member that ranks every fold's held-out rows perfectly but scores fold 'a''s held-out source 10 higher
    (reals and fakes alike): each fold's AUC is 1, the pooled one is not. The ensemble standardises on each fold's
    validation rows, which come from the training sources and do not show the shift, so it keeps it too."""
    from udfd.evaluation.stacking import loso_pooled

    rng = np.random.default_rng(4)

    def rows(shift: float) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 2, 200)
        return ((2 * y - 1) * 2.0 + rng.uniform(-1, 1, 200) + shift)[:, None], y

    folds = [FoldData(name, *rows(0.0), *rows(10.0 if name == "a" else 0.0)) for name in FOLDS]
    table = loso_table(folds, ["shifted"], rules=("mean",))
    pooled = loso_pooled(folds, ["shifted"], rules=("mean",))
    assert all(v == 1.0 for col in table.values() for v in col.values())
    assert pooled["shifted"] < 0.9 and pooled["ensemble:mean"] < 0.9
    steady = [FoldData(f.name, f.d_val, f.y_val, f.d_heldout - (10.0 if f.name == "a" else 0.0), f.y_heldout)
              for f in folds]
    assert loso_pooled(steady, ["steady"], rules=("mean",)) == {"steady": 1.0, "ensemble:mean": 1.0}


def test_nested_pos_never_uses_a_member_upside_down() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    inverted = -(2 * y - 1) * 2.0 + rng.normal(0, 1, 500)  # a member that is reliably wrong
    weak = (2 * y - 1) * 0.5 + rng.normal(0, 1, 500)
    d = np.stack([inverted, weak], 1)
    assert fit_stack(d, y, rule="nested").weights[0] < 0, "plain stacking flips the inverted member"
    pos = fit_stack(d, y, rule="nested_pos")
    assert pos.weights[0] == 0.0 and pos.weights[1] > 0


def test_log_odds_is_the_inverse_of_sigmoid() -> None:
    p = np.array([0.01, 0.3, 0.5, 0.9])
    np.testing.assert_allclose(1 / (1 + np.exp(-log_odds(p))), p, atol=1e-9)


def _member(folder: Path, seed: int, size: int) -> str:
    torch.manual_seed(seed)
    cls = get_family("cnn")
    det = cls.create({**cls.tiny_arch, "image_size": size})
    det.set_calibration(temperature=1.3 + seed, threshold=0.5)
    det.save_pretrained(folder, metadata={"version": f"m{seed}"}, fp16=False)
    return f"local-dir:{folder}"


def _write_scores(root: Path, member: str, rng: np.random.Generator, strength: float, *,
                  folds: tuple[str, ...] = FOLDS, n: int = 60,
                  row: Callable[[str, int], tuple[str, float]] | None = None) -> None:
    """Score files of one member: per fold, n val and n held-out (in_dist: test) rows alternating real / fake.
    `row(fold, i)` gives a row's source and strength (default: the fold's name and `strength`)."""
    (root / member).mkdir(parents=True)
    for fold in [*(f"loso_{f}" for f in folds), "in_dist"]:
        splits = ("val", "test") if fold == "in_dist" else ("val", "heldout")
        with (root / member / f"{fold}.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "source", "split", "fake_prob"])
            for split in splits:
                for i in range(n):
                    label = i % 2
                    source, k = row(fold, i) if row else (fold, strength)
                    p = 1 / (1 + np.exp(-((2 * label - 1) * k + rng.normal(0, 1))))
                    w.writerow([f"{'fake' if label else 'real'}/{fold}/{split}{i}.jpg", label, source, split, p])


def test_fit_ensemble_writes_a_loadable_calibrated_checkpoint(tmp_path: Path) -> None:
    from training.fit_ensemble import main as fit
    from udfd.loader import load_detector

    rng = np.random.default_rng(2)
    _write_scores(tmp_path / "scores", "strong", rng, 2.0)
    _write_scores(tmp_path / "scores", "weak", rng, 0.3)
    refs = [_member(tmp_path / "m0", 0, 32), _member(tmp_path / "m1", 1, 48)]
    out = tmp_path / "ens"
    report = fit(["--member", f"strong={refs[0]}", "--member", f"weak={refs[1]}", "--scores",
                  str(tmp_path / "scores"), "--output", str(out)])
    assert set(report["loso"]) == {"strong", "weak", "ensemble:mean", "ensemble:val", "ensemble:nested",
                                   "ensemble:nested_pos"}
    assert report["loso_mean"]["strong"] > report["loso_mean"]["weak"]
    assert report["rule"] in ("mean", "val", "nested", "nested_pos")
    meta = read_config(out)["udfd"]
    assert meta["family"] == "ensemble" and [m["name"] for m in meta["members"]] == refs
    assert "Leave-one-source-out" in (out / "README.md").read_text()

    ens = load_detector(f"local-dir:{out}")
    members = [load_detector(r) for r in refs]
    faces = _faces(4)
    got = [s.fake_prob for s in ens.predict(ens.preprocess(faces))]
    # By hand: each member's calibrated log-odds on its own preprocessing, standardised, weighted, sigmoid(s / T).
    d = np.stack([log_odds(np.array([s.fake_prob for s in m.predict(m.preprocess(faces))])) for m in members], 1)
    st = meta["stack"]
    s = ((d - st["mu"]) / st["sd"]) @ np.array(st["weights"]) + st["bias"]
    expected = 1 / (1 + np.exp(-s / meta["temperature"]))
    # The 32 px member sees the crop resized twice (to 48 px, then 32 px in torch): close, not identical.
    np.testing.assert_allclose(got, expected, atol=0.05)
    assert ens.threshold == pytest.approx(meta["threshold"])
    shown = ens.member_scores(ens.preprocess(faces))
    assert set(shown[0]) == {"cnn#0", "cnn#1"}, "two members loaded by reference are both named cnn"


def test_a_member_that_cannot_be_combined_is_refused() -> None:
    """A video model (lip_lstm scores lip sequences, not face crops) cannot be an image ensemble's member."""
    from udfd.errors import ModelUnavailableError

    lips = get_family("lip_lstm")
    member = lips.create(lips.tiny_arch)
    with pytest.raises(ModelUnavailableError, match="cannot be combined"):
        get_family("ensemble")([member], specs=[{"family": "lip_lstm"}])


def test_ensemble_checkpoint_json_has_no_pickle(tmp_path: Path) -> None:
    cls = get_family("ensemble")
    det = cls.create(cls.tiny_arch)
    det.save_pretrained(tmp_path)
    json.loads((tmp_path / "config.json").read_text())
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.bin"))


def test_the_verdict_carries_each_members_score_when_an_ensemble_decides() -> None:
    from udfd.config import Settings
    from udfd.pipeline import analyze_image

    torch.manual_seed(0)
    cls = get_family("ensemble")
    ens = cls.create(cls.tiny_arch)
    rng = np.random.default_rng(0)
    verdict = analyze_image(_png(rng), settings=Settings(), detectors=[ens])
    face = verdict.faces[0]
    assert set(face.members) == set(ens.member_names) and len(face.members) == 2
    expected = ens.member_scores(ens.preprocess([np.zeros((8, 8, 3), np.uint8)]))  # shape check only
    assert set(expected[0]) == set(face.members)
    assert verdict.to_dict()["faces"][0]["members"] == face.members
    assert all(0.0 <= p <= 1.0 for p in face.members.values())


def _png(rng: np.random.Generator) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_the_embedded_default_is_the_ensemble_and_scores_an_example_with_its_members() -> None:
    """The shipped default end to end: models/udfd-ensemble loads its members by name and scores a real photo."""
    from udfd.config import PROJECT_ROOT, Settings
    from udfd.pipeline import analyze_image

    settings = Settings()
    assert settings.detectors[0] == "ensemble"
    verdict = analyze_image(PROJECT_ROOT / "examples" / "real_fairface_0098.jpg", settings=settings)
    face = verdict.faces[0]
    assert face.face_found and set(face.scores) == {"ensemble"}
    config = json.loads((PROJECT_ROOT / "models" / "udfd-ensemble" / "config.json").read_text(encoding="utf-8"))
    names = {m["name"] + (f"[{'+'.join(m['kinds'])}]" if m.get("kinds") else "") for m in config["udfd"]["members"]}
    assert names and set(face.members) == names  # every member, loaded by its short name (a kinds view: name[kinds])
    assert 0.0 <= face.fake_prob <= 1.0 and verdict.model_versions["ensemble"].startswith("udfd-ensemble@")


def _write_sourced_scores(root: Path, member: str, rng: np.random.Generator, strong: set[str]) -> None:
    """Score files whose rows carry the folds' real source names; the member separates the folds in `strong` well
    and the others barely."""
    def row(_fold: str, i: int) -> tuple[str, float]:
        src_fold = LOSO_FOLDS[i // 2 % len(LOSO_FOLDS)]
        return (src_fold.fake_sources if i % 2 else src_fold.real_sources)[0], 2.0 if src_fold.name in strong else 0.1

    _write_scores(root, member, rng, 0.0, folds=tuple(f.name for f in LOSO_FOLDS), n=200, row=row)


def test_a_specialist_ensemble_is_judged_and_calibrated_on_its_folds_only(tmp_path: Path) -> None:
    from training.fit_ensemble import main as fit

    rng = np.random.default_rng(5)
    swap = {"dfdc", "lfw_faceswap"}
    _write_sourced_scores(tmp_path / "scores", "swapper", rng, swap)
    _write_sourced_scores(tmp_path / "scores", "ganner", rng, {f.name for f in LOSO_FOLDS} - swap)
    refs = [_member(tmp_path / "m0", 0, 32), _member(tmp_path / "m1", 1, 32)]
    common = ["--member", f"swapper={refs[0]}", "--member", f"ganner={refs[1]}", "--scores", str(tmp_path / "scores"),
              "--rule", "val"]
    everything = fit(common)
    out = tmp_path / "ens"
    (tmp_path / "extra.md").write_text("## What it is for\n\nFace-swap videos.\n")
    special = fit([*common, "--folds", "dfdc,lfw_faceswap", "--title", "face-swap specialist", "--output", str(out),
                   "--card-extra", str(tmp_path / "extra.md")])
    assert set(everything["loso"]["swapper"]) == {f.name for f in LOSO_FOLDS}
    assert set(special["loso"]["swapper"]) == swap and special["folds"] == ["dfdc", "lfw_faceswap"]
    # In-dist rows: only the two folds' sources (2 of 5 folds' rows), so the weights lean on the swap member.
    assert special["n"]["in_dist_val"] == 2 * 200 // len(LOSO_FOLDS) < everything["n"]["in_dist_val"] == 200
    w_all, w_special = everything["stack"]["weights"], special["stack"]["weights"]
    assert w_special[0] / w_special[1] > w_all[0] / w_all[1] and w_special[0] > w_special[1]
    meta = read_config(out)["udfd"]
    assert meta["display"]["title"] == "face-swap specialist"
    assert "dfdc, lfw_faceswap only" in meta["display"]["summary"]
    card = (out / "README.md").read_text()
    assert "A specialist: only the folds dfdc, lfw_faceswap" in card and "| stylegan (not judged) |" in card
    table = card[card.index("| fold |"):card.index("| stylegan (not judged) |")]
    assert "| **pooled** |" in table and "\n\n" not in table  # one Markdown table: mean, pooled, not-judged rows
    assert card.index("## What it is for\n\nFace-swap videos.") < card.index("## Limits")
    assert set(special["loso_not_judged"]["swapper"]) == {f.name for f in LOSO_FOLDS} - swap
    with pytest.raises(SystemExit, match="unknown fold"):
        fit([*common, "--folds", "dfdc,celebdf"])


def test_the_default_video_detector_is_the_face_swap_specialist_and_scores_a_face() -> None:
    from udfd.config import Settings
    from udfd.loader import load_detector

    settings = Settings()
    assert settings.video_detectors[0] == "ensemble_swap"
    det = load_detector("ensemble_swap", settings=settings)
    meta = read_config(Path(settings.models["ensemble_swap"].removeprefix("local-dir:")))["udfd"]
    # 1.2: the image default's network, scored by its face-swap head alone (tests/test_kinds_view.py)
    assert meta["members"] == [{"name": "sbi_lite0"}, {"name": "effnet_lite0_kinds", "kinds": ["face_swap"]}]
    assert meta["display"]["summary"].endswith("(dfdc, lfw_faceswap only)")
    scores = det.member_scores(det.preprocess(_faces(2)))
    assert set(scores[0]) == {"sbi_lite0", "effnet_lite0_kinds[face_swap]"}
    image_default = load_detector("effnet_lite0_kinds", settings=settings)
    assert det.members[1].module() is getattr(image_default, "eager", image_default).module()  # no second copy
    if hasattr(image_default, "onnx_scores"):  # served through ONNX: the view runs the image default's session
        assert det.members[1].onnx_scores is image_default.onnx_scores
    assert all(0.0 <= s.fake_prob <= 1.0 for s in det.predict(det.preprocess(_faces(2))))
