"""Optional faster inference paths for image detectors (`UDFD_FAST`), each an opt-in copy of a loaded detector.

Modes (all CPU, all through the Detector protocol — no family is named here):
- `int8`: dynamic int8 quantisation of every `nn.Linear` (weights int8, activations quantised on the fly; VNNI).
- `bf16`: `predict` under `torch.autocast("cpu", dtype=torch.bfloat16)` (AVX-512 BF16); scores come out in fp32.
- `compile`: `torch.compile` of `logits()` (TorchInductor; the first call per input shape compiles: tens of seconds).
- `channels_last`: the module and its input batches in NHWC memory layout (helps convolutions).
- `onnx`: `logits()` exported with the TorchScript ONNX exporter and run by ONNX Runtime (needs `onnx` and
  `onnxruntime`; see requirements.txt).
- `onnx_int8`: the `onnx` graph with ONNX Runtime's dynamic int8 quantisation of every MatMul with a constant weight
  (per output channel weights, activations quantised on the fly; VNNI). Convolutions and Gemm stay fp32, so it only
  speeds up what runs its Linear layers on token or feature sequences (transformers); cached like `onnx`.

Every mode changes numbers a little; `udfd bench --fast` measures each against eager fp32 on the same crops and
reports max |Δ fake_prob| and verdict flips. Use a mode only for a detector where it kept every verdict there.
A fast copy is for inference: `logits()` of an `onnx` copy has no gradients, so do not train or explain with it.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from udfd.detectors.base import Detector
from udfd.errors import UdfdError
from udfd.hub import EXECUTION_SEP

log = logging.getLogger(__name__)

FAST_MODES = ("int8", "bf16", "compile", "channels_last", "onnx", "onnx_int8")
AUTO, OFF = "auto", "off"  # UDFD_FAST: the checkpoint's verified mode (default) / eager everywhere
_OPSET = 17
VERIFY_TOLERANCE = 0.01  # max |Δ fake_prob| a default fast path may move a score on the verification crops


class FastPathError(UdfdError):
    """A fast path cannot be built for this detector (missing package, export failure, unknown mode)."""


def parse_fast(spec: str) -> dict[str, str]:
    """"int8" -> {"*": "int8"}; "vit:int8,cnn:channels_last" -> per detector name. Unknown modes raise."""
    out: dict[str, str] = {}
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        name, _, mode = item.rpartition(":")
        if mode not in FAST_MODES:
            raise FastPathError(f"unknown UDFD_FAST mode {mode!r} in {spec!r}; choose from {', '.join(FAST_MODES)}")
        out[name or "*"] = mode
    return out


def mode_for(spec: str, name: str, *, preferred: str | None = None) -> str | None:
    """The fast mode for detector `name`: UDFD_FAST="auto" (the default) takes the checkpoint's own measured
    choice (`preferred`, config.json `udfd.fast`); "off" or "" runs eager; explicit modes as in parse_fast."""
    spec = spec.strip()
    if spec in ("", OFF):
        return None
    if spec == AUTO:
        return preferred if preferred in FAST_MODES else None
    modes = parse_fast(spec)
    return modes.get(name, modes.get("*"))


def verification_crops(n: int = 12, seed: int = 0) -> list[np.ndarray]:
    """A fixed set of face-sized crops (smooth gradients, blobs and noise at several sizes) for load-time checks."""
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(n):
        side = (48, 96, 160, 224)[i % 4]
        yy, xx = np.mgrid[0:side, 0:side] / side
        base = np.stack([yy, xx, (yy + xx) / 2], -1) * 255 * rng.uniform(0.3, 1.0, 3)
        blob = np.exp(-(((yy - 0.5) ** 2 + (xx - 0.5) ** 2) / rng.uniform(0.02, 0.1)))[..., None] * 120
        noise = rng.normal(0, rng.uniform(2, 30), (side, side, 3))
        crops.append(np.clip(base + blob + noise, 0, 255).astype(np.uint8))
    return crops


def verify(eager: Detector, fast: Detector, *, tolerance: float = VERIFY_TOLERANCE) -> tuple[bool, float, int]:
    """(kept, max |Δ fake_prob|, verdict flips) of `fast` against `eager` on `verification_crops()`."""
    crops = verification_crops()
    a = np.array([s.fake_prob for s in eager.predict(eager.preprocess(crops))])
    b = np.array([s.fake_prob for s in fast.predict(fast.preprocess(crops))])
    delta = float(np.max(np.abs(a - b))) if len(a) else 0.0
    flips = int(np.sum((a >= eager.threshold) != (b >= eager.threshold)))
    return bool(np.isfinite(b).all() and delta <= tolerance and flips == 0), delta, flips


def set_threads(n: int = 0) -> int:
    """torch intra-op threads: `n`, or (0) every core this process may run on. Returns the number set."""
    if n <= 0:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def accelerate(det: Detector, mode: str, *, example: torch.Tensor | None = None,
               cache_dir: str | os.PathLike | None = None) -> Detector:
    """A copy of `det` whose `predict` runs the `mode` path; `det` itself is left untouched.

    `example`: a preprocessed batch for export (`onnx`); by default one zero image at the detector's input size.
    `cache_dir` (`onnx`, `onnx_int8`): keep the exported (and quantised) graph there and reuse it while weights,
    code and torch are unchanged (`onnx_cache_key`), so that a restart does not export again.
    """
    if mode not in FAST_MODES:
        raise FastPathError(f"unknown fast mode {mode!r}; choose from {', '.join(FAST_MODES)}")
    if det.modality != "image":
        raise FastPathError(f"fast paths are measured for image detectors only; {det.name} scores {det.modality}")
    # An onnx copy runs the exported graph and leaves the network as it is: it shares the network with `det`
    # (which explanations use) instead of holding a second copy of the weights that it never runs.
    memo = {id(det.module()): det.module()} if mode in ("onnx", "onnx_int8") else {}
    fast = copy.deepcopy(det, memo)
    net = fast.module().eval()
    base_logits = fast.logits
    if mode == "int8":
        from torch.ao.quantization import quantize_dynamic

        quantize_dynamic(net, {nn.Linear}, dtype=torch.qint8, inplace=True)
    elif mode == "bf16":
        fast.logits = _under_autocast(base_logits)
    elif mode == "compile":
        # The whole logits() (not just module.forward: some families call sub-modules directly), default backend.
        fast.logits = torch.compile(base_logits)
    elif mode == "channels_last":
        net.to(memory_format=torch.channels_last)
        # (a detector whose batch is not an image batch, e.g. `spectrum`'s statistics, runs as it is)
        fast.logits = lambda batch: base_logits(
            batch.contiguous(memory_format=torch.channels_last) if batch.dim() == 4 else batch)
    elif mode in ("onnx", "onnx_int8"):
        if example is None:
            example = det.preprocess([np.zeros((64, 64, 3), np.uint8)])
        # A detector may export part of its logits (`onnx_split`: a kinds model's graph gives every kind's score,
        # so that its views, udfd.detectors.timm_classifier.TimmDetector.with_kinds, run the same session).
        split = fast.onnx_split() if hasattr(fast, "onnx_split") else None
        body, tail = split or (base_logits, None)
        run = _onnx_logits(body, net, example, cache=_cache_file(cache_dir, det, net, example),
                           int8=mode == "onnx_int8")
        if tail is None:
            fast.logits = run
        else:
            fast.onnx_scores = run
            fast.logits = lambda batch: tail(run(batch))
    fast.version = f"{det.version}{EXECUTION_SEP}{mode}"
    # Explanations need gradients through the original network (an onnx or int8 copy has none): they use `eager`.
    fast.eager = det
    fast.explain_target = det.explain_target
    fast.fast_mode = mode
    return fast


def _under_autocast(logits: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return logits(batch).float()

    return run


class _LogitsModule(nn.Module):
    """Wraps a detector's `logits` so that the exporter traces exactly what `predict` scores."""

    def __init__(self, logits: Callable[[torch.Tensor], torch.Tensor], net: nn.Module) -> None:
        super().__init__()
        self.net = net  # registered so the exporter sees the parameters
        self._logits = logits

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self._logits(batch)


