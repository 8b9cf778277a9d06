"""Cold start of the app: `python app.py` until the first request is served, with and without a warm ONNX cache.

Each run launches the app on a free 127.0.0.1 port with its own UDFD_CACHE_DIR and, from the moment of launch,
keeps trying one `/gradio_api/call/analyze_image` on an example image until a Verdict comes back ("first answer":
what a first visitor waits after a restart). Then it sends the same request twice more: when the first answer
took no longer than the next ones, the first visitor paid for no lazy initialisation. "cold" runs start from an
empty cache folder (every fast path exported), "warm" ones reuse the folder of the cold run before them. Runs
alternate cold, warm, cold, warm, ... so that background load hits both alike; the machine's load is recorded.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/cold_start.py --out benchmarks/results/cold_start.json

`--hub-down` measures the Space's detector config (space/detectors.json: Hub first, the embedded folder as the
fallback) with the Hub unreachable, against the same config with its Hub references removed ("embedded"): the Hub
offline (HF_HUB_OFFLINE=1), refusing connections, and silent (a local endpoint that accepts connections and never
answers: HF_ENDPOINT, with HF_HUB_OFFLINE=0; nothing leaves 127.0.0.1). Every run reuses one ONNX cache, exported by
a first run that is not counted; scenarios take turns, round after round. Each run also reads the app's top notice
(what a visitor sees about the fallback) from /config.

    .venv/bin/python benchmarks/cold_start.py --hub-down --out benchmarks/results/cold_start_hub_down.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import HOST, ROOT, free_port, stop_server  # noqa: E402
from memory_requests import _call, _upload  # noqa: E402

log = logging.getLogger("cold_start")
EXAMPLE = ROOT / "examples" / "real_fairface_0098.jpg"
SPACE_MODELS = ROOT / "space" / "detectors.json"


def _try_analyze(url: str, data: bytes, detector: str) -> tuple[bool, float]:
    t0 = time.perf_counter()
    try:
        path = _upload(url, EXAMPLE.name, data)
        event, out = _call(url, "analyze_image", [{"path": path, "meta": {"_type": "gradio.FileData"}}, detector,
                                                  False, "auto"], timeout=300)
        ok = event == "complete" and isinstance(out, list) and isinstance(out[3], dict) and "overall" in out[3]
    except (OSError, ValueError):
        ok = False
    return ok, time.perf_counter() - t0


def one_run(kind: str, cache_dir: Path, *, detector: str, timeout: float, env_extra: dict[str, str] | None = None
            ) -> dict[str, Any]:
    port = free_port()
    url = f"http://{HOST}:{port}/"
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONUNBUFFERED": "1", "UDFD_CACHE_DIR": str(cache_dir), **(env_extra or {})}
    data = EXAMPLE.read_bytes()
    log_file = cache_dir.parent / f"{cache_dir.name}-{kind}-{port}.log"
    load_before = os.getloadavg()
    with open(log_file, "w") as server_log:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "app.py", "--host", HOST, "--port", str(port)], cwd=ROOT, env=env,
                                stdout=server_log, stderr=subprocess.STDOUT)
        try:
            first = None
            while time.perf_counter() - t0 < timeout:
                if proc.poll() is not None:
                    raise SystemExit(f"the app exited with code {proc.returncode}: see {log_file}")
                ok, seconds = _try_analyze(url, data, detector)
                if ok:
                    first = (time.perf_counter() - t0, seconds)
                    break
                time.sleep(0.25)
            if first is None:
                raise SystemExit(f"no answer within {timeout:.0f} s: see {log_file}")
            after = [_try_analyze(url, data, detector)[1] for _ in range(2)]
            notice = _notice(url)
        finally:
            stop_server(proc)
    text = log_file.read_text(errors="replace")
    return {"kind": kind, "first_answer_s": round(first[0], 2), "first_request_s": round(first[1], 3),
            "next_requests_s": [round(x, 3) for x in after],
            "onnx_exported": text.count("ONNX graph exported and cached"),
            "onnx_from_cache": text.count("ONNX graph from cache"),
            "hub_unreachable_logged": text.count("the Hugging Face Hub is unreachable"),
            "fallbacks_logged": text.count("after 1 failed reference(s)"),
            "notice": notice,
            "load_avg_before": [round(x, 2) for x in load_before]}


def _notice(url: str) -> str:
    """The app's top notice about detectors served from their embedded copy ("" when hidden)."""
    with urllib.request.urlopen(f"{url}config", timeout=60) as r:
        config = json.load(r)
    props = [c.get("props", {}) for c in config.get("components", [])]
    hits = [p for p in props if p.get("elem_id") == "fallback-notice"]
    return str(hits[0].get("value", "")) if hits and hits[0].get("visible") else ""


class SilentHub:
    """A local endpoint that accepts connections and never answers (a Hub behind a black hole)."""

    def __init__(self) -> None:
        self.server = socket.create_server((HOST, 0))
        self.held: list[socket.socket] = []  # kept open: closing them would answer with a reset
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.server.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.server.close()
        for conn in self.held:
            conn.close()


