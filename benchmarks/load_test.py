"""Load test of the Gradio app: N simultaneous image requests through gradio_client, on loopback only.

Starts `python app.py` on a free 127.0.0.1 port (the app's own queue and concurrency limits, see UDFD_CONCURRENCY /
UDFD_QUEUE_SIZE), waits until it answers, sends `--requests` image analyses all at once from `--requests` client
threads (`/analyze_image`), checks every answer is a Verdict, stops the server and writes
`benchmarks/results/load_test.json` (throughput, latency p50/p95/max, errors, server peak memory).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/load_test.py            # 50 requests, default settings

Bounded on purpose: at most 200 requests, loopback only, a deadline per request and for the whole run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
MAX_REQUESTS = 200
log = logging.getLogger("load_test")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=50, help=f"simultaneous requests (at most {MAX_REQUESTS})")
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "faces",
                   help="folder of face images (a seeded sample is sent, one image per request)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--detector", default=None, help="detector chosen in the request (default: the app's first)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per request")
    p.add_argument("--startup-timeout", type=float, default=240.0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "load_test.json")
    args = p.parse_args(argv)
    if not 1 <= args.requests <= MAX_REQUESTS:
        p.error(f"--requests must be in 1..{MAX_REQUESTS}")
    return args


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def sample_files(root: Path, n: int, seed: int) -> list[Path]:
    files = sorted(f for f in root.rglob("*") if f.suffix.lower() in (".jpg", ".jpeg", ".png") and f.is_file())
    if not files:
        raise SystemExit(f"no images under {root}")
    pick = np.random.default_rng(seed).choice(len(files), size=n, replace=len(files) < n)
    return [files[i] for i in pick]


def wait_until_up(url: str, proc: subprocess.Popen, deadline: float, server_log: Path) -> float:
    """Seconds until *our* app answers: it must have said it runs on this URL (another process on a free-port
    race would answer too) and the URL must give 200."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited with code {proc.returncode} before answering: see {server_log}")
        if url.rstrip("/") not in server_log.read_text(errors="replace"):
            time.sleep(0.5)
            continue
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the app did not answer on {url} within {deadline:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    """Terminate the launched app; kill it when it has not exited within 30 s."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def one_request(client: Any, path: Path, t_start: float, detector: str | None) -> dict[str, Any]:
    from gradio_client import handle_file

    t0 = time.perf_counter()
    try:
        out = client.predict(handle_file(str(path)), detector, api_name="/analyze_image")
        verdict = out[3]
        ok = isinstance(verdict, dict) and verdict.get("kind") == "image" and verdict.get("faces")
        error = None if ok else f"not a Verdict: {str(verdict)[:200]}"
        label = verdict["overall"]["label"] if ok else None
    except Exception as e:  # any failure of a request is a result to report, not a crash of the load test
        error, label = f"{type(e).__name__}: {e}"[:300], None
    t1 = time.perf_counter()
    return {"file": path.name, "sent_s": round(t0 - t_start, 3), "latency_s": round(t1 - t0, 3),
            "error": error, "label": label}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from gradio_client import Client

    from udfd.config import Settings  # the server's settings: the same environment is passed to it

    settings = Settings.from_env()
    files = sample_files(args.data, args.requests, args.seed)
    port = free_port()
    url = f"http://{HOST}:{port}/"
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONUNBUFFERED": "1"}  # the log must show the URL as soon as the app prints it
    log_file = args.out.with_suffix(".server.log")
    with open(log_file, "w") as server_log:
        proc = subprocess.Popen([sys.executable, "app.py", "--host", HOST, "--port", str(port)], cwd=ROOT, env=env,
                                stdout=server_log, stderr=subprocess.STDOUT)
        try:
            startup_s = wait_until_up(url, proc, args.startup_timeout, log_file)
            client = Client(url, verbose=False, analytics_enabled=False)
            client.predict(_handle(files[0]), args.detector, api_name="/analyze_image")  # one untimed request first
            load_before = os.getloadavg()
            t_start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.requests) as pool:
                futures = [pool.submit(one_request, client, f, t_start, args.detector) for f in files]
                results = [f.result(timeout=args.timeout + 60) for f in futures]
            wall = time.perf_counter() - t_start
            peak = peak_rss_mb(proc.pid)
        finally:
            stop_server(proc)
    if not any(r["error"] for r in results):
        log_file.unlink(missing_ok=True)  # kept next to the JSON when a request failed
    lat = np.array([r["latency_s"] for r in results])
    errors = [r for r in results if r["error"]]
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "benchmarks/load_test.py", *sys.argv[1:]]),
        "requests": args.requests,
        "concurrent_clients": args.requests,
        "server": {"concurrency": settings.concurrency, "queue_size": settings.queue_size,
                   "detectors": list(settings.detectors), "requested_detector": args.detector or settings.detectors[0],
                   "fast": settings.fast, "threads": settings.threads or "all",
                   "omp_wait_policy": env.get("OMP_WAIT_POLICY", "PASSIVE (app default)"),
                   "startup_s": round(startup_s, 1), "peak_rss_mb": peak},
        "errors": len(errors),
        "error_messages": sorted({e["error"] for e in errors})[:10],
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(results) / wall, 2),
        "latency_s": {"p50": round(float(np.percentile(lat, 50)), 3), "p95": round(float(np.percentile(lat, 95)), 3),
                      "max": round(float(lat.max()), 3), "mean": round(float(lat.mean()), 3)},
        "labels": {k: sum(r["label"] == k for r in results) for k in ("real", "fake")},
        "environment": {"cpu_count": os.cpu_count(), "load_avg_before": [round(x, 2) for x in load_before],
                        "load_avg_after": [round(x, 2) for x in os.getloadavg()]},
        "per_request": results,
    }


def _handle(path: Path) -> Any:
    from gradio_client import handle_file

    return handle_file(str(path))


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per HTTP request otherwise
    args = parse_args(argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    lat = result["latency_s"]
    log.info("%d requests, %d errors, %.2f req/s, p50 %.2f s, p95 %.2f s -> %s", result["requests"], result["errors"],
             result["throughput_rps"], lat["p50"], lat["p95"], args.out)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