# Faces per ONNX Runtime call. Its CPU arena keeps the peak of the largest call made (measured: about 13 MB per face
# per session for effnet_lite0 and mesonet4_df, so a 32-face video batch kept ~1 GB in the two), and on CPU a larger
# call is not faster per face (benchmarks/results/bench_fast_new_members.json): larger batches are run in chunks.
ONNX_MAX_BATCH = 4


def onnx_cache_key(det: Detector, net: nn.Module, example: torch.Tensor) -> str:
    """What an exported graph depends on: the weights, the family's code and this file, torch, the input shape."""
    h = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for module in sorted({type(det).__module__, __name__}):  # sorted: a set's order changes between processes
        source = inspect.getsourcefile(sys.modules[module])
        h.update(Path(source).read_bytes() if source else module.encode())
    h.update(f"{torch.__version__}|{tuple(example.shape[1:])}|{_OPSET}".encode())
    return h.hexdigest()[:32]


def _cache_file(cache_dir: str | os.PathLike | None, det: Detector, net: nn.Module,
                example: torch.Tensor) -> Path | None:
    if not cache_dir:
        return None
    return Path(cache_dir).expanduser() / "onnx" / f"{det.name}-{onnx_cache_key(det, net, example)}.onnx"


def _export(logits: Callable[[torch.Tensor], torch.Tensor], net: nn.Module, example: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks traced as constants: expected
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: dynamo needs onnxscript
            torch.onnx.export(_LogitsModule(logits, net).eval(), (example,), buf, dynamo=False, opset_version=_OPSET,
                              input_names=["pixels"], output_names=["logits"],
                              dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}})
    except Exception as e:  # the exporter raises many types (OnnxExporterError, RuntimeError, TypeError, ...)
        raise FastPathError(f"ONNX export failed: {type(e).__name__}: {e}") from e
    return buf.getvalue()