def hub_down_scenarios(tmp: Path, silent: SilentHub) -> dict[str, dict[str, str]]:
    """Scenario name -> environment: the Space's config, with and without a reachable Hub."""
    from udfd.config import read_models_file

    spec = read_models_file(SPACE_MODELS)
    local = {k: " | ".join(r for r in v.split(" | ") if not r.startswith("hf-hub:")) for k, v in spec["models"].items()}
    embedded = tmp / "detectors-embedded.json"
    # A Hub-only detector (vit, clip) becomes a missing folder: unavailable here too, the same detectors load.
    local = {k: v or f"local-dir:{tmp / f'no-{k}'}" for k, v in local.items()}
    embedded.write_text(json.dumps({**spec, "models": local}), encoding="utf-8")
    closed = socket.create_server((HOST, 0))
    refused = f"http://{HOST}:{closed.getsockname()[1]}"
    closed.close()  # nothing listens there any more: connection refused
    space = str(SPACE_MODELS)
    return {
        "embedded": {"UDFD_MODELS_FILE": str(embedded), "HF_HUB_OFFLINE": "1"},
        "hub_offline": {"UDFD_MODELS_FILE": space, "HF_HUB_OFFLINE": "1"},
        "hub_refused": {"UDFD_MODELS_FILE": space, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": refused},
        "hub_silent": {"UDFD_MODELS_FILE": space, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": silent.url},
    }


def run_hub_down(args: argparse.Namespace) -> dict[str, Any]:
    from udfd.config import Settings

    silent = SilentHub()
    runs: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="udfd-cold-hub-") as tmp:
            scenarios = hub_down_scenarios(Path(tmp), silent)
            cache = Path(tmp) / "cache"  # one ONNX cache for all: the first run exports, the rest reuse
            detector = Settings.from_env({"UDFD_MODELS_FILE": str(SPACE_MODELS)}).detectors[0]
            prime = one_run("prime", cache, detector=detector, timeout=args.timeout, env_extra=scenarios["embedded"])
            log.info("priming run (not counted): %s", prime)
            for _ in range(args.pairs):
                for name, env in scenarios.items():
                    runs.append({"scenario": name, **one_run(name, cache, detector=detector, timeout=args.timeout,
                                                             env_extra=env)})
                    log.info("%s", runs[-1])
    finally:
        silent.close()
    by = {k: [r for r in runs if r["scenario"] == k] for k in dict.fromkeys(r["scenario"] for r in runs)}
    return {
        "what": "seconds from launching `python app.py` to the first Verdict of /gradio_api/call/analyze_image on "
                f"examples/{EXAMPLE.name} (upload included), with UDFD_MODELS_FILE=space/detectors.json and the Hub "
                "unreachable, against the same file without its Hub references (embedded); warm ONNX cache",
        "scenarios": {"embedded": "space/detectors.json without its hf-hub: references, HF_HUB_OFFLINE=1",
                      "hub_offline": "space/detectors.json, HF_HUB_OFFLINE=1",
                      "hub_refused": "space/detectors.json, HF_ENDPOINT=a closed 127.0.0.1 port (connection refused)",
                      "hub_silent": "space/detectors.json, HF_ENDPOINT=a 127.0.0.1 port that accepts and never "
                                    "answers; UDFD_HUB_TIMEOUT default (5 s)"},
        "detector": detector,
        "first_answer_s_median": {k: round(statistics.median(r["first_answer_s"] for r in v), 2)
                                  for k, v in by.items()},
        "notice_shown": {k: all(r["notice"] for r in v) for k, v in by.items()},
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=2, help="cold + warm runs")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--hub-down", action="store_true",
                   help="the Space's config with the Hub offline, refusing and silent, against its embedded copies")
    p.add_argument("--out", type=Path, default=None,
                   help="default: benchmarks/results/cold_start.json (cold_start_hub_down.json with --hub-down)")
    args = p.parse_args(argv)
    from udfd.config import Settings

    if args.hub_down:
        out = args.out or ROOT / "benchmarks" / "results" / "cold_start_hub_down.json"
        result = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                  "command": shlex.join(["python", "benchmarks/cold_start.py", *(sys.argv[1:] if argv is None
                                                                                   else argv)]),
                  **run_hub_down(args),
                  "environment": {"cpu_count": os.cpu_count(), "load_avg_after": [round(x, 2) for x in os.getloadavg()],
                                  "note": "shared 2-core host (training and other work in the background): noisy"}}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        log.info("%s", json.dumps({k: result[k] for k in ("first_answer_s_median", "notice_shown")}))
        return 0
    args.out = args.out or ROOT / "benchmarks" / "results" / "cold_start.json"

    settings = Settings.from_env()
    runs = []
    with tempfile.TemporaryDirectory(prefix="udfd-cold-") as tmp:
        for i in range(args.pairs):
            cache = Path(tmp) / f"cache{i}"  # empty: the cold run exports, the warm run after it reuses
            for kind in ("cold", "warm"):
                runs.append(one_run(kind, cache, detector=settings.detectors[0], timeout=args.timeout))
                log.info("%s", runs[-1])
    by_kind = {k: [r for r in runs if r["kind"] == k] for k in ("cold", "warm")}
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "benchmarks/cold_start.py", *(sys.argv[1:] if argv is None else argv)]),
        "what": "seconds from launching `python app.py` to the first Verdict of /gradio_api/call/analyze_image on "
                f"examples/{EXAMPLE.name} (upload included)",
        "detectors": list(settings.detectors), "video_detectors": list(settings.video_detectors),
        "models_loaded_at_start": sorted(settings.models), "fast": settings.fast,
        "first_answer_s_median": {k: round(statistics.median(r["first_answer_s"] for r in v), 2)
                                  for k, v in by_kind.items()},
        "first_visitor_pays_extra_s": round(max(r["first_request_s"] - min(r["next_requests_s"]) for r in runs), 3),
        "runs": runs,
        "environment": {"cpu_count": os.cpu_count(), "load_avg_after": [round(x, 2) for x in os.getloadavg()],
                        "note": "shared 2-core host (training and other work in the background): noisy"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    log.info("%s", json.dumps({k: result[k] for k in ("first_answer_s_median", "first_visitor_pays_extra_s")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
