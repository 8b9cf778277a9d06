"""The Space package (space/): front matter pinned to requirements, detector config, Dockerfile essentials."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from udfd.config import DEFAULT_MODELS, Settings
from udfd.errors import UdfdError
from udfd.hub import parse_ref, split_refs

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "space"


def _front_matter() -> dict:
    text = (SPACE / "README.md").read_text(encoding="utf-8")
    match = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    assert match, "space/README.md starts with a YAML front matter block"
    return yaml.safe_load(match.group(1))


def test_front_matter_matches_the_pinned_stack() -> None:
    meta = _front_matter()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M))
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == pins["gradio"]
    assert (ROOT / meta["app_file"]).is_file()
    assert meta["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_space_detector_config_is_hub_first_with_the_embedded_fallback() -> None:
    settings = Settings.from_env({"UDFD_MODELS_FILE": "space/detectors.json"})
    assert set(settings.models) >= set(DEFAULT_MODELS)
    for name, value in settings.models.items():
        refs = [parse_ref(r) for r in split_refs(value)]
        assert refs[0].kind == "hf-hub", name
        embedded = parse_ref(DEFAULT_MODELS[name]) if name in DEFAULT_MODELS else None
        if name != "vit" and embedded is not None and (Path(embedded.location) / "config.json").is_file():
            assert [r.kind for r in refs] == ["hf-hub", "local-dir"], f"{name}: embedded folder as the fallback"
            assert Path(refs[1].location) == Path(embedded.location)
    assert [r.kind for r in map(parse_ref, split_refs(settings.models["vit"]))] == ["hf-hub"], "dima806: Hub only"
    # The usual variables still win over the file.
    override = Settings.from_env(
        {"UDFD_MODELS_FILE": "space/detectors.json", "UDFD_MODEL_CNN": "local-dir:x", "UDFD_DETECTORS": "cnn"}
    )
    assert override.models["cnn"] == "local-dir:x" and override.detectors == ("cnn",)


def test_a_broken_detector_config_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "detectors.json"
    bad.write_text('["vit"]')
    with pytest.raises(UdfdError, match="expected"):
        Settings.from_env({"UDFD_MODELS_FILE": str(bad)})
    with pytest.raises(UdfdError, match="cannot read the detector config"):
        Settings.from_env({"UDFD_MODELS_FILE": str(tmp_path / "missing.json")})


def test_dockerfile_runs_as_a_user_on_7860_with_a_cache_dir_and_a_healthcheck() -> None:
    text = (SPACE / "Dockerfile").read_text(encoding="utf-8")
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in {"root", "0"}
    assert re.search(r"^EXPOSE 7860$", text, re.M) and "UDFD_PORT=7860" in text and "UDFD_HOST=0.0.0.0" in text
    assert "HF_HOME=" in text and re.search(r"^HEALTHCHECK .*7860", text, re.M | re.S)
    assert "space/packages.txt" in text and (SPACE / "packages.txt").read_text().split()
    assert re.search(r'^CMD \["python", "app.py"\]$', text, re.M)
