"""`udfd predict` / `udfd evaluate` JSON output and bad-file handling, in-process through cli.main."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from udfd.cli.main import main
from udfd.loader import clear_cache

VERDICT_KEYS = {"file", "kind", "faces", "overall", "model_versions", "timings_ms"}


@pytest.fixture(autouse=True)
def _tiny_model(monkeypatch, tiny_vit_dir):
    monkeypatch.setenv("UDFD_MODEL_VIT", f"local-dir:{tiny_vit_dir}")
    monkeypatch.setenv("UDFD_DETECTORS", "vit")  # a tiny model: these tests are about the CLI, not the default
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    clear_cache()


def _tree(tmp_path, n=3):
    rng = np.random.default_rng(0)
    for label in ("real", "fake"):
        for src in ("s1", "s2"):
            d = tmp_path / label / src / "deeper"
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return tmp_path


def _check_verdict(v):
    assert set(v) >= VERDICT_KEYS
    assert v["kind"] == "image"
    assert v["overall"]["label"] in ("real", "fake") and 0 <= v["overall"]["fake_prob"] <= 1
    assert isinstance(v["overall"]["uncertain"], bool)
    for face in v["faces"]:
        assert len(face["box"]) == 4 and all(isinstance(c, int) for c in face["box"])
        assert set(face["scores"]) == {"vit"} and 0 <= face["scores"]["vit"] <= 1
        assert face["verdict"]["label"] in ("real", "fake")
    assert "vit" in v["model_versions"] and v["timings_ms"]["total"] > 0


def test_predict_json_on_a_real_face(face_image_path, capsys):
    assert main(["predict", str(face_image_path), "--json"]) == 0
    v = json.loads(capsys.readouterr().out)
    _check_verdict(v)
    assert v["faces"][0]["face_found"] is True
    assert v["file"] == str(face_image_path)


def test_predict_folder_with_a_bad_file_reports_it_and_scores_the_rest(tmp_path, capsys):
    _tree(tmp_path, n=1)
    (tmp_path / "real" / "s1" / "broken.jpg").write_text("this is not an image")
    assert main(["predict", str(tmp_path), "--json"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    errors = [x for x in lines if "error" in x]
    assert len(lines) == 5 and len(errors) == 1
    assert "broken.jpg" in errors[0]["file"] and "not a supported image" in errors[0]["error"]
    for v in lines:
        if "error" not in v:
            _check_verdict(v)
            assert v["faces"][0]["face_found"] is False  # noise has no face: whole image scored


def test_predict_human_output(face_image_path, capsys):
    assert main(["predict", str(face_image_path)]) == 0
    out = capsys.readouterr().out
    assert str(face_image_path) in out and "fake_prob=" in out


def test_evaluate_json_schema(tmp_path, capsys):
    _tree(tmp_path, n=3)
    assert main(["evaluate", str(tmp_path), "--detector", "vit", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    m = r["overall"]
    for key in ("n_real", "n_fake", "accuracy", "precision", "recall", "f1", "roc_auc", "average_precision",
                "log_loss", "brier", "confusion", "threshold"):
        assert key in m
    assert m["n_real"] == 6 and m["n_fake"] == 6
    assert m["threshold"] == pytest.approx(0.45)
    assert set(r["per_source"]) == {"s1", "s2"}
    assert r["per_source"]["s1"]["n"] == 6
    assert r["errors"] == []


def test_evaluate_source_keeps_only_those_folders_and_an_unknown_one_is_a_clear_error(tmp_path, capsys, caplog):
    _tree(tmp_path, n=3)
    assert main(["evaluate", str(tmp_path), "--detector", "vit", "--source", "s2", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert set(r["per_source"]) == {"s2"} and r["overall"]["n"] == 6 and r["subset"] == "all sources:s2"
    assert main(["evaluate", str(tmp_path), "--detector", "vit", "--source", "s2", "--source", "nope"]) == 2
    assert "no image of source(s) nope" in caplog.text


def test_evaluate_unknown_model_ref_is_a_clear_error(tmp_path, caplog):
    _tree(tmp_path, n=1)
    assert main(["evaluate", str(tmp_path), "--detector", "not/a-ref"]) == 2
    assert "ambiguous model reference" in caplog.text


def test_python_dash_m_entry_point(face_image_path, tiny_vit_dir):
    out = subprocess.run([sys.executable, "-m", "udfd", "predict", str(face_image_path), "--json"],
                         capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "UDFD_MODEL_VIT": f"local-dir:{tiny_vit_dir}",
                              "UDFD_DETECTORS": "vit"})
    assert out.returncode == 0, out.stderr
    _check_verdict(json.loads(out.stdout))


def test_evaluate_perturb_split_reliability_out_and_cards(tmp_path, capsys, monkeypatch, tiny_vit_dir):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_vit_dir, model)
    (model / "README.md").write_text("# card\n\n## Intended use and limitations\n\nresearch only\n")
    monkeypatch.setenv("UDFD_MODEL_VIT", f"local-dir:{model}")
    clear_cache()
    data = _tree(tmp_path / "data", n=3)
    keep = ["real/s1/deeper/0.png", "real/s2/deeper/1.png", "fake/s1/deeper/2.png", "fake/s2/deeper/0.png"]
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"seed": 0, "splits": {"test": keep, "train": []}}))
    png, out = tmp_path / "rel.png", tmp_path / "r.json"
    args = ["evaluate", str(data), "--detector", "vit", "--perturb", "jpeg50,blur1", "--split-file", str(split),
            "--reliability", str(png), "--out", str(out), "--write-cards"]
    assert main([*args, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["overall"]["n"] == 4 and r["subset"].endswith(":test")
    assert 0 <= r["calibration"]["ece"] <= 1 and sum(b["count"] for b in r["calibration"]["bins"]) == 4
    rob = r["robustness"]["vit"]
    assert r["perturbations"] == ["jpeg50", "blur1"] and list(rob["perturbed"]) == ["jpeg50", "blur1"]
    assert rob["clean"]["accuracy"] == pytest.approx(r["overall"]["accuracy"])
    for d in rob["perturbed"].values():
        assert d["n"] == 4 and 0 <= d["flip_share"] <= 1 and d["mean_abs_delta_fake_prob"] > 0
        assert d["delta_accuracy"] == pytest.approx(d["accuracy"] - rob["clean"]["accuracy"])
    assert json.loads(out.read_text()) == r
    assert Image.open(png).size[0] > 100
    card = (model / "README.md").read_text()
    assert card.index("## Robustness") < card.index("## Intended use") and "| jpeg50 |" in card
    # a second run replaces the table instead of adding another
    assert main([*args[:5], "noise0.05", *args[6:]]) == 0
    card = (model / "README.md").read_text()
    assert card.count("## Robustness") == 1 and "| noise0.05 |" in card and "| jpeg50 |" not in card
    assert "robustness of vit" in capsys.readouterr().out


def test_evaluate_bad_perturbation_is_a_clear_error(tmp_path, caplog):
    _tree(tmp_path, n=1)
    assert main(["evaluate", str(tmp_path), "--perturb", "jpeg50,sharpen2"]) == 2
    assert "unknown perturbation 'sharpen2'" in caplog.text
