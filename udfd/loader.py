"""The one loader: model reference -> ready Detector, cached once per process (thread-safe)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError

from udfd.config import Settings
from udfd.detectors.base import Detector, family_for
from udfd.errors import HubUnreachableError, ModelUnavailableError, UdfdError
from udfd.fast import AUTO, FastPathError, accelerate, mode_for, verify
from udfd.hub import UDFD_KEY, ModelRef, model_version, parse_refs, read_config, resolve

log = logging.getLogger(__name__)

_CACHE: dict[str, tuple[Detector, str | None]] = {}  # reference -> (detector, version stamp of a local folder)
_LOCK = threading.RLock()  # re-entrant: an ensemble loads its members while its own load holds the lock


def load_detector(
    name_or_ref: str, *, settings: Settings | None = None, download: Callable[..., str] | None = None
) -> Detector:
    """Load a detector by short name (`vit`) or reference (`hf-hub:org/repo[@rev]`, `local-dir:path`).

    Each resolved reference is loaded once per process; concurrent callers wait for the first load. A local
    folder is keyed on the version recorded in its config.json as well, so that when retraining promotes a
    new version into the folder the next call loads it (the running app picks it up without a restart). With
    `settings.fast` (UDFD_FAST) an image detector comes back as its fast copy (`udfd.fast.accelerate`), also cached.
    """
    settings = settings or Settings()
    refs = parse_refs(name_or_ref, short_names=settings.models)
    failures: list[str] = []
    note = ""  # why the preferred reference did not serve, in plain words for a visitor
    for ref in refs:
        try:
            det = _load_ref(ref, name=_short_name(name_or_ref, settings), settings=settings, download=download)
        except ModelUnavailableError as e:
            if len(refs) == 1:
                raise
            failures.append(f"{ref}: {e}")
            note = note or (e.public if isinstance(e, HubUnreachableError) else "the preferred copy could not be loaded")
            continue
        if failures:
            log.warning("%s: loaded from %s after %d failed reference(s): %s", det.name, ref, len(failures),
                        "; ".join(failures))
        det.loaded_from = str(ref)  # which reference served, and why the preferred ones did not
        det.fallback_reasons = tuple(failures)
        det.fallback_note = note
        return det
    raise ModelUnavailableError(f"{name_or_ref}: no reference could be loaded: " + "; ".join(failures))


def _load_ref(ref: ModelRef, *, name: str | None, settings: Settings, download: Callable[..., str] | None
              ) -> Detector:
    key = str(ref)
    with _LOCK:
        stamp = _local_version(ref)
        cached = _CACHE.get(key)
        if cached is None or cached[1] != stamp:
            if cached is not None:
                log.info("%s changed version (%s -> %s): reloading", ref, cached[1], stamp)
            _CACHE[key] = (_load_uncached(ref, name=name, download=download, timeout=settings.hub_timeout), stamp)
        det = _CACHE[key][0]
        mode = mode_for(settings.fast, det.name, preferred=getattr(det, "preferred_fast", None))
        if mode is None or det.modality != "image":
            return det
        fast = _CACHE.get(f"{key}|{mode}")
        if fast is None or fast[1] != stamp:  # a promoted version gets its own fast copy
            _CACHE[f"{key}|{mode}"] = (_fast_copy(det, mode, verify_it=settings.fast.strip() == AUTO,
                                                   cache_dir=settings.cache_dir), stamp)
        return _CACHE[f"{key}|{mode}"][0]


def _fast_copy(det: Detector, mode: str, *, verify_it: bool, cache_dir: str = "") -> Detector:
    """The fast copy of `det`; a default (auto) path must keep every score on the verification crops, or `det`
    itself serves, with one log line saying why. An exported graph is cached under `cache_dir` (udfd.fast)."""
    try:
        fast = accelerate(det, mode, cache_dir=cache_dir or None)
    except FastPathError as e:
        if not verify_it:
            raise
        log.warning("%s: fast path %s unavailable, running eager: %s", det.name, mode, e)
        return det
    if not verify_it:
        log.info("%s: fast path %s (UDFD_FAST)", det.name, mode)
        return fast
    kept, delta, flips = verify(det, fast)
    if not kept:
        log.warning("%s: fast path %s moved scores (max |Δ fake_prob| %.4f, %d verdict flips): running eager",
                    det.name, mode, delta, flips)
        return det
    log.info("%s: fast path %s verified (max |Δ fake_prob| %.5f, no flips)", det.name, mode, delta)
    return fast


def current_detector(name: str, loaded: Detector, *, settings: Settings) -> Detector:
    """The detector now configured under `name`: `loaded` unless its folder holds a newer version. A newer
    version that fails to load is logged as an error and `loaded` keeps serving."""
    if name not in settings.models:
        return loaded
    try:
        return load_detector(name, settings=settings)
    except UdfdError as e:
        log.error("keeping %s %s: the new version could not be loaded (%s)", name, loaded.version, e)
        return loaded


def _local_version(ref: ModelRef) -> str | None:
    if ref.kind != "local-dir":
        return None
    try:
        return str(read_config(Path(ref.location).expanduser()).get(UDFD_KEY, {}).get("version", ""))
    except ModelUnavailableError:
        return None  # reported by the load itself


def _short_name(name_or_ref: str, settings: Settings) -> str | None:
    return name_or_ref if name_or_ref in settings.models else None


def _load_uncached(ref: ModelRef, *, name: str | None, download: Callable[..., str] | None,
                   timeout: float) -> Detector:
    setting = f"UDFD_MODEL_{name.upper()}" if name else ""
    folder = resolve(ref, download=download, setting=setting, timeout=timeout)
    config = read_config(folder)
    cls = family_for(config)
    try:
        detector = cls.from_pretrained(folder, config)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:  # corrupt weights included
        raise ModelUnavailableError(f"checkpoint {ref} could not be loaded as {cls.family!r}: {e}") from e
    detector.module().eval()
    if name:
        detector.name = name
    detector.version = model_version(folder, ref)
    detector.preferred_fast = config.get(UDFD_KEY, {}).get("fast")  # measured by `udfd bench --fast`
    log.info("loaded %s (%s) from %s", detector.name, cls.family, folder)
    return detector


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def warm_up(detector: Detector) -> None:
    """One tiny forward pass so the first user does not pay for lazy initialisation."""
    import numpy as np

    with torch.inference_mode():
        # A video detector takes a sequence of crops; an image detector one crop.
        shape = (2, 32, 32, 3) if detector.modality == "video" else (32, 32, 3)
        detector.predict(detector.preprocess([np.zeros(shape, np.uint8)]))
