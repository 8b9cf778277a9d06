"""udfd.bench.latency on a tiny checkpoint and 4 generated images: result structure, not timing thresholds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from udfd.bench.latency import PATHS, run_bench, sample_images
from udfd.errors import UdfdError

SIZES = [(64, 64), (60, 80), (90, 120), (48, 48)]  # (h, w): mixed sizes, as in the real benchmark


@pytest.fixture()
def bench_data(tmp_path: Path) -> Path:
    root = tmp_path / "faces"
    for i, (h, w) in enumerate(SIZES):
        folder = root / ("real" if i % 2 else "fake") / f"src{i % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(i).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        PILImage.fromarray(pixels).save(folder / f"img{i}.{'png' if i % 2 else 'jpg'}")
    return root


def test_run_bench_structure(tiny_settings, bench_data: Path) -> None:
    result = run_bench(settings=tiny_settings, data=bench_data, n=4, include_vit_base=False, include_families=False)

    json.dumps(result)  # the CLI writes it as JSON
    assert result["n_images"] == 4
    assert sorted((im["height"], im["width"]) for im in result["images"]) == sorted(SIZES)
    env = result["environment"]
    assert env["torch_threads"] >= 1 and env["torch"] and env["transformers"]
    assert {"training_running_before", "cpu_busy_before", "load_avg_after"} <= set(env)
    assert any("face detection" in note for note in result["notes"])

    (model,) = result["models"]
    assert model["name"] == "vit" and model["arch"]["hidden_size"] == 32
    assert set(model["results"]) == set(PATHS)
    for key, r in model["results"].items():
        assert 0 < r["p50_ms"] <= r["p95_ms"], key
        assert 0 < r["min_ms"] <= r["p50_ms"] and r["mean_ms"] > 0, key
    assert model["results"]["ours_b1"]["samples"] == 4
    breakdown = model["results"]["ours_b1"]["breakdown_mean_ms"]
    assert set(breakdown) == {"decode", "faces", "model", "total"}
    assert all(v > 0 for v in breakdown.values())
    assert model["results"]["ours_b8"]["batches"] == 3  # 3 rounds of one batch of 4

    speedup = model["speedup_vs_pipeline"]
    assert all(v > 0 for v in speedup.values()) and {"batch_1", "batch_8"} <= set(speedup)
    agreement = model["agreement"]
    assert agreement["n"] == 4
    assert math.isfinite(agreement["max_abs_delta_fake_prob"])
    assert 0 <= agreement["mean_abs_delta_fake_prob"] <= agreement["max_abs_delta_fake_prob"] < 0.1
    if "slower_than_pipeline" in model:
        assert model["slower_than_pipeline"]["profile_top_self_time"]

    table = result["table"].splitlines()
    assert table[0].startswith("| model | path | batch | p50 ms")
    assert len(table) == 2 + len(PATHS)


def test_sample_images_mixes_sources_and_is_seeded(bench_data: Path) -> None:
    picked = sample_images(bench_data, n=2, seed=0)
    assert {p.parent.name for p in picked} == {"src0", "src1"}
    assert picked == sample_images(bench_data, n=2, seed=0)
    with pytest.raises(UdfdError):
        sample_images(bench_data / "missing", n=2, seed=0)


def test_family_rows_cover_every_configured_detector(tiny_vit_dir: Path, bench_data: Path, tmp_path: Path) -> None:
    from udfd.bench.families import bench_families, format_family_table
    from udfd.bench.latency import stats
    from udfd.config import Settings
    from udfd.media import iter_image_files

    settings = Settings(models={"vit": f"local-dir:{tiny_vit_dir}", "gone": f"local-dir:{tmp_path / 'nope'}"})
    rows = bench_families(settings=settings, files=iter_image_files([bench_data])[:4], stats=stats)
    by_name = {r["name"]: r for r in rows}
    assert set(by_name) == {"vit", "gone"}
    assert "does not exist" in by_name["gone"]["unavailable"]
    vit = by_name["vit"]
    assert 0 < vit["batch1"]["p50_ms"] <= vit["batch1"]["p95_ms"] and vit["batch8"]["samples"] == 1
    assert vit["train_images_per_s"] > 0
    table = format_family_table(rows)
    assert "| vit |" in table and "unavailable" in table


@pytest.mark.slow
def test_video_bench_compares_the_paths_on_one_clip(tmp_path, face_rgb, tiny_settings):
    from dataclasses import replace

    from tests.conftest import face_clip, write_video
    from udfd.bench.video import run_video_bench
    from udfd.config import VideoSettings

    clip = write_video(tmp_path / "c.mp4", face_clip(face_rgb, 12))
    # Two image detectors, as the default video set is: every path runs all of them, in the configured order.
    import shutil

    second = shutil.copytree(tiny_settings.models["vit"].removeprefix("local-dir:"), tmp_path / "vit_b")
    models = {**tiny_settings.models, "vit_b": f"local-dir:{second}"}
    settings = replace(tiny_settings, video=VideoSettings(frames=4), video_detectors=("vit_b", "vit"), models=models)
    result = run_video_bench(settings=settings, clip=clip, seconds=10.0, repeats=1)
    assert [n.split("@")[0] for n in result["detectors"]["udfd"]] == ["vit_b", "vit"]
    assert result["detectors"]["missing"] == {}
    paths = result["paths"]
    assert all(list(r["video_scores"]) == ["vit_b", "vit"] for r in paths.values())
    assert paths["udfd"]["verdict"]["fake_prob"] == paths["udfd"]["video_scores"]["vit_b"]["score"], "first decides"
    assert set(paths) == {"udfd", "uniform", "every_frame"}
    assert paths["udfd"]["frames_analysed"] == paths["uniform"]["frames_analysed"] == 4
    assert paths["every_frame"]["frames_analysed"] == paths["every_frame"]["frames_decoded"] == 12
    for r in paths.values():
        assert r["wall_s"] > 0 and r["peak_traced_mib"] > 0
        assert set(r["stage_share"]) == {"decode", "motion", "faces", "lips", "model"}
    assert paths["uniform"]["stage_ms"]["motion"] == 0.0, "uniform selection measures no motion"
    assert "| every frame" in result["table"]


def test_video_bench_refuses_when_no_video_detector_loads(tmp_path, tiny_settings) -> None:
    from dataclasses import replace

    from udfd.bench.video import run_video_bench

    clip = tmp_path / "c.mp4"
    clip.write_bytes(b"not read")
    with pytest.raises(UdfdError, match="no video detector could be loaded"):
        run_video_bench(settings=replace(tiny_settings, video_detectors=("no_such_detector",)), clip=clip)


@pytest.mark.parametrize("head", [{"stats_stages": None}, {"stats_stages": [3]},
                                  {"stats_stages": [3], "fake_kinds": ["swap", "gan"]}])
def test_side_by_side_scores_a_timm_detector_three_ways(tmp_path: Path, bench_data: Path, head) -> None:
    """A tiny timm checkpoint (plain, with a head on stage statistics as effnet_lite0 1.1 has, or one head per kind of
    fake as effnet_lite0_kinds has): our default path,
    eager fp32 and the plain timm + torchvision script all run on every file; the plain script's probability is
    the network's own softmax (same weights, its own resize)."""
    import torch
    from torchvision.transforms.functional import normalize, to_tensor

    from udfd.bench.side_by_side import _plain_timm, run_side_by_side, side_by_side_markdown
    from udfd.config import Settings
    from udfd.detectors.timm_classifier import TimmDetector
    from udfd.loader import clear_cache

    torch.manual_seed(0)
    det = TimmDetector.create({**TimmDetector.tiny_arch, "mean": [0.5] * 3, "std": [0.5] * 3, **head})
    with torch.no_grad():  # a non-zero head, so that wrongly loaded weights would show in the probability
        for layer in (m for m in det.net.get_classifier().modules() if isinstance(m, torch.nn.Linear)):
            layer.weight.normal_(std=0.5)
        if head.get("fake_kinds"):
            det.net.get_classifier().platt.copy_(torch.tensor([0.7, -0.4]))
    folder = tmp_path / "tiny-timm"
    det.save_pretrained(folder, metadata={"version": "test", "fast": "onnx"}, fp16=False)
    clear_cache()
    settings = Settings(detectors=("tiny",), models={"tiny": f"local-dir:{folder}"})
    result = run_side_by_side(settings=settings, data=bench_data, n=4)
    assert set(result["rows"]) == {"ours_default", "ours_eager", "plain_timm"}
    assert all(r["p50_ms"] > 0 for r in result["rows"].values()) and result["rows"]["plain_timm"]["x_plain"] == 1.0
    assert result["n_images"] == 4 and result["default_vs_eager"]["flips"] == 0
    assert side_by_side_markdown(result).count("\n| ") == 4  # header + three rows
    image = tmp_path / "same_size.png"  # the network's own input size: torchvision's resize leaves it as it is
    pixels = np.random.default_rng(5).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    PILImage.fromarray(pixels).save(image)
    with torch.inference_mode():
        x = normalize(to_tensor(pixels), [0.5] * 3, [0.5] * 3).unsqueeze(0)
        expected = float(torch.softmax(det.net.eval()(x), dim=-1)[0, det.fake_index])
    assert _plain_timm(det, f"local-dir:{folder}", settings)(image) == pytest.approx(expected, abs=1e-5)


