"""Explanations as arrays: CAM heat-maps and reconstruction-error maps per face, colour maps and overlays.

Pure compute: tensors / arrays / dataclasses in, `Heatmap`s and RGB arrays out. Writing files stays at the edges
(CLI, app). Which method fits which network is the detector's call (`Detector.explain_target()`):

- `fullgrad` (FullGrad, the UDFD report's choice; default on CNNs): input-gradient × input plus bias-gradient ×
  bias over every 2-D conv / batch-norm layer. Not offered on a ViT: its only 2-D biases are the patch embedding's.
- `gradcam` (Grad-CAM) on the declared layer; with the ViT's reshape transform the tokens become a patch grid.
  Computed here (`grad_cam`, the same maps as pytorch-grad-cam's); the other two run pytorch-grad-cam, imported
  only when they are asked for.
- `eigencam` (EigenCAM): first principal component of the layer's activations (class-agnostic, no gradients).
- `error`: per-pixel reconstruction error, for detectors that reconstruct their input (one-class VAE).

CAMs run on a private copy of the network, so that the hooks they register never see another thread's forward
pass on the shared (cached) model, and the copy's hooks are released before returning.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch

from udfd.detectors.base import Detector, ExplainTarget
from udfd.errors import UdfdError
from udfd.faces import verdict_boxes
from udfd.heatmaps import colorize, fft_error_spectrum  # noqa: F401  (re-exported)
from udfd.types import Heatmap, Verdict

CAM_METHODS = ("eigencam", "fullgrad", "gradcam")
METHOD_LABELS: dict[str, str] = {
    "fullgrad": "FullGrad",
    "gradcam": "Grad-CAM",
    "eigencam": "EigenCAM",
    "error": "reconstruction error",
}
TargetClass = Literal["fake", "real"]


class ExplainError(UdfdError):
    """A detector cannot be explained with the requested method."""


@runtime_checkable
class Reconstructs(Protocol):
    """Detectors that reconstruct their input (anomaly detectors) explain themselves by their error map."""

    def error_map(self, batch: torch.Tensor, *, relative: bool = False) -> np.ndarray: ...


def explain_methods(detector: Detector) -> tuple[str, ...]:
    """The methods this detector supports, its default first; empty when it cannot be explained."""
    target = detector.explain_target()
    if target is not None:
        return tuple(target.methods)
    if isinstance(detector, Reconstructs):
        return ("error",)
    return ()


def explain_note(detector: Detector) -> str:
    """What the detector says about its methods (e.g. why FullGrad is not offered on a ViT)."""
    target = detector.explain_target()
    return target.note if target is not None else ""


def explain_faces(
    detector: Detector,
    crops: Sequence[np.ndarray],
    boxes: Sequence[tuple[int, int, int, int]],
    *,
    method: str | None = None,
    target: TargetClass = "fake",
) -> list[Heatmap]:
    """One `Heatmap` per face crop: values in [0, 1] with the crop's (H, W), for the `target` class.

    `method=None` takes the detector's default. Crops are not modified. Raises `ExplainError` when the detector
    does not support the method. The error map does not depend on `target` (it explains the anomaly score).
    """
    if len(crops) != len(boxes):
        raise ValueError(f"{len(crops)} crops but {len(boxes)} boxes")
    methods = explain_methods(detector)
    if not methods:
        raise ExplainError(f"detector {detector.name} declares no explanation method")
    method = method or methods[0]
    if method not in methods:
        raise ExplainError(
            f"detector {detector.name} supports {', '.join(methods)}, not {method!r}"
            + (f" ({explain_note(detector)})" if explain_note(detector) else "")
        )
    if not crops:
        return []
    batch = detector.preprocess(crops)
    if method == "error":
        maps = detector.error_map(batch, relative=True)
    else:
        explain_target = detector.explain_target()
        assert explain_target is not None  # methods came from it
        class_index = explain_target.fake_index if target == "fake" else 1 - explain_target.fake_index
        maps = cam_maps(explain_target, batch, method=method, class_index=class_index)
    return [
        Heatmap(detector=detector.name, method=method, values=resize_map(m, crop.shape[:2]), box=tuple(box))
        for m, crop, box in zip(maps, crops, boxes, strict=True)
    ]


def explain_verdict(
    pixels: np.ndarray,
    verdict: Verdict,
    detector: Detector,
    *,
    method: str | None = None,
    target: TargetClass = "fake",
) -> list[Heatmap]:
    """Heat-maps for every face of a verdict, cut from the image it was computed on (heat-map boxes are in the
    pixels of `pixels`, which may be a reduced copy of the file the verdict's boxes refer to)."""
    boxes = verdict_boxes(verdict, pixels)
    crops = [np.ascontiguousarray(pixels[y0:y1, x0:x1]) for x0, y0, x1, y1 in boxes]
    return explain_faces(detector, crops, boxes, method=method, target=target)


def cam_maps(target: ExplainTarget, batch: torch.Tensor, *, method: str, class_index: int) -> np.ndarray:
    """(B, S, S) CAM maps in [0, 1] for `class_index`, computed on a private copy of `target.model`."""
    names = {id(m): n for n, m in target.model.named_modules()}
    if any(id(layer) not in names for layer in target.layers):
        raise ExplainError("the explanation layers are not part of the explained model")
    model = copy.deepcopy(target.model).eval()
    layers = [model.get_submodule(names[id(layer)]) for layer in target.layers]
    return run_cam(
        model, layers, batch, method=method, class_index=class_index, reshape_transform=target.reshape_transform
    )


def run_cam(
    model: torch.nn.Module,
    layers: Sequence[torch.nn.Module],
    batch: torch.Tensor,
    *,
    method: str,
    class_index: int,
    reshape_transform=None,
) -> np.ndarray:
    """Run one CAM method on `model` itself (Grad-CAM: `grad_cam`; EigenCAM and FullGrad: pytorch-grad-cam); its
    hooks are removed even when it fails."""
    if method not in CAM_METHODS:
        raise ExplainError(f"unknown CAM method {method!r}; known: {sorted(CAM_METHODS)}")
    if method == "gradcam":
        maps = grad_cam(model, layers, batch, class_index=class_index, reshape_transform=reshape_transform)
        return np.clip(np.nan_to_num(maps, nan=0.0), 0.0, 1.0)
    # Imported here, for the methods that need it: pytorch-grad-cam's base class imports scikit-learn and SciPy.
    from pytorch_grad_cam import EigenCAM

    cls = EigenCAM if method == "eigencam" else _fullgrad_class()
    wrapped = _Logits(model)
    cam = cls(model=wrapped, target_layers=list(layers), reshape_transform=reshape_transform)
    # A fresh leaf that needs gradients: the caller's batch is untouched, and gradients reach the hooked layers
    # even when the network's parameters are frozen.
    x = batch.detach().clone().float().requires_grad_(True)
    try:
        with torch.enable_grad():
            maps = cam(input_tensor=x, targets=[LogOdds(class_index)] * len(x))
    finally:
        # Not `with cam:` — its __exit__ swallows IndexError.
        cam.activations_and_grads.release()
        cam.outputs = None
        wrapped.zero_grad(set_to_none=True)
    return np.clip(np.nan_to_num(np.asarray(maps, dtype=np.float32), nan=0.0), 0.0, 1.0)


def grad_cam(
    model: torch.nn.Module,
    layers: Sequence[torch.nn.Module],
    batch: torch.Tensor,
    *,
    class_index: int,
    reshape_transform=None,
) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017) of the log-odds of `class_index`: (B, H, W) maps in [0, 1] at the batch's
    size, averaged over `layers`.

    The same computation as pytorch-grad-cam's GradCAM (tests/test_explain.py compares the maps), done here because
    the app's default heat-map is a Grad-CAM and importing that package costs ~70 MB resident (its base class
    imports scikit-learn and SciPy for methods the app does not run by default).
    """
    shape = reshape_transform or (lambda t: t)
    activations: dict[int, torch.Tensor] = {}
    gradients: dict[int, torch.Tensor] = {}

    def saver(i: int):
        def save(_module: torch.nn.Module, _inputs: object, output: torch.Tensor) -> None:
            activations[i] = shape(output).detach()
            if output.requires_grad:
                output.register_hook(lambda grad: gradients.__setitem__(i, shape(grad).detach()))

        return save

    wrapped = _Logits(model).eval()  # as pytorch-grad-cam does
    handles = [layer.register_forward_hook(saver(i)) for i, layer in enumerate(layers)]
    # A fresh leaf that needs gradients: as in run_cam.
    x = batch.detach().clone().float().requires_grad_(True)
    try:
        with torch.enable_grad():
            target = LogOdds(class_index)
            sum(target(row) for row in wrapped(x)).backward()
    finally:
        for handle in handles:
            handle.remove()
        wrapped.zero_grad(set_to_none=True)
    size = (x.shape[-1], x.shape[-2])  # (W, H) for cv2
    per_layer = []
    for i, layer in enumerate(layers):
        if i not in gradients or activations[i].ndim != 4:
            raise ExplainError(f"explanation layer {type(layer).__name__} gave no (B, C, h, w) activation with a "
                               "gradient")
        acts = activations[i].cpu().numpy()
        weights = gradients[i].cpu().numpy().mean(axis=(2, 3))
        cam = np.maximum((weights[:, :, None, None] * acts).sum(axis=1), 0)
        per_layer.append(_unit_maps(cam, size))
    return _unit_maps(np.maximum(np.stack(per_layer, axis=1), 0).mean(axis=1))


def _unit_maps(maps: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """Each map shifted to 0, scaled to max 1 and resized to `size` (W, H): pytorch-grad-cam's scale_cam_image."""
    import cv2

    out = []
    for m in maps:
        m = m - np.min(m)
        m = m / (1e-7 + np.max(m))
        out.append(cv2.resize(np.float32(m), size) if size else m)
    return np.float32(out)


