"""`udfd scan`: rows per file and per face, errors as rows, resume without duplicates, summary, list-file and
dataset sources, and the Ray engine against the local one (skipped when Ray, an optional extra, is absent)."""

from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from PIL import Image

from udfd.cli.main import main
from udfd.errors import UdfdError
from udfd.loader import clear_cache
from udfd.scan.core import load_models
from udfd.scan.local import scan_local
from udfd.scan.rows import SCHEMA, ScanRow, table_keys
from udfd.scan.sources import records_for
from udfd.scan.store import ScanStore, read_results

from .conftest import face_clip, write_video


def drawn_face(seed: int, size: int = 96) -> np.ndarray:
    """A cartoon face drawn with numpy: skin disc, two eyes, a mouth, on a noisy background."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    c, r = size / 2, size * 0.38
    img[(yy - c) ** 2 + (xx - c) ** 2 < r**2] = (224, 180, 150)
    for ex in (c - r / 2.5, c + r / 2.5):
        img[(yy - c * 0.8) ** 2 + (xx - ex) ** 2 < (r / 7) ** 2] = (30, 30, 30)
    img[(np.abs(yy - c * 1.35) < r / 12) & (np.abs(xx - c) < r / 2.5)] = (150, 40, 40)
    return img


@pytest.fixture()
def archive(tmp_path: Path) -> Path:
    """real/s1 (3 faces), fake/s2/deeper (2 faces), a corrupt JPEG, a text file named .png, a text file."""
    root = tmp_path / "archive"
    for i, folder in enumerate(["real/s1"] * 3 + ["fake/s2/deeper"] * 2):
        (root / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(drawn_face(i)).save(root / folder / f"{i}.png")
    jpeg = root / "real" / "s1" / "0.jpg"
    Image.fromarray(drawn_face(9)).save(jpeg, quality=90)
    jpeg.write_bytes(jpeg.read_bytes()[:300])  # truncated
    (root / "fake" / "notes.png").write_text("not an image")
    (root / "readme.txt").write_text("not listed: not an image extension")
    return root


@pytest.fixture()
def settings(tiny_settings):
    clear_cache()
    return replace(tiny_settings, video_detectors=("vit",))


def _scan(records, settings, out, **kw):
    models = load_models(settings, images=True, videos=any(r.kind == "video" for r in records))
    with ScanStore(out) as store:
        return scan_local(records, models, store, progress=False, **kw)


def _rows(path: Path) -> list[dict]:
    return sorted(read_results(path).to_pylist(), key=lambda r: (r["file"], r["face_index"]))


def _same_rows(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for k in x:
            if isinstance(x[k], float) and not math.isnan(x[k]):
                assert x[k] == pytest.approx(y[k], abs=1e-5), (x["file"], k)
            elif k == "scores":
                assert dict(x[k]) == pytest.approx(dict(y[k]), abs=1e-5)
            elif not (isinstance(x[k], float) and math.isnan(x[k]) and math.isnan(y[k])):
                assert x[k] == y[k], (x["file"], k)


def test_rows_per_file_and_face_with_errors_as_rows(archive, settings, tmp_path):
    out = tmp_path / "r.parquet"
    stats = _scan(records_for(str(archive)), settings, out, batch_size=2)
    assert (stats.files, stats.analysed, stats.failed, stats.skipped) == (7, 5, 2, 0)
    rows = _rows(out)
    assert pq.read_schema(out).equals(SCHEMA)
    files = [r for r in rows if r["row_type"] == "file"]
    assert len(files) == 7 and len({r["file"] for r in files}) == 7
    errors = {Path(r["file"]).name: r for r in files if r["error"]}
    assert set(errors) == {"0.jpg", "notes.png"}
    assert "truncated or corrupt" in errors["0.jpg"]["error"] and "not a supported image" in errors["notes.png"]["error"]
    assert all(r["label"] == "" and not any(f["file"] == r["file"] for f in rows if f["row_type"] == "face")
               for r in errors.values())
    for f in (r for r in files if not r["error"]):
        faces = [r for r in rows if r["row_type"] == "face" and r["file"] == f["file"]]
        assert len(faces) == f["n_faces"] >= 1
        assert f["sha256"] == hashlib.sha256(Path(f["file"]).read_bytes()).hexdigest()
        assert f["fake_prob"] == max(r["fake_prob"] for r in faces) and 0 <= f["fake_prob"] <= 1
        versions = dict(f["model_versions"])
        assert set(versions) == {"vit"} and f["models_key"] == f"vit={versions['vit']}"
        assert f["source"] in ("real/s1", "fake/s2/deeper")
        assert all(len(r["box"]) == 4 and set(dict(r["scores"])) == {"vit"} for r in faces)


def test_rows_agree_with_analyze_image(archive, settings, tmp_path):
    """The batched scan and `analyze_image` (one file at a time) give the same faces and verdicts."""
    from udfd.pipeline import analyze_image

    out = tmp_path / "r.parquet"
    _scan(records_for(str(archive)), settings, out, batch_size=4)
    faces = [r for r in _rows(out) if r["row_type"] == "face"]
    for path in sorted({r["file"] for r in faces}):
        v = analyze_image(path, settings=settings)
        mine = [r for r in faces if r["file"] == path]
        assert [r["box"] for r in mine] == [list(f.box) for f in v.faces]
        assert [r["label"] for r in mine] == [f.label for f in v.faces]
        assert [r["uncertain_reason"] for r in mine] == [f.uncertain_reason for f in v.faces]
        assert [r["fake_prob"] for r in mine] == pytest.approx([f.fake_prob for f in v.faces], abs=1e-5)


def test_a_scanned_file_gets_the_uncertain_reasons_and_notes_of_analyze_image(face_image_path, settings, tmp_path):
    """The scan builds verdicts with the pipeline's own steps: a heavily compressed JPEG is "cannot tell"
    ("compressed") in the scan's rows as in `analyze_image`, and the same face losslessly saved is not."""
    from udfd.jpeg import COMPRESSED_QUALITY
    from udfd.pipeline import analyze_image

    settings = replace(settings, uncertain_band=0.0)  # the tiny test model sits near its threshold: no band here
    root = tmp_path / "archive" / "real"
    root.mkdir(parents=True)
    face = Image.open(face_image_path).convert("RGB")
    face.save(root / "crushed.jpg", quality=COMPRESSED_QUALITY - 30)
    face.save(root / "lossless.png")
    out = tmp_path / "r.parquet"
    _scan(records_for(str(tmp_path / "archive")), settings, out, batch_size=4)
    rows = _rows(out)
    assert not any(r["error"] for r in rows)
    reasons = {Path(r["file"]).name: r["uncertain_reason"] for r in rows if r["row_type"] == "face"}
    assert reasons == {"crushed.jpg": "compressed", "lossless.png": ""}
    for r in (r for r in rows if r["row_type"] == "face"):
        v = analyze_image(r["file"], settings=settings)
        assert r["uncertain_reason"] == v.faces[0].uncertain_reason and r["label"] == v.faces[0].label
        assert r["uncertain"] == v.faces[0].uncertain


