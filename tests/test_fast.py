"""udfd.fast: every fast path on every image family (tiny architectures), the UDFD_FAST setting, the bench."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from udfd.detectors.base import families
from udfd.fast import FAST_MODES, FastPathError, accelerate, mode_for, parse_fast, set_threads
from udfd.loader import clear_cache, load_detector

IMAGE_FAMILIES = sorted(name for name, cls in families().items() if cls.modality == "image")
NOT_EXPORTABLE = {("clip", "onnx")}
CROPS = [np.random.default_rng(i).integers(0, 256, (40 + 8 * i, 36 + 4 * i, 3), dtype=np.uint8) for i in range(5)]


def test_parse_fast_and_mode_for():
    assert parse_fast("int8") == {"*": "int8"}
    assert parse_fast(" vit:onnx , cnn:channels_last ") == {"vit": "onnx", "cnn": "channels_last"}
    assert mode_for("bf16,vit:onnx", "vit") == "onnx" and mode_for("bf16,vit:onnx", "cnn") == "bf16"
    assert mode_for("vit:onnx", "cnn") is None
    with pytest.raises(FastPathError, match="unknown UDFD_FAST mode 'fp8'"):
        parse_fast("vit:fp8")


def test_set_threads():
    before = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 and torch.get_num_threads() == 1
        assert set_threads(0) >= 1
    finally:
        torch.set_num_threads(before)


def _modes() -> list:
    modes: list = [m for m in FAST_MODES if m != "compile"]  # compile: tens of seconds per model, see the slow test
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        modes[modes.index("onnx")] = pytest.param("onnx", marks=pytest.mark.skip(reason="onnx/onnxruntime missing"))
    return modes


@pytest.mark.parametrize("family", IMAGE_FAMILIES)
@pytest.mark.parametrize("mode", _modes())
def test_fast_copy_scores_close_to_eager_and_leaves_the_original_alone(family, mode):
    torch.manual_seed(0)
    det = families()[family].create(families()[family].tiny_arch)
    batch = det.preprocess(CROPS)
    eager = np.array([s.fake_prob for s in det.predict(batch)])
    if (family, mode) in NOT_EXPORTABLE:
        # torch's ONNX exporter has no op for open_clip's fused attention: a clear error, not a silent fallback
        with pytest.raises(FastPathError, match="ONNX export failed"):
            accelerate(det, mode)
        return
    fast = accelerate(det, mode)
    out = np.array([s.fake_prob for s in fast.predict(batch)])
    assert out.shape == eager.shape and np.isfinite(out).all() and ((out >= 0) & (out <= 1)).all()
    assert np.abs(out - eager).max() < 0.05, (family, mode)
    assert fast.version.endswith(f"+{mode}") and not det.version.endswith(mode)
    np.testing.assert_array_equal(eager, [s.fake_prob for s in det.predict(batch)])  # original unchanged
    quantized = [m for m in fast.module().modules() if "quantized" in type(m).__module__]
    has_linear = any(isinstance(m, torch.nn.Linear) for m in det.module().modules())
    assert bool(quantized) == (mode == "int8" and has_linear)
    assert not [m for m in det.module().modules() if "quantized" in type(m).__module__]


@pytest.mark.slow
def test_compile_path_matches_eager():
    torch.manual_seed(0)
    det = families()["cnn"].create(families()["cnn"].tiny_arch)
    batch = det.preprocess(CROPS)
    fast = accelerate(det, "compile")
    np.testing.assert_allclose([s.fake_prob for s in fast.predict(batch)], [s.fake_prob for s in det.predict(batch)],
                               atol=1e-4)


def test_video_detectors_are_refused():
    video = [cls for cls in families().values() if cls.modality == "video"]
    if not video:
        pytest.skip("no video family registered")
    det = video[0].create(video[0].tiny_arch)
    with pytest.raises(FastPathError, match="image detectors only"):
        accelerate(det, "int8")


def test_udfd_fast_setting_goes_through_the_loader_cache(tiny_settings):
    clear_cache()
    plain = load_detector("vit", settings=tiny_settings)
    fast = load_detector("vit", settings=replace(tiny_settings, fast="vit:int8"))
    assert fast is not plain and fast.version == f"{plain.version}+int8"
    assert load_detector("vit", settings=replace(tiny_settings, fast="int8")) is fast
    assert load_detector("vit", settings=replace(tiny_settings, fast="cnn:int8")) is plain
    assert load_detector("vit", settings=tiny_settings) is plain
    clear_cache()


def test_fast_bench_structure(tiny_settings, tmp_path: Path):
    from udfd.bench.fast import run_fast_bench

    for i in range(8):
        folder = tmp_path / ("real" if i % 2 else "fake") / f"s{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(CROPS[i % len(CROPS)]).save(folder / f"{i}.png")
    clear_cache()
    result = run_fast_bench(settings=tiny_settings, data=tmp_path, n=8, n_agree=8, modes=("int8", "bf16"))
    json.dumps(result)
    (row,) = result["detectors"]
    assert row["name"] == "vit" and set(row["results"]) == {"eager", "int8", "bf16"}
    for mode in ("int8", "bf16"):
        r = row["results"][mode]
        assert r["batch1_ms"]["samples"] == 8 and r["batch8_ms_per_img"]["samples"] == 3
        assert r["speedup_b1"] > 0 and 0 <= r["max_abs_delta_fake_prob"] < 0.05
        assert r["kept"] == (r["verdict_flips"] == 0)
    assert "| vit | int8 |" in result["table"] and "| vit | eager fp32 |" in result["table"]
