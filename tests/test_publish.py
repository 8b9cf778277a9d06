"""Hub-first detectors with the embedded fallback, and `udfd publish` (offline, through the HfApi injection point)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from tests.test_hub import FakeHfApi
from udfd.cli.publish import cmd_publish, plan
from udfd.config import DEFAULT_MODELS, Settings
from udfd.detectors.base import get_family
from udfd.errors import ModelUnavailableError
from udfd.loader import clear_cache, load_detector


def _checkpoint(folder: Path) -> Path:
    torch.manual_seed(0)
    cls = get_family("cnn")
    cls.create(cls.tiny_arch).save_pretrained(folder, metadata={"version": "7"})
    return folder


def test_the_first_reference_that_loads_serves_and_the_fallback_is_recorded(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    clear_cache()
    local = _checkpoint(tmp_path / "udfd-cnn")
    settings = Settings(models={"cnn": f"hf-hub:nobody/udfd-cnn | local-dir:{local}"})
    det = load_detector("cnn", settings=settings)
    assert det.loaded_from == f"local-dir:{local}"
    assert len(det.fallback_reasons) == 1 and "hf-hub:nobody/udfd-cnn" in det.fallback_reasons[0]
    assert det.name == "cnn" and det.version.endswith("@7")


def test_every_reference_failing_names_them_all(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = Settings(models={"cnn": f"hf-hub:nobody/udfd-cnn | local-dir:{tmp_path / 'missing'}"})
    with pytest.raises(ModelUnavailableError, match="no reference could be loaded") as e:
        load_detector("cnn", settings=settings)
    assert "nobody/udfd-cnn" in str(e.value) and "missing" in str(e.value)


def test_a_models_file_may_list_references_in_order(tmp_path: Path) -> None:
    f = tmp_path / "detectors.json"
    f.write_text(json.dumps({"detectors": ["cnn"], "models": {"cnn": ["hf-hub:o/udfd-cnn", "local-dir:models/udfd-cnn"]}}))
    settings = Settings.from_env({"UDFD_MODELS_FILE": str(f)})
    first, second = (r.strip() for r in settings.models["cnn"].split("|"))
    assert first == "hf-hub:o/udfd-cnn"
    assert second.startswith("local-dir:/") and second.endswith("models/udfd-cnn"), "relative to the project root"


def _args(tmp_path: Path, **kw) -> argparse.Namespace:
    return argparse.Namespace(org="org", names=kw.get("names"), dry_run=kw.get("dry_run", False), private=False,
                              space_config=tmp_path / "detectors.json")


def test_publish_sends_one_commit_per_folder_and_pins_the_space_config(tmp_path: Path) -> None:
    api = FakeHfApi()
    assert cmd_publish(_args(tmp_path, names=["cnn", "lip_lstm"]), Settings(), api=api) == 0
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"] * 2
    up = api.calls[1][1]
    assert up["repo_id"] == "org/udfd-cnn" and up["folder_path"].endswith("models/udfd-cnn")
    assert up["commit_message"].startswith("UDFD cnn ")
    config = json.loads((tmp_path / "detectors.json").read_text())
    assert config["models"]["cnn"] == ["hf-hub:org/udfd-cnn@rev2", "local-dir:models/udfd-cnn"]
    assert config["models"]["lip_lstm"][0] == "hf-hub:org/udfd-lip-lstm@rev4"
    assert config["models"]["vit"] == ["hf-hub:dima806/deepfake_vs_real_image_detection"], "Hub-only"


def test_dry_run_prints_the_plan_and_sends_nothing(tmp_path: Path, capsys) -> None:
    api = FakeHfApi(fail=True)
    before = '{"detectors": ["cnn"], "models": {"cnn": ["hf-hub:old/udfd-cnn@r1", "local-dir:models/udfd-cnn"]}}'
    (tmp_path / "detectors.json").write_text(before)
    assert cmd_publish(_args(tmp_path, names=["cnn"], dry_run=True), Settings(), api=api) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[0]["repo_id"] == "org/udfd-cnn" and "config.json" in lines[0]["files"]
    assert "model.safetensors" in lines[0]["files"]
    assert lines[-1]["would_write"]["models"]["cnn"] == ["hf-hub:org/udfd-cnn", "local-dir:models/udfd-cnn"]
    assert api.calls == []
    assert (tmp_path / "detectors.json").read_text() == before, "a dry run writes no file"


def test_publishing_one_detector_keeps_the_others_entries(tmp_path: Path) -> None:
    (tmp_path / "detectors.json").write_text(json.dumps({"detectors": ["cnn"], "models": {
        "cnn": ["hf-hub:org/udfd-cnn@r1", "local-dir:models/udfd-cnn"],
        "lip_lstm": ["hf-hub:org/udfd-lip-lstm@r9", "local-dir:models/udfd-lip-lstm"]}}))
    assert cmd_publish(_args(tmp_path, names=["cnn"]), Settings(), api=FakeHfApi()) == 0
    models = json.loads((tmp_path / "detectors.json").read_text())["models"]
    assert models["cnn"] == ["hf-hub:org/udfd-cnn@rev2", "local-dir:models/udfd-cnn"]
    assert models["lip_lstm"] == ["hf-hub:org/udfd-lip-lstm@r9", "local-dir:models/udfd-lip-lstm"], "kept as it was"
    assert models["vit"] == ["hf-hub:dima806/deepfake_vs_real_image_detection"]


def test_publish_without_network_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="needs network access"):
        cmd_publish(_args(tmp_path, names=["cnn"]), Settings(), api=FakeHfApi(fail=True))


def test_plan_refuses_a_detector_without_an_embedded_folder() -> None:
    from udfd.errors import UdfdError

    with pytest.raises(UdfdError, match="no embedded checkpoint"):
        plan(dict(DEFAULT_MODELS), ["clip"], "org")