def test_resume_after_an_interruption_loses_and_duplicates_nothing(archive, settings, tmp_path):
    records = records_for(str(archive))
    full = tmp_path / "full.parquet"
    _scan(records, settings, full, batch_size=2)

    out = tmp_path / "r.parquet"

    def stop(finished: int) -> None:
        if finished >= 2:
            raise KeyboardInterrupt  # as Ctrl-C / SIGTERM in the CLI

    with pytest.raises(KeyboardInterrupt):
        _scan(records, settings, out, batch_size=2, workers=1, flush_every=1, on_batch=stop)
    partial = read_results(out)  # a complete Parquet file after the interruption
    done = {r["file"] for r in partial.to_pylist() if r["row_type"] == "file"}
    assert 0 < len(done) < len(records)
    assert not out.with_name(out.name + ".parts").exists()

    stats = _scan(records, settings, out, batch_size=2)
    assert stats.skipped == len(done) and stats.analysed + stats.failed == len(records) - len(done)
    table = read_results(out)
    keys = table_keys(table.filter(pc.equal(table.column("row_type"), "file")))
    assert len(keys) == len(set(keys)) == len(records)
    _same_rows(_rows(out), _rows(full))


def test_a_killed_scan_leaves_parts_that_the_next_one_folds_in_once(archive, settings, tmp_path):
    """A scan killed between writing OUT and removing its parts (or mid-part) duplicates nothing."""
    records = records_for(str(archive))
    out = tmp_path / "r.parquet"
    _scan(records[:3], settings, out)
    first = read_results(out)
    parts = out.with_name(out.name + ".parts")
    parts.mkdir()
    pq.write_table(first, parts / "part-000000.parquet")  # already in OUT: a crash before the parts were removed
    (parts / "part-000001.tmp").write_bytes(b"half a part")  # killed while writing a part
    assert read_results(out, with_parts=True).num_rows == first.num_rows  # what --summary reads meanwhile
    with ScanStore(out) as store:
        assert len(store.done_keys()) == 3
    assert read_results(out).num_rows == first.num_rows and not parts.exists()
    _scan(records, settings, out)
    assert sum(r["row_type"] == "file" for r in read_results(out).to_pylist()) == len(records)


