"""Drift monitor and guarded retraining: pure rules, and the full offline loop on small generated data.

The loop: a small CNN learns "bright = fake" from generated images. Its deployed head then drifts (simulated by
a decision threshold no score reaches: it calls everything real, as a shifted score distribution would);
visitors flag fakes honestly while attackers flag reals as fake; the protector — an independent head on the
same features — screens every flag; the accuracy drop on accepted flags triggers retraining on the original
data + accepted flags; the guard promotes the better model; the app's loader picks the new version up; a
deliberately worse candidate is rejected and kept with its report.

(A new kind of fake that the detector has never seen is unknown to a protector reading the same features:
tried here first, the protector called every such honest flag suspicious. The drift simulated is therefore
one the protector can see through.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from tests.test_hub import FakeHfApi
from udfd.feedback.monitor import MonitorSettings, baseline_from_folder, check_drift
from udfd.feedback.store import FeedbackStore, new_record
from udfd.types import FeedbackRecord

ARCH = '{"image_size": 32, "width": 8, "fc": 16, "dropout": 0.0}'
TRAIN = ["--family", "cnn", "--arch", ARCH, "--epochs", "12", "--batch-size", "8", "--lr", "3e-3", "--patience",
         "12", "--report-to", "none"]


def _rec(i: int, *, pred: str, user: str, decision: str = "accepted", version: str = "v1",
         time: str | None = None) -> FeedbackRecord:
    r = new_record(media_sha256=str(i), model="vit", revision=version, scores={"vit": 0.5}, predicted_label=pred,
                   user_label=user, consent=False, protector_decision=decision, protector_score=0.5, reason="")
    return r if time is None else FeedbackRecord(**{**r.__dict__, "time": time})


def test_drift_triggers_on_a_drop_of_ten_points_once_per_version() -> None:
    s = MonitorSettings(window=100, min_count=10, drop_points=10.0)
    good = [_rec(i, pred="fake", user="fake") for i in range(8)] + [_rec(8, pred="fake", user="real"),
                                                                      _rec(9, pred="real", user="fake")]
    r = check_drift(good, model="vit", version="v1", baseline_accuracy=0.85, settings=s)
    assert r.accuracy == pytest.approx(0.8) and r.drop_points == pytest.approx(5.0) and not r.triggered
    bad = good + [_rec(10 + i, pred="real", user="fake") for i in range(5)]  # 8/15 = 0.533
    r = check_drift(bad, model="vit", version="v1", baseline_accuracy=0.85, settings=s)
    assert r.triggered and r.drop_points == pytest.approx(100 * (0.85 - 8 / 15))
    assert not check_drift(bad, model="vit", version="v1", baseline_accuracy=0.85, settings=s,
                           already_triggered=True).triggered
    # suspicious flags, other versions and too few flags do not count
    noise = [_rec(100 + i, pred="real", user="fake", decision="suspicious") for i in range(50)]
    noise += [_rec(200 + i, pred="real", user="fake", version="v0") for i in range(50)]
    r = check_drift(good + noise, model="vit", version="v1", baseline_accuracy=0.85, settings=s)
    assert r.n_accepted == 10 and not r.triggered
    r = check_drift(bad[:9], model="vit", version="v1", baseline_accuracy=0.85, settings=s)
    assert not r.triggered and "fewer than 10" in r.reason


def test_flags_from_an_app_on_a_fast_path_count_for_the_checkpoint_version() -> None:
    """The app records `Detector.version`, "m@v1+onnx" on the ONNX path (udfd.fast); retrain.py asks for the
    folder's "m@v1". Same weights, verified verdicts: the flags count. Another version's flags still do not."""
    s = MonitorSettings(window=100, min_count=10, drop_points=10.0)
    fast = [_rec(i, pred="real", user="fake", version="m@v1+onnx") for i in range(12)]
    other = [_rec(50 + i, pred="real", user="fake", version="m@v0+onnx") for i in range(12)]
    r = check_drift(fast + other, model="vit", version="m@v1", baseline_accuracy=0.85, settings=s)
    assert r.n_accepted == 12 and r.triggered
    assert check_drift(other, model="vit", version="m@v1", baseline_accuracy=0.85, settings=s).n_accepted == 0
    assert check_drift(fast, model="vit", version="m@v1+bf16", baseline_accuracy=0.85, settings=s).triggered


def test_window_keeps_the_most_recent_flags() -> None:
    old = [_rec(i, pred="fake", user="real", time=f"2026-01-01T00:00:{i:02d}") for i in range(20)]
    new = [_rec(50 + i, pred="fake", user="fake", time=f"2026-02-01T00:00:{i:02d}") for i in range(10)]
    r = check_drift(new + old, model="vit", version="v1", baseline_accuracy=0.9,
                    settings=MonitorSettings(window=10, min_count=10))
    assert r.accuracy == 1.0 and not r.triggered


def test_guard_rule() -> None:
    from training.retrain import guard_decision

    assert guard_decision(0.80, 0.80, tolerance=0.0)[0]
    assert guard_decision(0.80, 0.79, tolerance=0.02)[0]
    ok, reason = guard_decision(0.80, 0.70, tolerance=0.02)
    assert not ok and "rejected" in reason


# -- the full loop --------------------------------------------------------------------------------------
def _images(folder: Path, kind: str, n: int, seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        if kind == "real":  # dark grey
            img = rng.integers(20, 90, (40, 40, 3))
        elif kind == "old_fake":  # bright grey
            img = rng.integers(160, 235, (40, 40, 3))
        else:
            raise ValueError(kind)
        path = folder / f"{kind}_{seed}_{i}.png"
        PILImage.fromarray(img.astype(np.uint8)).save(path)
        out.append(path)
    return out


@pytest.fixture()
def world(tmp_path: Path, monkeypatch) -> dict:
    data, trusted = tmp_path / "data", tmp_path / "trusted"
    _images(data / "real" / "cam", "real", 24, 1)
    _images(data / "fake" / "gen1", "old_fake", 24, 2)
    _images(trusted / "real" / "cam", "real", 12, 3)
    _images(trusted / "fake" / "gen1", "old_fake", 12, 4)
    model = tmp_path / "models" / "m"
    monkeypatch.setenv("UDFD_MODEL_CNN", f"local-dir:{model}")
    monkeypatch.setenv("UDFD_FEEDBACK_DIR", str(tmp_path / "fb"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return {"tmp": tmp_path, "data": data, "trusted": trusted, "model": model, "cache": tmp_path / "cache"}


def now_version(folder: Path) -> str:
    return f"{folder.name}@{json.loads((folder / 'config.json').read_text())['udfd']['version']}"


def _flag(store: FeedbackStore, det, protector, paths: list[Path], user_label: str) -> list[FeedbackRecord]:
    imgs = [np.asarray(PILImage.open(p).convert("RGB")) for p in paths]
    batch = det.preprocess(imgs)
    scores = det.predict(batch)
    low, high = det.features(batch)
    screened = protector.screen(low, high, [user_label] * len(paths))
    return [store.append(new_record(media_sha256=p.name, model="cnn", revision=det.version,
                                    scores={"cnn": s.fake_prob}, predicted_label="fake" if s.is_fake else "real",
                                    user_label=user_label, consent=True, protector_decision=sc.decision,
                                    protector_score=sc.fake_prob, reason=sc.reason), image=img)
            for p, img, s, sc in zip(paths, imgs, scores, screened, strict=True)]


@pytest.mark.slow
def test_full_offline_loop(world: dict, capfd) -> None:
    from training.retrain import main as retrain
    from training.train_image import main as train_image
    from training.train_protector import main as train_protector
    from udfd.cli.main import main as udfd_cli
    from udfd.config import Settings
    from udfd.feedback.protector import load_protector
    from udfd.loader import clear_cache, current_detector, load_detector

    tmp, cache = world["tmp"], str(world["cache"])
    torch.manual_seed(0)
    train_image(["--data", str(world["data"]), "--output", str(world["model"]), "--version", "1", "--cache-dir",
                 cache, *TRAIN])
    train_protector(["--detector", "cnn", "--data", str(world["data"]), "--output", str(tmp / "prot"),
                     "--cache-dir", cache, "--epochs", "60", "--hidden", "16", "--embed", "8", "--lr", "1e-2"])
    # The deployed head drifts: no score reaches its threshold any more, so it calls every face real.
    cfg_path = world["model"] / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["udfd"]["threshold"] = 1.01
    cfg_path.write_text(json.dumps(cfg))
    clear_cache()
    settings = Settings.from_env()
    det = load_detector("cnn", settings=settings)
    app_det = det  # what a running app holds
    protector = load_protector(f"local-dir:{tmp / 'prot'}")
    assert baseline_from_folder(world["model"]) >= 0.9, "it shipped as a good model"

    # Visitors: honest flags on fakes (the model now calls them real), attackers call reals fake.
    store = FeedbackStore(tmp / "fb")
    honest = _flag(store, det, protector, _images(tmp / "up" / "fake", "old_fake", 40, 10), "fake")
    poisoned = _flag(store, det, protector, _images(tmp / "up" / "real", "real", 16, 11), "fake")
    assert all(r.predicted_label == "real" for r in honest + poisoned)
    assert all(r.reason and r.protector_decision in ("accepted", "suspicious") for r in honest + poisoned)
    assert sum(r.protector_decision == "accepted" for r in honest) >= 36, "honest flags are accepted"
    assert sum(r.protector_decision == "suspicious" for r in poisoned) >= 14, "poisoned flags are caught"
    n_accepted = sum(r.protector_decision == "accepted" for r in honest + poisoned)
    n_poison_in = sum(r.protector_decision == "accepted" for r in poisoned)

    common = ["--detector", "cnn", "--data", str(world["data"]), "--eval-data", str(world["trusted"]),
              "--min-count", "10", "--cache-dir", cache, "--work-dir", str(tmp / "work")]
    assert udfd_cli(["retrain", "--dry-run", "--detector", "cnn", "--min-count", "10", "--work-dir",
                     str(tmp / "work")]) == 0
    dry = json.loads(capfd.readouterr().out)  # udfd retrain runs training/retrain.py in a child process
    assert dry["drift"]["triggered"] and dry["action"] == "would retrain"
    assert not (tmp / "work" / "state.json").exists(), "a dry run changes nothing"

    api = FakeHfApi()
    first = retrain([*common, "--version", "2", "--push-to-hub", "--hub-model-id", "org/udfd-cnn",
                     "--protector-output", str(tmp / "prot2")], hf_api=api)  # the parent's training configuration
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]
    assert api.calls[1][1]["folder_path"] == str(world["model"])
    assert first["action"] == "promoted", first["guard"]
    assert first["data_counts"]["accepted_flags"] == n_accepted
    assert first["data_counts"]["feedback_fake"] == n_accepted  # every flag said "fake", all had an image
    assert n_accepted == sum(r.protector_decision == "accepted" for r in honest) + n_poison_in
    assert first["guard"]["candidate_accuracy"] > first["guard"]["current_accuracy"]
    meta = json.loads((world["model"] / "config.json").read_text())["udfd"]
    assert meta["version"] == "2" and meta["lineage"]["parent_version"] == "1"
    assert meta["lineage"]["data_counts"]["original_images"] == 48
    assert "## Lineage" in (world["model"] / "README.md").read_text()
    assert list((tmp / "work" / "previous").iterdir()), "the old version is kept"
    new_protector = load_protector(f"local-dir:{tmp / 'prot2'}")
    assert new_protector.config.detector_version.endswith("@2")
    dims = (protector.config.low_dim, protector.config.high_dim)
    assert "retrain it" in protector.accepts_detector("cnn", *dims, version=new_protector.config.detector_version)
    assert new_protector.accepts_detector("cnn", *dims, version=now_version(world["model"])) is None

    # The running app picks the new version up on its next request, without a restart.
    now = current_detector("cnn", app_det, settings=settings)
    assert now is not app_det and now.version.endswith("@2")

    # Exactly once per trigger: the same flags do not retrain version 1 again, and version 2 has no flags yet.
    again = retrain(common)
    assert again["action"] == "nothing to do"

    # A deliberately worse candidate (says "real" to everything) is rejected and kept with its report.
    def worse(parent, tree, out, *, version, extra, cache_dir):
        from udfd.detectors.cnn import CNNDetector

        bad = CNNDetector.create(json.loads(ARCH))
        bad.set_calibration(temperature=1.0, threshold=1.0)
        bad.save_pretrained(out, metadata={"version": version, "crop_size": 144})
        return out

    second = retrain([*common, "--force", "--version", "3"], train=worse)
    assert second["action"] == "rejected"
    assert second["guard"]["candidate_accuracy"] < second["guard"]["current_accuracy"]
    assert json.loads((world["model"] / "config.json").read_text())["udfd"]["version"] == "2"
    rejected = Path(second["rejected_candidate"])
    assert (rejected / "guard_report.json").is_file() and (rejected / "model.safetensors").is_file()
    state = json.loads((tmp / "work" / "state.json").read_text())
    assert {v["outcome"] for v in state["triggers"].values()} == {"promoted", "rejected"}


def test_loader_reloads_a_folder_whose_version_changed(tiny_vit_dir: Path, tmp_path: Path, caplog) -> None:
    import shutil

    from udfd.config import Settings
    from udfd.loader import clear_cache, current_detector, load_detector

    folder = tmp_path / "m"
    shutil.copytree(tiny_vit_dir, folder)
    settings = Settings(models={"vit": f"local-dir:{folder}"})
    clear_cache()
    first = load_detector("vit", settings=settings)
    assert load_detector("vit", settings=settings) is first  # cached while the version is unchanged
    cfg = json.loads((folder / "config.json").read_text())
    cfg["udfd"]["version"] = "next"
    (folder / "config.json").write_text(json.dumps(cfg))
    now = current_detector("vit", first, settings=settings)
    assert now is not first and now.version == "m@next"
    (folder / "model.safetensors").write_bytes(b"broken")
    cfg["udfd"]["version"] = "broken"
    (folder / "config.json").write_text(json.dumps(cfg))
    with caplog.at_level("ERROR"):
        assert current_detector("vit", now, settings=settings) is now  # a bad promotion keeps the old one serving
    assert "could not be loaded" in caplog.text
    clear_cache()


def test_a_frozen_backbone_is_retrained_by_fitting_its_head_again(world: dict) -> None:
    """effnet_lite0's recipe (loso_frozen.py: frozen ImageNet Lite0 + logistic head on block statistics) has no
    train_image.py configuration: retraining fits the head again on the new tree, keeping backbone and input."""
    from training.loso_frozen import main as loso_frozen
    from training.retrain import train_candidate
    from udfd.errors import UdfdError
    from udfd.loader import load_detector

    tmp, cache = world["tmp"], world["cache"]
    common = ["--model", "tf_efficientnet_lite0", "--image-size", "64", "--crop-size", "64", "--stats-stages", "4",
              "--only-in-dist", "--cache-dir", str(cache), "--scores-dir", str(tmp / "scores")]
    loso_frozen(["--data", str(world["data"]), "--out", str(tmp / "parent"), "--version", "1", *common])
    parent = tmp / "parent" / "model"
    tree = tmp / "tree"  # the original data + 8 more fakes, as retrain.py builds it from accepted flags
    for label, src in (("real", "cam"), ("fake", "gen1")):
        for f in (world["data"] / label / src).iterdir():
            (tree / label / src).mkdir(parents=True, exist_ok=True)
            (tree / label / src / f.name).symlink_to(f)
    _images(tree / "fake" / "feedback", "old_fake", 8, 20)

    out = train_candidate(parent, tree, tmp / "run" / "candidate", version="2", extra=[], cache_dir=cache)
    meta, before = (json.loads((d / "config.json").read_text())["udfd"] for d in (out, parent))
    assert meta["version"] == "2" and meta["head"]["kind"] == "logistic"
    assert meta["arch"] == before["arch"] and meta["arch"]["stats_stages"] == [4]  # the parent's network and input
    det = load_detector(f"local-dir:{out}")
    imgs = [np.asarray(PILImage.open(p).convert("RGB")) for p in sorted((world["trusted"] / "real" / "cam").iterdir())
            + sorted((world["trusted"] / "fake" / "gen1").iterdir())]
    probs = [s.fake_prob for s in det.predict(det.preprocess(imgs))]
    assert min(probs[12:]) > max(probs[:12]), "the refitted head separates the trusted fakes from the reals"

    del before["head"]  # a checkpoint that records no recipe at all
    stripped = tmp / "norecipe"
    stripped.mkdir()
    for f in parent.iterdir():
        if f.is_file():
            (stripped / f.name).write_bytes(f.read_bytes())
    (stripped / "config.json").write_text(json.dumps({**json.loads((parent / "config.json").read_text()),
                                                      "udfd": before}))
    with pytest.raises(UdfdError, match="records no training recipe"):
        train_candidate(stripped, tree, tmp / "run2" / "candidate", version="3", extra=[], cache_dir=cache)
    assert not (tmp / "run2" / "candidate").exists(), "nothing is trained"


def test_a_kinds_head_is_refitted_with_its_kinds_and_the_flags_count_for_every_kind(world: dict) -> None:
    """effnet_lite0_kinds' recipe (`--fake-kinds`): the parent records its {kind: sources}; retraining fits one head
    per kind again, the visitors' flagged fakes (`fake/feedback`, kind unknown) a fake for every head."""
    from training.loso_frozen import main as loso_frozen
    from training.retrain import train_candidate
    from udfd.loader import load_detector

    tmp, cache = world["tmp"], world["cache"]
    kinds = tmp / "kinds.json"
    kinds.write_text(json.dumps({"_doc": "test", "gan": ["gen1"]}))
    common = ["--model", "tf_efficientnet_lite0", "--image-size", "64", "--crop-size", "64", "--stats-stages", "4",
              "--only-in-dist", "--cache-dir", str(cache), "--scores-dir", str(tmp / "scores")]
    loso_frozen(["--data", str(world["data"]), "--out", str(tmp / "parent"), "--version", "1", *common,
                 "--fake-kinds", str(kinds), "--min-kind-fakes", "5"])
    parent = tmp / "parent" / "model"
    recorded = json.loads((parent / "config.json").read_text())["udfd"]
    assert recorded["head"]["fake_kinds"] == {"gan": ["gen1"]} and recorded["arch"]["fake_kinds"] == ["gan"]
    tree = tmp / "tree"
    for label, src in (("real", "cam"), ("fake", "gen1")):
        for f in (world["data"] / label / src).iterdir():
            (tree / label / src).mkdir(parents=True, exist_ok=True)
            (tree / label / src / f.name).symlink_to(f)
    _images(tree / "fake" / "feedback", "old_fake", 8, 20)  # no kind of its own: refused without the "*" kind

    out = train_candidate(parent, tree, tmp / "run" / "candidate", version="2", extra=[], cache_dir=cache)
    meta = json.loads((out / "config.json").read_text())["udfd"]
    assert meta["version"] == "2" and meta["arch"]["fake_kinds"] == ["gan"]
    assert meta["head"]["fake_kinds"] == {"gan": ["gen1"], "*": ["feedback"]}
    det = load_detector(f"local-dir:{out}")
    imgs = [np.asarray(PILImage.open(p).convert("RGB")) for p in sorted((world["trusted"] / "real" / "cam").iterdir())
            + sorted((world["trusted"] / "fake" / "gen1").iterdir())]
    probs = [s.fake_prob for s in det.predict(det.preprocess(imgs))]
    assert min(probs[12:]) > max(probs[:12]), "the refitted kinds heads separate the trusted fakes from the reals"