class LogOdds:
    """CAM target: the log-odds of one class, log(p / (1 - p)) = z_i - logsumexp(z_others).

    A softmax over two classes depends only on the logit difference, and trained two-class heads often move both
    logits together; explaining a raw logit then gives nearly the same map for either class. The log-odds make the
    Grad-CAM maps of the two classes complementary. FullGrad takes absolute values, so its map is the same for
    both classes: it shows where the evidence is, not which way it points.
    """

    def __init__(self, index: int) -> None:
        self.index = index

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        others = torch.cat([output[..., : self.index], output[..., self.index + 1 :]], dim=-1)
        return output[..., self.index] - torch.logsumexp(others, dim=-1)


class _Logits(torch.nn.Module):
    """Hands pytorch-grad-cam a plain logits tensor (transformers models return an output object)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out.logits if hasattr(out, "logits") else out


def _fullgrad_class() -> type:
    # Defined on first use: pytorch-grad-cam (and torchvision behind it) is imported only when explaining.
    from pytorch_grad_cam import FullGrad
    from pytorch_grad_cam.base_cam import BaseCAM

    class FullGradAllBiases(FullGrad):
        """FullGrad over every Conv2d / BatchNorm2d with a bias, subclasses included.

        pytorch-grad-cam matches layer types exactly, which skips timm's BatchNormAct2d (batch norm fused with
        its activation) and leaves MobileNetV2 with the input-gradient term only. For such fused layers the
        hooked gradient is the one after the activation: an approximation of the bias-gradient term.
        """

        def __init__(self, model: torch.nn.Module, target_layers: list, reshape_transform=None) -> None:
            layers = [
                m
                for m in model.modules()
                if isinstance(m, torch.nn.Conv2d | torch.nn.BatchNorm2d) and m.bias is not None
            ]
            BaseCAM.__init__(self, model, layers, reshape_transform, compute_input_gradient=True)
            self.bias_data = [self.get_bias_data(layer).cpu().numpy() for layer in layers]

    return FullGradAllBiases


def resize_map(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(h, w) map in [0, 1] -> `shape` (H, W), float32, still in [0, 1]."""
    import cv2

    h, w = int(shape[0]), int(shape[1])
    out = cv2.resize(np.asarray(values, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0).astype(np.float32)


def overlay(pixels: np.ndarray, heatmaps: Sequence[Heatmap], *, alpha: float = 0.5) -> np.ndarray:
    """A copy of the RGB image with each heat-map blended over its face box (show_cam_on_image style)."""
    out = np.array(pixels, dtype=np.uint8, copy=True)
    for hm in heatmaps:
        x0, y0, x1, y1 = hm.box
        region = out[y0:y1, x0:x1]
        if region.shape[:2] != hm.values.shape:
            raise ValueError(f"heat-map {hm.values.shape} does not fit box {hm.box} of a {out.shape} image")
        blended = (1.0 - alpha) * region.astype(np.float32) + alpha * colorize(hm.values).astype(np.float32)
        out[y0:y1, x0:x1] = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    return out