def test_side_by_side_needs_a_timm_network(tiny_settings, bench_data: Path) -> None:
    from udfd.bench.side_by_side import run_side_by_side

    with pytest.raises(UdfdError, match="no timm network"):
        run_side_by_side(settings=tiny_settings, data=bench_data, n=2)


def test_vit_side_by_side_structure(bench_data: Path) -> None:
    """A tiny ViT in place of ViT-B/16: every path scores every file, the JSON says the weights are random, the
    unmeasured checkpoint is served eager, and a checkpoint naming bf16 is served bf16 (verified at load)."""
    from udfd.bench.vit_side_by_side import run_vit_side_by_side, vit_side_by_side_markdown
    from udfd.config import Settings

    arch = {"image_size": 32, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 64}
    result = run_vit_side_by_side(settings=Settings(), data=bench_data, n=4, arch=arch, modes=("bf16",))
    json.dumps(result)
    assert "RANDOM WEIGHTS" in result["weights"] and result["n_images"] == 4
    assert set(result["rows"]) == {"eager_whole", "eager_faces", "default_bf16_whole", "default_bf16_faces",
                                   "pipeline"}
    assert result["loaded"]["as_saved"]["served_mode"] is None  # no udfd.fast in config.json: eager
    # bf16 if it kept every verdict on the load-time crops, else eager (None): the median threshold of a random
    # tiny net can sit next to a crop's score
    assert result["loaded"]["default_bf16"]["served_mode"] in ("bf16", None)
    if result["loaded"]["default_bf16"]["served_mode"] == "bf16":  # the load-time check it passed, recorded
        check = result["loaded"]["default_bf16"]["verification"]
        assert check["flips"] == 0 and 0 <= check["max_abs_delta_fake_prob"] <= 0.01
    rows = result["rows"]
    assert rows["eager_whole"]["flips"] == 0 and rows["eager_whole"]["max_abs_delta_fake_prob"] == 0.0
    # our resize/normalise against the image processor's: same weights, so close (not equal: resampling differs)
    assert rows["pipeline"]["max_abs_delta_fake_prob"] < 0.05
    assert all(r["p50_ms"] > 0 and r["p90_ms"] >= r["p50_ms"] for r in rows.values())
    assert rows["default_bf16_whole"]["max_abs_delta_fake_prob"] <= 0.01  # the load-time tolerance
    assert result["target"]["fastest_kept_mode"] in ("bf16", None) and isinstance(result["target"]["met"], bool)
    assert vit_side_by_side_markdown(result).count("\n| ") == 1 + len(rows)  # header + one line per row


