"""Model references, checkpoint folders, model cards and Hub transfer.

A reference is `hf-hub:org/repo[@revision]`, `local-dir:path`, or a short name from `Settings.models`.
Anything else is ambiguous and raises: we never guess whether "foo/bar" is a folder or a Hub repo.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from udfd.errors import HubUnreachableError, ModelRefError, ModelUnavailableError

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
UDFD_KEY = "udfd"  # our metadata lives under this key in config.json, next to any transformers fields
HUB_TIMEOUT = 5.0  # seconds the Hub has to answer the first call about a repo (Settings.hub_timeout)
HUB_RETRY_AFTER = 300.0  # once unreachable, Hub references are served from the local cache this long, unasked


@dataclass(frozen=True)
class ModelRef:
    kind: Literal["hf-hub", "local-dir"]
    location: str
    revision: str | None = None

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        return f"{self.kind}:{self.location}{rev}"


def parse_ref(ref: str, *, short_names: dict[str, str] | None = None) -> ModelRef:
    """Parse a model reference; short names resolve through `short_names` (one level)."""
    ref = ref.strip()
    if ref.startswith("hf-hub:"):
        body = ref.removeprefix("hf-hub:")
        repo, _, rev = body.partition("@")
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise ModelRefError(f"bad Hub reference {ref!r}: expected hf-hub:org/repo[@revision]")
        return ModelRef("hf-hub", repo, rev or None)
    if ref.startswith("local-dir:"):
        path = ref.removeprefix("local-dir:")
        if not path:
            raise ModelRefError(f"bad local reference {ref!r}: expected local-dir:path")
        return ModelRef("local-dir", path)
    if short_names and ref in short_names:
        targets = split_refs(short_names[ref])
        if not targets or any(t in short_names for t in targets):
            raise ModelRefError(f"short name {ref!r} must point to references, not to {short_names[ref]!r}")
        return parse_ref(targets[0])  # the preferred reference; parse_refs gives the fallbacks too
    raise ModelRefError(
        f"ambiguous model reference {ref!r}: write hf-hub:org/repo[@revision] or local-dir:path"
        + (f", or one of the short names {sorted(short_names)}" if short_names else "")
    )


def split_refs(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """`"hf-hub:org/a | local-dir:models/a"` (or a JSON list) -> the references in order of preference."""
    items = value if isinstance(value, list | tuple) else str(value).split("|")
    return [r.strip() for r in items if r and r.strip()]


def parse_refs(ref: str, *, short_names: dict[str, str] | None = None) -> list[ModelRef]:
    """Every reference a name stands for, in order: the loader takes the first that loads."""
    targets = split_refs(short_names[ref]) if short_names and ref.strip() in short_names else split_refs(ref)
    if not targets:
        raise ModelRefError(f"empty model reference {ref!r}")
    return [parse_ref(t) for t in targets]


Downloader = Callable[..., str]


def resolve(ref: ModelRef, *, download: Downloader | None = None, setting: str = "",
            timeout: float = HUB_TIMEOUT) -> Path:
    """Return a local folder holding the checkpoint, downloading from the Hub when needed.

    `download` defaults to `hub_download` (bounded by `timeout`); it is the injection point for tests.
    `setting` names the configuration a user should change; it goes into error messages.
    """
    hint = f" Configure it with {setting}=local-dir:/path/to/checkpoint or hf-hub:org/repo." if setting else ""
    if ref.kind == "local-dir":
        path = Path(ref.location).expanduser()
        if not path.is_dir():
            raise ModelUnavailableError(f"model folder {path} does not exist.{hint}")
        if not (path / CONFIG_NAME).is_file():
            raise ModelUnavailableError(f"model folder {path} has no {CONFIG_NAME}.{hint}")
        return path
    try:
        if download is None:
            return Path(hub_download(repo_id=ref.location, revision=ref.revision, timeout=timeout))
        return Path(download(repo_id=ref.location, revision=ref.revision))
    except Exception as e:  # huggingface_hub raises many types offline (LocalEntryNotFound, HTTP, OS errors)
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        why = "HF_HUB_OFFLINE is set and it is not in the local cache" if offline else f"{type(e).__name__}: {e}"
        error = HubUnreachableError if offline or isinstance(e, HubUnreachableError) else ModelUnavailableError
        raise error(
            f"cannot load {ref} from the Hugging Face Hub ({why}). The Hub needs network access;"
            f" offline, download it elsewhere and point to the folder.{hint}"
        ) from e


_down_lock = threading.Lock()
_down_until = 0.0  # time.monotonic() until which the Hub counts as unreachable
_down_why = ""


def hub_down() -> str:
    """Why the Hub counts as unreachable now ("" when it does not): set by `hub_download` for HUB_RETRY_AFTER s."""
    with _down_lock:
        return _down_why if time.monotonic() < _down_until else ""


def _mark_down(why: str) -> None:
    global _down_until, _down_why
    with _down_lock:
        _down_until, _down_why = time.monotonic() + HUB_RETRY_AFTER, why


def reset_hub_state() -> None:
    """Forget that the Hub was unreachable (the next Hub reference asks it again)."""
    global _down_until, _down_why
    with _down_lock:
        _down_until, _down_why = 0.0, ""


def hub_download(*, repo_id: str, revision: str | None, timeout: float = HUB_TIMEOUT) -> str:
    """`snapshot_download`, bounded: the Hub has `timeout` seconds to answer the first call about the repo.

    huggingface_hub waits without limit for that answer (its repo_info call has no timeout), so a Hub that accepts
    connections and never answers would hang start-up. Here a silent, refused or offline Hub is marked unreachable
    for HUB_RETRY_AFTER seconds: this and every later Hub reference are then served from the local cache only, at
    once (or fail with HubUnreachableError), and the loader falls back to the next reference. Downloads themselves
    stay bounded by huggingface_hub's HF_HUB_DOWNLOAD_TIMEOUT between bytes.
    """
    import httpx2
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    why = hub_down()
    if not why:
        try:
            sha = _ask_hub(repo_id, revision, timeout=timeout)
            return snapshot_download(repo_id=repo_id, revision=sha or revision)
        except HfHubHTTPError:  # the Hub answered (404, 401, 5xx): huggingface_hub's own handling, cache included
            return snapshot_download(repo_id=repo_id, revision=revision)
        except (httpx2.ConnectError, httpx2.TimeoutException, OfflineModeIsEnabled, TimeoutError) as e:
            silent = isinstance(e, httpx2.TimeoutException | TimeoutError)
            why = f"no answer within {timeout:g} s" if silent else f"{type(e).__name__}: {e}"
            log.warning("the Hugging Face Hub is unreachable (%s): Hub references come from the local cache for the "
                        "next %.0f s", why, HUB_RETRY_AFTER)
            _mark_down(why)
    try:
        return snapshot_download(repo_id=repo_id, revision=revision, local_files_only=True)
    except LocalEntryNotFoundError as e:
        raise HubUnreachableError(f"the Hub is unreachable ({why}) and {repo_id} is not in the local cache") from e


def with_members(names: Collection[str], short_names: dict[str, str]) -> set[str]:
    """`names` and, for each that names a local folder holding an ensemble, its members' names, recursively.

    What a process must be able to load to serve `names` (e.g. the app's default set, whose ensembles load their
    members by short name). Hub references are not fetched: their members cannot be known offline."""
    out: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out.add(name)
        for ref in parse_refs(name, short_names=short_names):
            folder = Path(ref.location).expanduser()
            if ref.kind == "local-dir" and (folder / CONFIG_NAME).is_file():
                todo += [m["name"] for m in read_config(folder).get(UDFD_KEY, {}).get("members", [])
                         if isinstance(m, dict) and "name" in m]
    return out


def read_config(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelUnavailableError(f"cannot read {folder / CONFIG_NAME}: {e}") from e


def model_version(folder: Path, ref: ModelRef) -> str:
    """A short, stable version string: the Hub revision or the checkpoint's recorded version."""
    meta = read_config(folder).get(UDFD_KEY, {})
    if ref.kind == "hf-hub":
        return f"{ref.location}@{ref.revision or folder.name}"
    return f"{folder.name}@{meta.get('version', 'unversioned')}"