def _cached_export(logits: Callable[[torch.Tensor], torch.Tensor], net: nn.Module, example: torch.Tensor,
                   cache: Path | None, *, reuse: bool = True) -> tuple[bytes, bool]:
    """(exported graph, whether it came from `cache`). A cache that cannot be read or written only costs an export
    (logged), never the fast path."""
    return _cached(cache, lambda: _export(logits, net, example), reuse=reuse, made="exported")


def _cached(cache: Path | None, make: Callable[[], bytes], *, reuse: bool, made: str) -> tuple[bytes, bool]:
    if cache is not None and reuse:
        try:
            return cache.read_bytes(), True
        except FileNotFoundError:
            pass
        except OSError as e:
            log.warning("ONNX cache %s unreadable (%s): exporting again", cache, e)
    graph = make()
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
            tmp.write_bytes(graph)
            os.replace(tmp, cache)  # atomic: a concurrent reader sees the whole file or none
            log.info("ONNX graph %s and cached in %s", made, cache)
        except OSError as e:
            log.warning("ONNX graph not cached in %s: %s", cache, e)
    return graph, False


def _quantize_int8(graph: bytes) -> bytes:
    """ONNX Runtime's dynamic int8 quantisation of `graph`: MatMuls with a constant weight only (weights per output
    channel; an activation x activation MatMul, e.g. attention scores, stays fp32), Conv and Gemm untouched."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = _QuantizerChatter()
    logging.getLogger().addFilter(quiet)
    try:
        with tempfile.TemporaryDirectory(prefix="udfd-int8-") as tmp:
            src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            src.write_bytes(graph)
            quantize_dynamic(src, dst, per_channel=True, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                             extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})
            return dst.read_bytes()
    except Exception as e:  # the quantizer raises many types (RuntimeError, ValueError, onnx errors, ...)
        raise FastPathError(f"ONNX int8 quantisation failed: {type(e).__name__}: {e}") from e
    finally:
        logging.getLogger().removeFilter(quiet)


class _QuantizerChatter(logging.Filter):
    """Drops the quantiser's own root-logger lines below ERROR (a pre-processing hint and one INFO line per tensor
    at every quantisation); its errors still pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or "onnxruntime" not in record.pathname


def _cached_graph(logits: Callable[[torch.Tensor], torch.Tensor], net: nn.Module, example: torch.Tensor,
                  cache: Path | None, *, int8: bool, reuse: bool = True) -> tuple[bytes, bool]:
    """The graph a session runs: the export, or (`int8`) its quantised copy, cached next to it under a name that
    also carries ONNX Runtime's version (the quantiser is part of it)."""
    if not int8:
        return _cached_export(logits, net, example, cache, reuse=reuse)
    return _cached(_int8_cache(cache), lambda: _quantize_int8(_cached_export(logits, net, example, cache, reuse=reuse)[0]),
                   reuse=reuse, made="quantised to int8")


def _int8_cache(cache: Path | None) -> Path | None:
    import onnxruntime as ort

    return None if cache is None else cache.with_name(f"{cache.stem}-int8-ort{ort.__version__}.onnx")


def _onnx_logits(logits: Callable[[torch.Tensor], torch.Tensor], net: nn.Module, example: torch.Tensor, *,
                 cache: Path | None = None, int8: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise FastPathError("UDFD_FAST=onnx and onnx_int8 need onnx and onnxruntime "
                            "(pip install -r requirements.txt)") from e
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    # ORT's threads spin after each run by default and then steal the cores from whatever runs next (torch, face
    # detection, another request): measured, eager models timed right after an ORT call ran ~1.5x slower.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # The CPU arena keeps every chunk a call grew it by: after the load-time verification (batches of
    # ONNX_MAX_BATCH) the two default sessions held ~110 MB of free arena at rest. Shrinking it back to its first
    # chunk after each run gives that back; measured, a one-face call costs the same, a 4-face call a few ms more
    # (README "Memory and cold start").
    run_options = ort.RunOptions()
    run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    graph, cached = _cached_graph(logits, net, example, cache, int8=int8)
    shown = _int8_cache(cache) if int8 else cache  # the file this session's graph came from
    try:
        session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - ORT raises its own types for a damaged graph
        if not cached:
            raise FastPathError(f"ONNX Runtime cannot load the exported graph: {e}") from e
        log.warning("ONNX cache %s is damaged (%s): exporting again", shown, e)
        graph, _ = _cached_graph(logits, net, example, cache, int8=int8, reuse=False)
        try:
            session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        except Exception as e2:  # noqa: BLE001
            raise FastPathError(f"ONNX Runtime cannot load the exported graph: {e2}") from e2
    if cached:
        log.info("ONNX graph from cache %s", shown)

    def run(batch: torch.Tensor) -> torch.Tensor:
        x = batch.detach().cpu().numpy()
        parts = [session.run(None, {"pixels": x[i:i + ONNX_MAX_BATCH]}, run_options)[0]
                 for i in range(0, len(x), ONNX_MAX_BATCH)] or [session.run(None, {"pixels": x}, run_options)[0]]
        return torch.from_numpy(parts[0] if len(parts) == 1 else np.concatenate(parts))

    return run
