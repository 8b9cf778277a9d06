"""The `clip` family beyond the contract: safe SVM persistence, weights handling, unavailability, cache, CAM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from udfd.detectors.clip import ClipDetector
from udfd.detectors.clip_encoder import TINY_CLIP_CONFIG, build_clip
from udfd.detectors.clip_head import SVMDecision, SVMParams, fit_platt
from udfd.errors import ModelUnavailableError
from udfd.hub import read_config

TINY = ClipDetector.tiny_arch


def _faces(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(40 + 3 * i, 36, 3), dtype=np.uint8) for i in range(n)]


def _trained(kernel: str = "rbf", variant: str = "product") -> tuple[ClipDetector, object, np.ndarray, np.ndarray]:
    """A tiny detector whose SVM is a real scikit-learn fit on its own projections of random embeddings."""
    from sklearn.svm import SVC

    from udfd.detectors.clip_head import Platt

    torch.manual_seed(0)
    det = ClipDetector.create({**TINY, "variant": variant})
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(60, TINY_CLIP_CONFIG["embed_dim"])).astype(np.float32)
    labels = (emb[:, 0] + 0.5 * rng.normal(size=60) > 0).astype(int)
    with torch.no_grad():
        z = det.net.project(torch.from_numpy(emb)).double().numpy()
    svc = SVC(kernel=kernel, gamma="scale").fit(z, labels)
    trained = det.with_classifier(det.net.head, SVMParams.from_sklearn(svc), Platt(a=-2.0, b=0.1), variant=variant,
                                  text=det.net.text_embedding, pca=None, meta={})
    return trained, svc, emb, z


@pytest.mark.parametrize("kernel", ["rbf", "linear"])
def test_reimplemented_decision_equals_sklearn(kernel: str) -> None:
    _, svc, _, z = _trained(kernel)
    ours = SVMDecision(SVMParams.from_sklearn(svc))(torch.from_numpy(z)).numpy()
    np.testing.assert_allclose(ours, svc.decision_function(z), rtol=0, atol=1e-10)


@pytest.mark.parametrize("kernel", ["rbf", "linear"])
def test_round_trip_gives_identical_decisions_and_no_pickle(kernel: str, tmp_path: Path) -> None:
    det, svc, emb, z = _trained(kernel)
    det.save_pretrained(tmp_path, fp16=False)  # fp16 would round the bundled encoder (not the head or the SVM)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "encoder.safetensors", "model.safetensors"]
    meta = read_config(tmp_path)["udfd"]
    assert meta["svm"]["kernel"] == kernel and meta["svm"]["n_support"] == len(svc.support_)
    assert meta["svm"]["gamma"] == pytest.approx(svc._gamma) and meta["platt"] == {"a": -2.0, "b": 0.1}
    loaded = ClipDetector.from_pretrained(tmp_path, read_config(tmp_path))
    x = torch.from_numpy(emb)
    before, after = det.decision_from_embeddings(x), loaded.decision_from_embeddings(x)
    assert before.dtype == torch.float64 and torch.equal(before, after)
    np.testing.assert_allclose(after.numpy(), svc.decision_function(z), rtol=0, atol=1e-6)
    batch = det.preprocess(_faces(3))
    assert torch.equal(det.logits(batch), loaded.logits(batch))


def test_platt_fit_recovers_a_logistic_relation() -> None:
    rng = np.random.default_rng(0)
    f = rng.normal(size=20000) * 2
    y = (rng.random(20000) < 1 / (1 + np.exp(-1.5 * f + 0.5))).astype(int)  # a = -1.5, b = 0.5
    platt = fit_platt(f, y)
    assert platt.a == pytest.approx(-1.5, abs=0.1) and platt.b == pytest.approx(0.5, abs=0.1)
    with pytest.raises(ValueError, match="both classes"):
        fit_platt([0.1, 0.2], [1, 1])


def test_no_weights_means_unavailable_with_what_to_configure(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailableError, match="UDFD_MODEL_CLIP.*never runs with random weights"):
        ClipDetector.create({})
    det, *_ = _trained()
    det.save_pretrained(tmp_path)
    config = read_config(tmp_path)
    config["udfd"]["arch"]["weights"] = None
    with pytest.raises(ModelUnavailableError, match="open_clip weights"):
        ClipDetector.from_pretrained(tmp_path, config)
    (tmp_path / "encoder.safetensors").unlink()
    with pytest.raises(ModelUnavailableError, match="encoder.safetensors does not exist"):
        ClipDetector.from_pretrained(tmp_path, read_config(tmp_path))


def test_hub_weights_offline_are_unavailable(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="hf-hub:udfd-test/not-cached.*set udfd.arch.weights"):
        ClipDetector.create({**TINY, "allow_random_encoder": False, "weights": "hf-hub:udfd-test/not-cached"})


def test_default_settings_list_clip_as_unavailable() -> None:
    from udfd.config import DEFAULT_MODELS, Settings
    from udfd.loader import clear_cache, load_detector

    assert "clip" in DEFAULT_MODELS
    clear_cache()
    with pytest.raises(ModelUnavailableError, match="does not exist.*UDFD_MODEL_CLIP"):
        load_detector("clip", settings=Settings())


@pytest.mark.parametrize("suffix", [".safetensors", ".bin"])
def test_local_weights_file_is_loaded_and_bundled_without_its_path(suffix: str, tmp_path: Path) -> None:
    torch.manual_seed(3)
    clip = build_clip(TINY_CLIP_CONFIG)
    weights = tmp_path / f"open_clip_model{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in clip.state_dict().items()}, str(weights))
    else:
        torch.save(clip.state_dict(), weights)
    arch = {"clip_model": "tiny", "clip_config": TINY_CLIP_CONFIG, "weights": str(weights), "variant": "sum"}
    det = ClipDetector.create(arch)
    batch = det.preprocess(_faces(2))
    with torch.no_grad():
        np.testing.assert_allclose(det.embed(batch).numpy(), clip.visual(batch).numpy(), atol=1e-6)
        assert torch.allclose(det.net.text_embedding, clip.encode_text(__import__("open_clip").tokenize(
            ["a photo of a human face"]))[0], atol=1e-6)
    out = tmp_path / "ckpt"
    det.save_pretrained(out, fp16=False)
    meta = read_config(out)["udfd"]
    assert meta["arch"]["weights"] == "encoder.safetensors" and str(tmp_path) not in (out / "config.json").read_text()
    assert meta["arch"]["allow_random_encoder"] is False
    loaded = ClipDetector.from_pretrained(out, read_config(out))
    assert torch.equal(det.logits(batch), loaded.logits(batch))


def test_text_variant_needs_the_text_tower(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    visual_only = {k: v.contiguous() for k, v in build_clip(TINY_CLIP_CONFIG).state_dict().items()
                   if k.startswith("visual.")}
    save_file(visual_only, str(tmp_path / "visual.safetensors"))
    arch = {"clip_config": TINY_CLIP_CONFIG, "weights": str(tmp_path / "visual.safetensors")}
    assert ClipDetector.create({**arch, "variant": "image"}).net.text_embedding is None
    with pytest.raises(ModelUnavailableError, match="needs the CLIP text tower"):
        ClipDetector.create({**arch, "variant": "product"})


def test_features_are_raw_embedding_and_projection() -> None:
    det, *_ = _trained()
    batch = det.preprocess(_faces(3))
    low, high = det.features(batch)
    assert low.shape == (3, TINY_CLIP_CONFIG["embed_dim"]) and high.shape == (3, TINY["head_dim"])
    torch.testing.assert_close(low, det.embed(batch))
    torch.testing.assert_close(high.norm(dim=1), torch.ones(3))


def test_gradcam_reaches_the_vision_tower_and_depends_on_the_class() -> None:
    from udfd.explain import explain_faces, explain_methods

    det, *_ = _trained()
    assert explain_methods(det) == ("gradcam", "eigencam")
    faces = _faces(2, seed=5)
    boxes = [(0, 0, f.shape[1], f.shape[0]) for f in faces]
    fake = explain_faces(det, faces, boxes, method="gradcam", target="fake")
    real = explain_faces(det, faces, boxes, method="gradcam", target="real")
    assert all(m.values.max() > 0.5 for m in fake)
    assert max(float(np.abs(f.values - r.values).mean()) for f, r in zip(fake, real, strict=True)) > 0.05


def test_embedding_cache_runs_the_encoder_once_per_crop(tmp_path: Path) -> None:
    from accelerate import Accelerator

    from training.clip_embed import EmbeddingCache, embed_crops, encoder_id

    det, *_ = _trained()
    crops = np.stack([np.full((32, 32, 3), i * 20, np.uint8) for i in range(5)])
    calls = []
    det.net.visual.register_forward_hook(lambda m, i, o: calls.append(len(o)))
    cache = EmbeddingCache(tmp_path, encoder_id(det))
    first = embed_crops(det, crops, cache=cache, accelerator=Accelerator(cpu=True), batch_size=2)
    assert sum(calls) == 5
    second = embed_crops(det, crops, cache=cache, accelerator=Accelerator(cpu=True), batch_size=2)
    assert sum(calls) == 5 and np.array_equal(first, second)
    more = embed_crops(det, np.concatenate([crops, crops[:1] + 1]), cache=cache, accelerator=Accelerator(cpu=True))
    assert sum(calls) == 6 and np.array_equal(more[:5], first)  # only the new crop ran the encoder
    np.testing.assert_allclose(more, det.embed(det.preprocess(list(crops) + [crops[0] + 1])).numpy(), atol=1e-5)
    torch.manual_seed(9)
    other = ClipDetector.create(TINY)
    assert encoder_id(other) != encoder_id(det) and encoder_id(det).startswith("udfd-tiny-random-32px-")
    assert len(list(cache.folder.rglob("*.npy"))) == 6


def test_train_image_refuses_the_clip_family(tmp_path: Path) -> None:
    from training.train_image import main

    with pytest.raises(SystemExit, match="train_clip.py"):
        main(["--family", "clip", "--synthetic", "--output", str(tmp_path / "o"), "--report-to", "none",
              "--cache-dir", str(tmp_path / "c")])


def test_train_clip_needs_weights_or_the_explicit_random_flag(tmp_path: Path) -> None:
    from training.train_clip import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--synthetic", "--output", str(tmp_path)])
    args = parse_args(["--synthetic", "--output", str(tmp_path), "--allow-random-encoder", "--margin", "0.5"])
    assert args.margin == 0.5 and args.batch_size == 128 and (args.val_share, args.test_share) == (0.1, 0.2)
    assert json.dumps(args.variants) == '["image", "sum", "product"]'


def test_the_app_greys_out_clip_with_the_reason() -> None:
    import app
    from udfd.config import DEFAULT_MODELS, Settings

    available, unavailable = app.load_models(Settings(detectors=("clip",), models={"clip": DEFAULT_MODELS["clip"]}))
    assert available == {} and "UDFD_MODEL_CLIP" in unavailable["clip"]


def test_bench_rows_time_a_configured_clip_checkpoint(tmp_path: Path) -> None:
    from training.data import synthetic_dataset
    from udfd.bench.families import bench_families, format_family_table
    from udfd.bench.latency import stats
    from udfd.config import Settings
    from udfd.media import iter_image_files

    det, *_ = _trained()
    det.save_pretrained(tmp_path / "ckpt", metadata={"version": "t"})
    files = iter_image_files([synthetic_dataset(tmp_path / "imgs", n=4)])
    settings = Settings(models={"clip": f"local-dir:{tmp_path / 'ckpt'}"})
    (row,) = bench_families(settings=settings, files=files, stats=stats)
    assert row["name"] == "clip" and 0 < row["batch1"]["p50_ms"] <= row["batch1"]["p95_ms"]
    assert row["train_images_per_s"] == "not measured: trains with training/train_clip.py and its own loss"
    assert "| clip |" in format_family_table([row])