EXECUTION_SEP = "+"  # udfd.fast appends "+<mode>" to the version of a detector it runs on a faster path


def weights_version(version: str) -> str:
    """A detector version without the execution path ("udfd-effnet-lite0@1.1+onnx" -> "udfd-effnet-lite0@1.1").

    A fast path runs the same weights and is verified at load to give the same verdicts, so flags recorded by an
    app on the fast path count for the checkpoint's version, and a protector trained on either path fits both."""
    return version.split(EXECUTION_SEP, 1)[0]


def push_folder(
    folder: Path, *, repo_id: str, private: bool = True, commit_message: str = "Upload UDFD checkpoint", api: Any = None
) -> str:
    """Upload a checkpoint folder as a Hub model repo. `api` is an `HfApi` (injection point for tests)."""
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    try:
        api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                                 commit_message=commit_message)
    except Exception as e:  # network and auth errors come in many types; re-raise with context
        raise ModelUnavailableError(
            f"pushing {folder} to hf-hub:{repo_id} failed ({type(e).__name__}: {e}); the Hub needs network access"
            " and a token with write rights (HF_TOKEN or `hf auth login`)"
        ) from e
    log.info("pushed %s to %s", folder, repo_id)
    return str(getattr(info, "commit_url", info))


def _ask_hub(repo_id: str, revision: str | None, *, timeout: float) -> str | None:
    """The repo's commit from the Hub, or TimeoutError after `timeout` s: a deadline of our own, since a silent
    endpoint costs huggingface_hub more than its `timeout` (measured: 5.3 s for timeout=2)."""
    from huggingface_hub import HfApi

    answer: dict[str, Any] = {}

    def ask() -> None:
        try:
            answer["sha"] = HfApi().repo_info(repo_id, revision=revision, timeout=timeout).sha
        except Exception as e:  # handed to the caller as is
            answer["error"] = e

    worker = threading.Thread(target=ask, daemon=True, name="udfd-hub-ask")
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in answer:
        raise answer["error"]
    return answer.get("sha")