def test_retry_errors_replaces_error_rows_once(archive, settings, tmp_path, monkeypatch):
    import udfd.scan.core as core

    records = records_for(str(archive))
    out = tmp_path / "r.parquet"
    real_verdicts = core._verdicts

    def broken(batch, models):
        raise RuntimeError("detector crashed")

    monkeypatch.setattr(core, "_verdicts", broken)
    assert _scan(records, settings, out).failed == len(records)  # every file an error row, nothing raised
    monkeypatch.setattr(core, "_verdicts", real_verdicts)
    assert _scan(records, settings, out).skipped == len(records)  # errors count as done...
    stats = _scan(records, settings, out, retry_errors=True)  # ...unless retried
    assert (stats.analysed, stats.failed) == (5, 2)
    files = [r for r in _rows(out) if r["row_type"] == "file"]
    assert len(files) == len(records) and sum(bool(r["error"]) for r in files) == 2
    assert not any("detector crashed" in r["error"] for r in files)


def test_a_missing_file_that_appears_replaces_its_error_row(archive, settings, tmp_path):
    listing = tmp_path / "todo.txt"
    listing.write_text(f"{archive}/real/s1/1.png\n{tmp_path}/later.png\n")
    out = tmp_path / "r.parquet"
    _scan(records_for(str(listing)), settings, out)
    Image.fromarray(drawn_face(5)).save(tmp_path / "later.png")
    assert _scan(records_for(str(listing)), settings, out).analysed == 1
    files = [r for r in _rows(out) if r["row_type"] == "file"]
    assert len(files) == 2 and not any(r["error"] for r in files)


