"""udfd.fast: every fast path on every image family (tiny architectures), the UDFD_FAST setting, the bench."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from udfd.config import Settings
from udfd.detectors.base import families
from udfd.fast import FAST_MODES, FastPathError, accelerate, mode_for, parse_fast, set_threads, verify
from udfd.loader import clear_cache, load_detector

IMAGE_FAMILIES = sorted(name for name, cls in families().items() if cls.modality == "image")
# clip: open_clip's fused attention; ensemble: antialiased resizing of each member's view (no ONNX op at opset 17;
# its members run their own fast paths instead)
NOT_EXPORTABLE = {(family, mode) for family in ("clip", "ensemble") for mode in ("onnx", "onnx_int8")}
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
        for mode in ("onnx", "onnx_int8"):
            modes[modes.index(mode)] = pytest.param(mode, marks=pytest.mark.skip(reason="onnx/onnxruntime missing"))
    return modes


@pytest.mark.parametrize("family", IMAGE_FAMILIES)
@pytest.mark.parametrize("mode", _modes())
def test_fast_copy_scores_close_to_eager_and_leaves_the_original_alone(family, mode):
    torch.manual_seed(0)
    det = families()[family].create(families()[family].tiny_arch)
    batch = det.preprocess(CROPS)
    eager = np.array([s.fake_prob for s in det.predict(batch)])
    if (family, mode) in NOT_EXPORTABLE:
        # torch's ONNX exporter has no op for it: a clear error, not a silent fallback
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


def test_auto_takes_the_checkpoints_measured_mode_and_off_runs_eager():
    assert mode_for("auto", "cnn", preferred="onnx") == "onnx"
    assert mode_for("auto", "cnn", preferred=None) is None and mode_for("auto", "cnn", preferred="fp8") is None
    assert mode_for("off", "cnn", preferred="onnx") is None and mode_for("", "cnn", preferred="onnx") is None
    assert mode_for("bf16", "cnn", preferred="onnx") == "bf16", "an explicit UDFD_FAST wins"


def _saved(tmp_path, fast_mode):
    torch.manual_seed(0)
    cls = families()["cnn"]
    det = cls.create(cls.tiny_arch)
    det.save_pretrained(tmp_path, metadata={"version": "1", "fast": fast_mode}, fp16=False)
    return f"local-dir:{tmp_path}"


@pytest.mark.skipif(not any(m == "onnx" for m in _modes()), reason="onnx/onnxruntime missing")
def test_default_loads_the_verified_fast_path_and_explains_with_the_eager_module(tmp_path, caplog):
    clear_cache()
    ref = _saved(tmp_path, "onnx")
    with caplog.at_level("INFO", logger="udfd.loader"):
        det = load_detector(ref, settings=Settings())  # UDFD_FAST defaults to auto
    assert det.version.endswith("+onnx") and "verified" in caplog.text
    assert det.explain_target() is not None and det.eager.explain_target().layers == det.explain_target().layers
    eager = load_detector(ref, settings=Settings(fast="off"))
    assert not eager.version.endswith("+onnx")
    kept, delta, flips = verify(eager, det)
    assert kept and delta < 1e-4 and flips == 0


def test_a_fast_path_that_moves_scores_falls_back_to_eager_with_one_log_line(tmp_path, caplog, monkeypatch):
    import udfd.loader as loader

    clear_cache()
    ref = _saved(tmp_path, "int8")

    def broken(det, mode, **kwargs):
        fast = accelerate(det, "channels_last")
        fast.predict = lambda batch: [type(s)(s.detector, 1.0 - s.fake_prob, s.threshold) for s in det.predict(batch)]
        return fast

    monkeypatch.setattr(loader, "accelerate", broken)
    with caplog.at_level("WARNING", logger="udfd.loader"):
        det = load_detector(ref, settings=Settings())
    assert not hasattr(det, "eager"), "the eager detector serves"
    assert len([r for r in caplog.records if "running eager" in r.message]) == 1


def _tiny_cnn():
    torch.manual_seed(0)
    cls = families()["cnn"]
    return cls.create(cls.tiny_arch)


def test_onnx_graph_is_cached_and_reused_without_exporting_again(tmp_path, monkeypatch):
    import udfd.fast as fast_mod

    det = _tiny_cnn()
    batch = det.preprocess(CROPS)
    first = accelerate(det, "onnx", cache_dir=tmp_path)
    cached = list((tmp_path / "onnx").glob("*.onnx"))
    assert len(cached) == 1 and cached[0].stat().st_size > 0

    def no_export(*args, **kwargs):
        raise AssertionError("exported again although the graph is cached")

    monkeypatch.setattr(fast_mod, "_export", no_export)
    second = accelerate(det, "onnx", cache_dir=tmp_path)
    np.testing.assert_allclose([s.fake_prob for s in second.predict(batch)],
                               [s.fake_prob for s in first.predict(batch)], atol=1e-6)
    # other weights: another key, so the cached graph is not used (and here, exporting is refused)
    other = _tiny_cnn()
    with torch.no_grad():
        next(other.module().parameters()).add_(0.5)
    with pytest.raises(AssertionError, match="exported again"):
        accelerate(other, "onnx", cache_dir=tmp_path)


def test_a_damaged_cached_graph_is_exported_again(tmp_path, caplog):
    det = _tiny_cnn()
    accelerate(det, "onnx", cache_dir=tmp_path)
    (cached,) = (tmp_path / "onnx").glob("*.onnx")
    cached.write_bytes(b"not an onnx graph")
    fast = accelerate(det, "onnx", cache_dir=tmp_path)
    batch = det.preprocess(CROPS)
    np.testing.assert_allclose([s.fake_prob for s in fast.predict(batch)],
                               [s.fake_prob for s in det.predict(batch)], atol=1e-4)
    assert "damaged" in caplog.text and cached.read_bytes() != b"not an onnx graph"


def test_onnx_runs_a_large_batch_in_chunks_with_the_same_scores(monkeypatch):
    import udfd.fast as fast_mod

    monkeypatch.setattr(fast_mod, "ONNX_MAX_BATCH", 2)
    det = _tiny_cnn()
    fast = accelerate(det, "onnx")
    crops = CROPS * 3  # 15 crops: 7 full chunks and one of 1
    whole = [s.fake_prob for s in fast.predict(fast.preprocess(crops))]
    one_by_one = [fast.predict(fast.preprocess([c]))[0].fake_prob for c in crops]
    np.testing.assert_allclose(whole, one_by_one, atol=1e-6)
    np.testing.assert_allclose(whole, [s.fake_prob for s in det.predict(det.preprocess(crops))], atol=1e-4)


def test_settings_cache_dir_from_env(tmp_path):
    assert Settings().cache_dir == ""  # the dataclass default: no cache (tests, library callers)
    assert Settings.from_env({"UDFD_CACHE_DIR": str(tmp_path)}).cache_dir == str(tmp_path)
    assert Settings.from_env({"UDFD_CACHE_DIR": "off"}).cache_dir == ""
    assert Settings.from_env({"XDG_CACHE_HOME": str(tmp_path)}).cache_dir == str(tmp_path / "udfd")


def test_onnx_cache_key_is_the_same_in_every_process():
    """The key must not depend on the process's hash seed (it did: a set's order), or a restart exports again."""
    import os
    import subprocess
    import sys

    code = ("import torch, numpy as np\n"
            "from udfd.detectors.base import families\n"
            "from udfd.fast import onnx_cache_key\n"
            "torch.manual_seed(0)\n"
            "cls = families()['timm']; det = cls.create(cls.tiny_arch)\n"
            "print(onnx_cache_key(det, det.module(), det.preprocess([np.zeros((8, 8, 3), np.uint8)])))\n")
    keys = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout.split()[-1] for seed in ("1", "2", "3")}
    assert len(keys) == 1, keys


def _tiny_vit():
    torch.manual_seed(0)
    cls = families()["vit"]
    return cls.create(cls.tiny_arch)


def _graph_ops(path: Path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}


@pytest.mark.skipif("onnx_int8" not in _modes(), reason="onnx/onnxruntime missing")
def test_onnx_int8_quantises_the_weight_matmuls_keeps_verdicts_and_reuses_its_cache(tmp_path, monkeypatch):
    import udfd.fast as fast_mod

    det = _tiny_vit()
    batch = det.preprocess(CROPS)
    fast = accelerate(det, "onnx_int8", cache_dir=tmp_path)
    (int8_graph,) = (tmp_path / "onnx").glob("*-int8-ort*.onnx")
    ops = _graph_ops(int8_graph)
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul"}, "weights quantised"
    assert "MatMul" in ops, "attention scores (activation x activation) stay fp32"
    assert not _graph_ops(int8_graph.with_name(int8_graph.name.split("-int8-")[0] + ".onnx")) & {"MatMulInteger"}
    kept, delta, flips = verify(det, fast)
    assert kept and flips == 0 and 0 < delta <= 0.01, delta  # int8 moves scores a little, never a verdict here
    assert fast.version.endswith("+onnx_int8") and fast.fast_mode == "onnx_int8"

    def refuse(*args, **kwargs):
        raise AssertionError("exported or quantised again although the int8 graph is cached")

    monkeypatch.setattr(fast_mod, "_export", refuse)
    monkeypatch.setattr(fast_mod, "_quantize_int8", refuse)
    again = accelerate(det, "onnx_int8", cache_dir=tmp_path)
    np.testing.assert_array_equal([s.fake_prob for s in again.predict(batch)],
                                  [s.fake_prob for s in fast.predict(batch)])


@pytest.mark.skipif("onnx_int8" not in _modes(), reason="onnx/onnxruntime missing")
def test_onnx_int8_named_by_a_checkpoint_is_verified_at_load(tmp_path, caplog):
    clear_cache()
    _tiny_vit().save_pretrained(tmp_path, metadata={"version": "1", "fast": "onnx_int8"}, fp16=False)
    with caplog.at_level("INFO", logger="udfd.loader"):
        det = load_detector(f"local-dir:{tmp_path}", settings=Settings(cache_dir=str(tmp_path / "cache")))
    assert det.version.endswith("+onnx_int8") and "fast path onnx_int8 verified" in caplog.text
    eager = load_detector(f"local-dir:{tmp_path}", settings=Settings(fast="off"))
    batch = eager.preprocess(CROPS)
    fast_scores, eager_scores = det.predict(batch), eager.predict(batch)
    assert [s.is_fake for s in fast_scores] == [s.is_fake for s in eager_scores]
    assert det.explain_target().layers == eager.explain_target().layers  # explanations use the eager module
    clear_cache()


@pytest.mark.skipif("onnx_int8" not in _modes(), reason="onnx/onnxruntime missing")
def test_an_int8_graph_that_moves_scores_falls_back_to_eager_with_one_log_line(tmp_path, caplog, monkeypatch):
    """A real quantised graph whose logits come out negated (every verdict flips): the load-time check refuses it."""
    import onnx
    from onnx import helper

    import udfd.fast as fast_mod

    real = fast_mod._quantize_int8

    def negated(graph: bytes) -> bytes:
        model = onnx.load_from_string(real(graph))
        (out,) = model.graph.output
        for node in model.graph.node:
            node.output[:] = [f"{o}_pre" if o == out.name else o for o in node.output]
        model.graph.node.append(helper.make_node("Neg", [f"{out.name}_pre"], [out.name]))
        return model.SerializeToString()

    monkeypatch.setattr(fast_mod, "_quantize_int8", negated)
    clear_cache()
    _tiny_vit().save_pretrained(tmp_path, metadata={"version": "1", "fast": "onnx_int8"}, fp16=False)
    with caplog.at_level("WARNING", logger="udfd.loader"):
        det = load_detector(f"local-dir:{tmp_path}", settings=Settings())
    assert not hasattr(det, "eager") and not det.version.endswith("+onnx_int8"), "the eager detector serves"
    (line,) = [r.message for r in caplog.records if "running eager" in r.message]
    assert "onnx_int8 moved scores" in line
    clear_cache()


@pytest.mark.skipif("onnx_int8" not in _modes(), reason="onnx/onnxruntime missing")
def test_a_damaged_cached_int8_graph_is_quantised_again(tmp_path, caplog):
    det = _tiny_vit()
    first = accelerate(det, "onnx_int8", cache_dir=tmp_path)
    (cached,) = (tmp_path / "onnx").glob("*-int8-ort*.onnx")
    cached.write_bytes(b"not an onnx graph")
    with caplog.at_level("WARNING", logger="udfd.fast"):
        fast = accelerate(det, "onnx_int8", cache_dir=tmp_path)
    batch = det.preprocess(CROPS)
    np.testing.assert_allclose([s.fake_prob for s in fast.predict(batch)],
                               [s.fake_prob for s in first.predict(batch)], atol=1e-6)
    assert f"ONNX cache {cached} is damaged" in caplog.text and cached.read_bytes() != b"not an onnx graph"
