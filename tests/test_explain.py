"""Explanations: every registered family, every method it declares (tiny random networks, no data needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from udfd.detectors import families
from udfd.detectors.base import Detector
from udfd.explain import ExplainError, explain_faces, explain_methods, explain_verdict, overlay, run_cam
from udfd.types import FaceVerdict, Heatmap, Overall, Verdict


def _crops(seed: int = 0) -> tuple[list[np.ndarray], list[tuple[int, int, int, int]]]:
    rng = np.random.default_rng(seed)
    crops = [rng.integers(0, 256, size=s, dtype=np.uint8) for s in ((50, 40, 3), (97, 97, 3), (13, 21, 3))]
    boxes = [(0, 0, 40, 50), (10, 5, 107, 102), (3, 3, 24, 16)]
    return crops, boxes


def _tiny(family: str) -> Detector:
    torch.manual_seed(0)
    cls = families()[family]
    det = cls.create(cls.tiny_arch)
    det.module().eval()
    return det


def _hooks(module: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in module.modules())


CASES = [(fam, m) for fam in sorted(families()) for m in explain_methods(_tiny(fam))]


def test_every_image_family_can_be_explained() -> None:
    image = {fam for fam, cls in families().items() if cls.modality == "image"}
    assert {fam for fam, _ in CASES} == image - {"spectrum"}
    assert explain_methods(_tiny("spectrum")) == (), "spectrum statistics have no spatial layout to point at"
    assert explain_methods(_tiny("lip_lstm")) == (), "a recurrent sequence model declares no CAM target"


@pytest.mark.parametrize(("family", "method"), CASES)
def test_maps_have_face_shape_in_unit_range_and_inputs_untouched(family: str, method: str) -> None:
    det = _tiny(family)
    crops, boxes = _crops()
    before = [c.copy() for c in crops]
    params = {k: v.clone() for k, v in det.module().state_dict().items()}
    maps = explain_faces(det, crops, boxes, method=method)
    assert len(maps) == len(crops)
    for hm, crop, box in zip(maps, crops, boxes, strict=True):
        assert isinstance(hm, Heatmap) and hm.detector == det.name and hm.method == method and hm.box == box
        assert hm.values.shape == crop.shape[:2] and hm.values.dtype == np.float32
        assert np.isfinite(hm.values).all() and hm.values.min() >= 0.0 and hm.values.max() <= 1.0
    assert all(np.array_equal(a, b) for a, b in zip(crops, before, strict=True)), "crops were modified"
    after = det.module().state_dict()
    assert all(torch.equal(params[k], after[k]) for k in params), "the model's weights or buffers changed"
    assert all(p.grad is None for p in det.module().parameters()), "gradients left on the shared model"


@pytest.mark.parametrize(("family", "method"), CASES)
def test_hooks_released_after_many_calls(family: str, method: str) -> None:
    det = _tiny(family)
    crops, boxes = _crops()
    start = _hooks(det.module())
    for _ in range(50):
        explain_faces(det, crops[:1], boxes[:1], method=method)
    assert _hooks(det.module()) == start


@pytest.mark.parametrize("method", ["gradcam", "fullgrad", "eigencam"])
def test_run_cam_releases_its_hooks_on_the_model_it_runs_on_even_on_failure(method: str) -> None:
    det = _tiny("cnn")
    target = det.explain_target()
    batch = det.preprocess(_crops()[0][:2])
    for _ in range(50):
        run_cam(target.model, target.layers, batch, method=method, class_index=1)
    assert _hooks(target.model) == 0

    # A failing target: the exception (and its traceback, which keeps the CAM object alive) must not leak hooks.
    def broken(_: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("broken reshape")

    with pytest.raises(RuntimeError, match="broken reshape") as err:
        run_cam(target.model, target.layers, batch, method=method, class_index=1, reshape_transform=broken)
    assert err.value is not None and _hooks(target.model) == 0


@pytest.mark.parametrize("family", ["cnn", "vit"])
def test_gradcam_map_changes_with_the_target_class(family: str) -> None:
    det = _tiny(family)
    crops, boxes = _crops()
    fake = explain_faces(det, crops[:2], boxes[:2], method="gradcam", target="fake")
    real = explain_faces(det, crops[:2], boxes[:2], method="gradcam", target="real")
    assert max(float(np.abs(f.values - r.values).mean()) for f, r in zip(fake, real, strict=True)) > 0.05


def _library_gradcam(target, batch: torch.Tensor, class_index: int) -> np.ndarray:
    """pytorch-grad-cam's GradCAM, run the way run_cam runs the library's other methods."""
    from pytorch_grad_cam import GradCAM

    from udfd.explain import LogOdds, _Logits

    cam = GradCAM(model=_Logits(target.model), target_layers=list(target.layers),
                  reshape_transform=target.reshape_transform)
    x = batch.detach().clone().float().requires_grad_(True)
    try:
        with torch.enable_grad():
            return np.clip(cam(input_tensor=x, targets=[LogOdds(class_index)] * len(x)), 0, 1)
    finally:
        cam.activations_and_grads.release()


# The tiny random timm network gives all-zero Grad-CAM maps (the library's too): its real checkpoint is tested below.
GRADCAM_FAMILIES = sorted({fam for fam, m in CASES if m == "gradcam"} - {"timm"})


@pytest.mark.parametrize("family", GRADCAM_FAMILIES)
@pytest.mark.parametrize("class_index", [0, 1])
def test_gradcam_gives_the_maps_of_pytorch_grad_cam(family: str, class_index: int) -> None:
    # udfd computes Grad-CAM itself, so that the default heat-map does not import pytorch-grad-cam (scikit-learn
    # and SciPy behind it): the same maps as the library's GradCAM.
    target = _tiny(family).explain_target()
    batch = _tiny(family).preprocess(_crops()[0])
    ours = run_cam(target.model, target.layers, batch, method="gradcam", class_index=class_index,
                   reshape_transform=target.reshape_transform)
    theirs = _library_gradcam(target, batch, class_index)
    assert ours.shape == theirs.shape == (len(batch), *batch.shape[-2:])
    assert ours.max() > 0.5, "a non-trivial map"
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert _hooks(target.model) == 0


def test_the_default_heatmap_is_the_library_gradcam_of_the_shipped_ensemble() -> None:
    # The app's default detector (the embedded ensemble, eager: no ONNX export here) on an example face.
    from PIL import Image

    from udfd.config import PROJECT_ROOT, Settings
    from udfd.loader import load_detector

    det = load_detector("ensemble", settings=Settings(fast="off"))
    assert explain_methods(det)[0] == "gradcam"
    crops = [np.asarray(Image.open(PROJECT_ROOT / "examples" / name).convert("RGB"))
             for name in ("real_fairface_0098.jpg", "fake_faceswap_fairface_0175_on_0085.jpg")]
    target, batch = det.explain_target(), det.preprocess(crops)
    peaks = []
    for class_index in (0, 1):
        ours = run_cam(target.model, target.layers, batch, method="gradcam", class_index=class_index,
                       reshape_transform=target.reshape_transform)
        np.testing.assert_allclose(ours, _library_gradcam(target, batch, class_index), atol=1e-5)
        peaks.append(ours.max(axis=(1, 2)))
    # A class with no positive evidence anywhere gives an all-zero map (the ReLU); one of the two always has some.
    assert (np.max(peaks, axis=0) > 0.5).all(), "non-trivial maps"


def test_fullgrad_is_class_agnostic_by_construction() -> None:
    # FullGrad sums absolute contributions: the log-odds of either class give the same map (documented).
    det = _tiny("cnn")
    crops, boxes = _crops()
    fake = explain_faces(det, crops[:1], boxes[:1], method="fullgrad", target="fake")[0].values
    real = explain_faces(det, crops[:1], boxes[:1], method="fullgrad", target="real")[0].values
    np.testing.assert_allclose(fake, real, atol=1e-5)
    assert fake.max() > 0.5, "a non-trivial map"


def test_vit_refuses_fullgrad_with_the_reason() -> None:
    det = _tiny("vit")
    assert explain_methods(det) == ("gradcam", "eigencam")
    crops, boxes = _crops()
    with pytest.raises(ExplainError, match="not meaningful on a ViT"):
        explain_faces(det, crops, boxes, method="fullgrad")


def test_cnn_families_default_to_fullgrad() -> None:
    assert explain_methods(_tiny("cnn"))[0] == "fullgrad"
    assert explain_methods(_tiny("timm"))[0] == "fullgrad"
    assert explain_methods(_tiny("ocvae")) == ("error",)


def test_undeclared_detector_is_a_clear_error() -> None:
    class Opaque:
        name = "opaque"

        def explain_target(self) -> None:
            return None

    with pytest.raises(ExplainError, match="opaque declares no explanation method"):
        explain_faces(Opaque(), *_crops())  # type: ignore[arg-type]


def test_overlay_blends_inside_the_box_only() -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    before = pixels.copy()
    values = np.ones((20, 30), np.float32)
    out = overlay(pixels, [Heatmap(detector="d", method="m", values=values, box=(10, 5, 40, 25))])
    assert np.array_equal(pixels, before)
    assert out.shape == pixels.shape and out.dtype == np.uint8
    outside = np.ones(pixels.shape[:2], bool)
    outside[5:25, 10:40] = False
    assert np.array_equal(out[outside], pixels[outside])
    assert not np.array_equal(out[5:25, 10:40], pixels[5:25, 10:40])
    with pytest.raises(ValueError, match="does not fit"):
        overlay(pixels, [Heatmap(detector="d", method="m", values=values, box=(0, 0, 10, 10))])


def test_explain_verdict_cuts_faces_from_the_image() -> None:
    det = _tiny("cnn")
    pixels = np.random.default_rng(2).integers(0, 256, size=(70, 90, 3), dtype=np.uint8)
    faces = tuple(
        FaceVerdict(
            box=b, face_found=True, confidence=0.9, scores={"cnn": 0.5}, label="real", fake_prob=0.5, uncertain=True
        )
        for b in [(0, 0, 40, 40), (50, 20, 90, 70)]
    )
    verdict = Verdict(
        file="x.png",
        kind="image",
        faces=faces,
        overall=Overall("real", 0.5, True, 0.5),
        model_versions={"cnn": "t"},
        timings_ms={},
    )
    maps = explain_verdict(pixels, verdict, det)
    assert [m.values.shape for m in maps] == [(40, 40), (50, 40)]
    assert overlay(pixels, maps).shape == pixels.shape


def test_cli_predict_explain_saves_timestamped_jpegs(tmp_path, monkeypatch, tiny_vit_dir, capsys) -> None:
    from PIL import Image

    from udfd.cli.main import main
    from udfd.loader import clear_cache

    monkeypatch.setenv("UDFD_MODEL_VIT", f"local-dir:{tiny_vit_dir}")
    monkeypatch.setenv("UDFD_DETECTORS", "vit")
    clear_cache()
    img = tmp_path / "portrait.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)).save(img)
    out_dir = tmp_path / "maps"
    assert main(["predict", str(img), "--json", "--explain", "--explain-dir", str(out_dir)]) == 0
    line = json.loads(capsys.readouterr().out)
    saved = sorted(out_dir.glob("*.jpg"))
    assert [str(p) for p in saved] == line["explanations"]
    assert len(saved) == 1 and saved[0].name.startswith("portrait.vit-gradcam.20")
    assert Image.open(saved[0]).size == (64, 48)
    # A method the detector does not support is a clear error for that file, not a silent substitute.
    assert main(["predict", str(img), "--explain", "--explain-dir", str(out_dir), "--explain-method", "fullgrad"]) == 1
    assert len(list(out_dir.glob("*.jpg"))) == 1
