"""udfd.batch: many files decoded in threads, faces of several files per detector call; the verdicts are those of
`analyze_image` one file at a time, in input order, and a bad file is reported without holding up the others."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from udfd.batch import analyze_many
from udfd.config import Settings
from udfd.errors import MediaError, UdfdError
from udfd.loader import clear_cache, load_detector
from udfd.pipeline import analyze_image, load_detectors, prepare_image


def _files(tmp_path: Path, faces: Path) -> list[Path]:
    """Six real dev faces (real and fake sources) with a broken file and a noise image (no face) among them."""
    picks = [sorted((faces / "real" / "lfw").glob("*.jpg"))[:2], sorted((faces / "fake" / "lfw_faceswap").glob("*"))[:2],
             sorted((faces / "real" / "utkface").glob("*"))[:1], sorted((faces / "fake" / "sdfd_sd21").glob("*"))[:1]]
    files = [p for group in picks for p in group]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    noise = tmp_path / "noise.png"
    PILImage.fromarray(np.random.default_rng(0).integers(0, 256, (80, 60, 3), dtype=np.uint8)).save(noise)
    return [*files[:3], broken, *files[3:5], noise, *files[5:]]


def _prepare(settings: Settings):
    return lambda path: [prepare_image(path, settings=settings)]


def _same(one, many) -> None:
    assert many.file == one.file and many.overall.label == one.overall.label
    assert many.overall.uncertain == one.overall.uncertain
    assert many.overall.fake_prob == pytest.approx(one.overall.fake_prob, abs=1e-5)
    assert len(many.faces) == len(one.faces)
    for a, b in zip(one.faces, many.faces, strict=True):
        assert b.box == a.box and b.face_found == a.face_found and b.uncertain_reason == a.uncertain_reason
        assert set(b.scores) == set(a.scores)
        for name in a.scores:
            assert b.scores[name] == pytest.approx(a.scores[name], abs=1e-5)
        for name in a.members:
            assert b.members[name] == pytest.approx(a.members[name], abs=1e-5)


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_shipped_default_batched_equals_one_at_a_time(tmp_path, shared_faces, batch_size):
    """The default detector set (the ensemble, on its fast paths), real dev faces: same fake_prob to 1e-5."""
    settings = Settings.from_env()
    clear_cache()
    dets = load_detectors(settings)
    files = _files(tmp_path, shared_faces)
    results = list(analyze_many(files, _prepare(settings), detectors=dets, settings=settings, workers=2,
                                batch_size=batch_size))
    assert [r.item for r in results] == files  # input order
    for path, r in zip(files, results, strict=True):
        if path.name == "broken.jpg":
            assert isinstance(r.error, MediaError) and not r.verdicts
            with pytest.raises(MediaError):
                analyze_image(path, settings=settings, detectors=dets)
            continue
        assert r.error is None and len(r.verdicts) == 1
        _same(analyze_image(path, settings=settings, detectors=dets), r.verdicts[0])
    assert results[files.index(tmp_path / "noise.png")].verdicts[0].faces[0].face_found is False


def test_tiny_detector_several_views_per_item_and_tta(tmp_path, tiny_settings):
    """Items that prepare several images each (evaluate's perturbed views) keep their order; TTA spreads match."""
    from dataclasses import replace

    settings = replace(tiny_settings, tta=True)
    det = load_detector("vit", settings=settings)
    rng = np.random.default_rng(1)
    images = []
    for i in range(5):
        path = tmp_path / f"{i}.png"
        PILImage.fromarray(rng.integers(0, 256, (40 + 8 * i, 50, 3), dtype=np.uint8)).save(path)
        images.append(path)

    def prepare(path: Path):
        p = prepare_image(path, settings=settings)
        flipped = replace(p.image, pixels=np.ascontiguousarray(p.image.pixels[:, ::-1]))
        return [p, prepare_image(flipped, settings=settings)]

    results = list(analyze_many(images, prepare, detectors=[det], settings=settings, workers=3, batch_size=4))
    assert [r.item for r in results] == images
    for r in results:
        assert len(r.verdicts) == 2
        for p, v in zip(r.prepared, r.verdicts, strict=True):
            one = analyze_image(p.image, settings=settings, detectors=[det], provenance=p.provenance)
            _same(one, v)
            assert v.timings_ms["vit"] > 0 and v.timings_ms["faces"] >= 0


def test_a_failing_prepare_is_that_items_error_only(tiny_settings):
    det = load_detector("vit", settings=tiny_settings)
    pixels = np.random.default_rng(2).integers(0, 256, (32, 32, 3), dtype=np.uint8)

    def prepare(i: int):
        if i % 3 == 1:
            raise UdfdError(f"item {i} is bad")
        from udfd.types import Image

        return [prepare_image(Image(pixels, f"img{i}", "0", "PNG", "RGB"), settings=tiny_settings)]

    results = list(analyze_many(range(10), prepare, detectors=[det], settings=tiny_settings, workers=2, batch_size=2))
    assert [r.item for r in results] == list(range(10))
    assert [r.error is not None for r in results] == [i % 3 == 1 for i in range(10)]
    assert all(str(r.error) == f"item {r.item} is bad" for r in results if r.error)
    assert [r.verdicts[0].file for r in results if not r.error] == [f"img{i}" for i in range(10) if i % 3 != 1]


def test_bad_sizes_are_refused(tiny_settings):
    with pytest.raises(UdfdError, match="at least 1"):
        list(analyze_many([1], lambda i: [], detectors=[], settings=tiny_settings, batch_size=0))


def test_cli_predict_batched_matches_one_at_a_time(tmp_path, shared_faces, capsys, monkeypatch, tiny_vit_dir):
    from udfd.cli.main import main

    monkeypatch.setenv("UDFD_MODEL_VIT", f"local-dir:{tiny_vit_dir}")
    monkeypatch.setenv("UDFD_DETECTORS", "vit")
    clear_cache()
    folder = tmp_path / "in"
    folder.mkdir()
    for i, f in enumerate(sorted((shared_faces / "real" / "lfw").glob("*.jpg"))[:5]):
        (folder / f"{i}.jpg").write_bytes(f.read_bytes())
    (folder / "2b.jpg").write_text("not an image")
    runs = []
    for flags in (["--workers", "1", "--batch-size", "1"], ["--workers", "3", "--batch-size", "4"]):
        assert main(["predict", str(folder), "--json", *flags]) == 1
        runs.append([json.loads(line) for line in capsys.readouterr().out.splitlines()])
    one, many = runs
    assert [x["file"] for x in many] == [x["file"] for x in one] == sorted(str(p) for p in folder.iterdir())
    for a, b in zip(one, many, strict=True):
        assert ("error" in a) == ("error" in b)
        if "error" not in a:
            assert b["overall"]["fake_prob"] == pytest.approx(a["overall"]["fake_prob"], abs=1e-5)
    assert sum("error" in x for x in many) == 1