def test_vit_target_counts_only_modes_that_were_served() -> None:
    """A mode that failed its load-time check was served eager: its rows time eager and cannot meet the target."""
    from udfd.bench.vit_side_by_side import _target

    rows = {"eager_whole": {"x_pipeline": 1.0},
            "default_onnx_int8_whole": {"p50_ms": 50.0, "x_pipeline": 0.25, "flips": 0},
            "default_bf16_whole": {"p50_ms": 90.0, "x_pipeline": 0.45, "flips": 0}}
    served = {"default_onnx_int8": {"served_mode": None}, "default_bf16": {"served_mode": "bf16"}}
    target = _target(rows, ("onnx_int8", "bf16"), served)
    assert target["fastest_kept_mode"] == "bf16" and target["met"] is False
    served["default_onnx_int8"]["served_mode"] = "onnx_int8"
    assert _target(rows, ("onnx_int8", "bf16"), served) == {**target, "fastest_kept_mode": "onnx_int8",
                                                              "fastest_kept_x_pipeline": 0.25, "met": True}
    rows["default_onnx_int8_whole"]["flips"] = 1  # served, but it flipped a verdict here
    assert _target(rows, ("onnx_int8", "bf16"), served)["fastest_kept_mode"] == "bf16"


def test_vit_b16_without_side_by_side_is_refused(caplog) -> None:
    from udfd.cli.main import main

    assert main(["bench", "--vit-b16"]) == 2
    assert "--vit-b16 goes with --side-by-side" in caplog.text


def test_train_speed_of_a_fast_copy_is_its_eager_networks_and_an_onnx_ensemble_says_why_not() -> None:
    """`udfd bench` rows for the default set: an ONNX-served detector trains as its eager network, and an ensemble
    whose members answer through ONNX (no gradient on that path) gets a reason instead of crashing the bench."""
    import numpy as np

    from udfd.bench.families import _train_speed
    from udfd.detectors.base import get_family
    from udfd.detectors.ensemble import EnsembleDetector
    from udfd.fast import accelerate

    cls = get_family("cnn")
    fast = accelerate(cls.create(cls.tiny_arch), "onnx")
    assert fast.fast_mode == "onnx"
    crops = [np.random.default_rng(i).integers(0, 256, (40, 40, 3), dtype=np.uint8) for i in range(4)]
    assert _train_speed(fast, crops) > 0
    ens = EnsembleDetector([fast], specs=[{"name": "cnn"}])
    assert _train_speed(ens, crops) == "not measured: no trainable weights on this path"
