"""Model references, offline resolution and pushing through the HfApi injection point (no network)."""

from __future__ import annotations

import pytest

from udfd.config import Settings
from udfd.errors import ModelRefError, ModelUnavailableError
from udfd.hub import ModelRef, parse_ref, push_folder, resolve
from udfd.loader import clear_cache, load_detector


@pytest.mark.parametrize("ref,expected", [
    ("hf-hub:dima806/deepfake_vs_real_image_detection", ModelRef("hf-hub", "dima806/deepfake_vs_real_image_detection")),
    ("hf-hub:org/repo@v1.2", ModelRef("hf-hub", "org/repo", "v1.2")),
    ("local-dir:/tmp/x", ModelRef("local-dir", "/tmp/x")),
    ("local-dir:relative/dir", ModelRef("local-dir", "relative/dir")),
])
def test_parse_ref(ref, expected):
    assert parse_ref(ref) == expected
    assert str(parse_ref(ref)) == ref


@pytest.mark.parametrize("bad", ["org/repo", "models/udfd-vit-tiny", "hf-hub:norepo", "hf-hub:a/b/c", "local-dir:",
                                 "vit-unknown", "hf-hub:/repo"])
def test_ambiguous_or_malformed_refs_raise(bad):
    with pytest.raises(ModelRefError):
        parse_ref(bad, short_names={"vit": "local-dir:/x"})


def test_short_name_resolves():
    assert parse_ref("vit", short_names={"vit": "hf-hub:o/r@main"}) == ModelRef("hf-hub", "o/r", "main")


def test_missing_local_folder_names_the_setting(tmp_path):
    with pytest.raises(ModelUnavailableError, match="UDFD_MODEL_VIT"):
        resolve(ModelRef("local-dir", str(tmp_path / "nope")), setting="UDFD_MODEL_VIT")


def test_offline_hub_gives_clear_error(monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def offline_download(**kwargs):
        raise LocalEntryNotFoundError("offline")

    clear_cache()
    settings = Settings(models={"vit": "hf-hub:dima806/deepfake_vs_real_image_detection"})
    with pytest.raises(ModelUnavailableError) as info:
        load_detector("vit", settings=settings, download=offline_download)
    msg = str(info.value)
    assert "dima806/deepfake_vs_real_image_detection" in msg and "HF_HUB_OFFLINE" in msg and "UDFD_MODEL_VIT" in msg


def test_real_snapshot_download_offline_fails_fast_and_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="hf-hub:udfd-test/definitely-not-cached"):
        resolve(parse_ref("hf-hub:udfd-test/definitely-not-cached"))


def test_hub_download_result_is_loaded(tiny_vit_dir):
    calls = []

    def fake_download(*, repo_id, revision):
        calls.append((repo_id, revision))
        return str(tiny_vit_dir)

    clear_cache()
    det = load_detector("hf-hub:org/tiny@abc123", settings=Settings(), download=fake_download)
    assert calls == [("org/tiny", "abc123")]
    assert det.version == "org/tiny@abc123"
    assert load_detector("hf-hub:org/tiny@abc123", settings=Settings(), download=fake_download) is det  # cached
    assert len(calls) == 1


class FakeHfApi:
    def __init__(self, fail: bool = False):
        self.calls, self.fail = [], fail

    def create_repo(self, **kw):
        if self.fail:
            raise ConnectionError("no network")
        self.calls.append(("create_repo", kw))

    def upload_folder(self, **kw):
        """Answers like the Hub's CommitInfo: a commit URL and an oid that differs per call."""
        self.calls.append(("upload_folder", kw))
        return type("CommitInfo", (), {"oid": f"rev{len(self.calls)}",
                                       "commit_url": "https://huggingface.co/org/name/commit/1"})()


def test_push_folder_uses_injected_api(tiny_vit_dir):
    api = FakeHfApi()
    url = push_folder(tiny_vit_dir, repo_id="org/name", api=api)
    assert url.endswith("/commit/1")
    assert api.calls[0] == ("create_repo", {"repo_id": "org/name", "repo_type": "model", "private": True,
                                            "exist_ok": True})
    assert api.calls[1][1]["folder_path"] == str(tiny_vit_dir)


def test_push_folder_offline_error_is_clear(tiny_vit_dir):
    with pytest.raises(ModelUnavailableError, match="network"):
        push_folder(tiny_vit_dir, repo_id="org/name", api=FakeHfApi(fail=True))


def test_with_members_adds_the_members_an_embedded_ensemble_loads_by_name(tmp_path) -> None:
    from udfd.hub import with_members

    models = Settings().models
    # The app's default set: the image ensemble and the video specialist load these members by short name.
    assert with_members({"ensemble"}, models) == {"ensemble", "sbi_lite0", "effnet_lite0_kinds", "spectrum"}
    assert with_members({"ensemble_swap", "mesonet4_df"}, models) == {"ensemble_swap", "sbi_lite0",
                                                                     "effnet_lite0_kinds", "mesonet4_df"}
    # Nested ensembles too; a Hub reference or a missing folder adds nothing (not fetched, nothing to read).
    outer = tmp_path / "outer"
    outer.mkdir()
    (outer / "config.json").write_text('{"udfd": {"family": "ensemble", "members": [{"name": "ensemble"}]}}')
    more = {**models, "outer": f"local-dir:{outer}", "hub": "hf-hub:org/repo", "gone": "local-dir:/nonexistent"}
    assert with_members({"outer", "hub", "gone"}, more) == {"outer", "ensemble", "sbi_lite0", "effnet_lite0_kinds",
                                                            "spectrum", "hub", "gone"}