def test_cli_scan_resume_and_summary(archive, settings, tmp_path, monkeypatch, capsys, tiny_vit_dir):
    second = tmp_path / "vit2"
    _tiny_vit(second, seed=1)
    monkeypatch.setenv("UDFD_MODEL_VIT", f"local-dir:{tiny_vit_dir}")
    monkeypatch.setenv("UDFD_MODEL_VIT2", f"local-dir:{second}")
    monkeypatch.setenv("UDFD_DETECTORS", "vit,vit2")
    out = tmp_path / "r.parquet"
    assert main(["scan", str(archive), "--out", str(out), "--no-progress", "--batch-size", "3"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["files"], stats["analysed"], stats["failed"]) == (7, 5, 2)
    n = read_results(out).num_rows
    assert main(["scan", str(archive), "--out", str(out), "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 7 and read_results(out).num_rows == n

    assert main(["scan", "--summary", str(out)]) == 0
    text = capsys.readouterr().out
    assert "7 files" in text and "real/s1" in text and "fake/s2/deeper" in text and "vit2" in text
    assert main(["scan", "--summary", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["per_verdict"]["error"] == 2 and sum(summary["per_verdict"].values()) == 7
    assert summary["per_source"]["real/s1"]["error"] == 1 and summary["primary"] == "vit"
    assert summary["agreement"]["vit2"]["faces"] == summary["faces"] >= 5
    assert main(["scan", str(tmp_path / "missing"), "--out", str(out)]) == 2  # a clear error, nothing lost
    assert read_results(out).num_rows == n


def test_list_file_with_a_missing_entry_and_a_video(archive, settings, tmp_path):
    video = write_video(archive / "clip.mp4", face_clip(drawn_face(0, 160), n=8))
    listing = archive / "todo.txt"
    listing.write_text(f"# files to scan\nreal/s1/1.png\n\nfake/s2/deeper/3.png\n{video}\nnope/missing.png\n")
    records = records_for(str(listing))
    assert [r.kind for r in records] == ["image", "image", "video", "image"]
    out = tmp_path / "r.parquet"
    _scan(records, settings, out)
    files = {Path(r["file"]).name: r for r in _rows(out) if r["row_type"] == "file"}
    assert files["missing.png"]["error"].endswith("file not found") and files["missing.png"]["source"] == "nope"
    assert files["clip.mp4"]["kind"] == "video" and not files["clip.mp4"]["error"] and files["clip.mp4"]["n_faces"] >= 1
    assert files["1.png"]["source"] == "real/s1" and files["clip.mp4"]["file"] == str(video)
    assert _scan(records, settings, out).skipped == len(records)  # the video resumes too


def test_dataset_sources_saved_and_hub_by_injection(settings, tmp_path, monkeypatch):
    import datasets

    images = [Image.fromarray(drawn_face(i)) for i in range(3)]
    ds = datasets.Dataset.from_dict({"image": images, "label": [0, 1, 0]}).cast_column("image", datasets.Image())
    saved = tmp_path / "saved"
    ds.save_to_disk(str(saved))
    records = records_for(str(saved))
    assert [r.file for r in records] == [f"{saved}#train/{i}" for i in range(3)] and all(r.data for r in records)
    out = tmp_path / "r.parquet"
    stats = _scan(records, settings, out)
    assert (stats.analysed, stats.failed) == (3, 0)

    calls = []
    hub = records_for("hf://datasets/org/faces@v1", split="train",
                      load_hub=lambda repo, **kw: calls.append((repo, kw)) or ds)
    assert calls == [("org/faces", {"split": "train", "revision": "v1"})]
    assert [r.data for r in hub] == [r.data for r in records]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UdfdError, match="needs network access"):
        records_for("hf://datasets/org/surely-not-cached")
    with pytest.raises(UdfdError, match="hf://datasets/org/name"):
        records_for("org/name")


def test_ray_missing_is_a_clear_error(monkeypatch):
    from udfd.scan.ray_engine import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UdfdError, match="requirements-scale.txt"):
        require_ray()


@pytest.mark.slow
def test_ray_gives_the_same_rows_and_resumes(archive, settings, tmp_path):
    """A local Ray (one CPU) resumes a scan the local engine began and ends with the local engine's rows, on a
    folder of good, bad and video files."""
    pytest.importorskip("ray.data", reason="Ray is an optional extra (requirements-scale.txt), not installed in CI")
    from udfd.scan.ray_engine import scan_ray

    write_video(archive / "clip.mp4", face_clip(drawn_face(0, 160), n=8))
    records = records_for(str(archive))
    assert {r.kind for r in records} == {"image", "video"}
    local = tmp_path / "local.parquet"
    _scan(records, settings, local)
    out = tmp_path / "ray.parquet"
    _scan(records[:3], settings, out)
    with ScanStore(out) as store:
        stats = scan_ray(records, settings, store, num_cpus=1, batch_size=3, progress=False)
    assert stats.skipped == 3 and stats.analysed + stats.failed == len(records) - 3
    _same_rows(_rows(out), _rows(local))


def _tiny_vit(folder: Path, seed: int) -> None:
    import torch

    from udfd.detectors.vit import ViTDetector

    torch.manual_seed(seed)
    det = ViTDetector.create(ViTDetector.tiny_arch)
    det.save_pretrained(folder, metadata={"version": f"test{seed}"}, fp16=False)


def test_scan_row_fields_are_the_schema():
    from dataclasses import fields

    assert [f.name for f in fields(ScanRow)] != [] and {f.name for f in fields(ScanRow)} == set(SCHEMA.names)
