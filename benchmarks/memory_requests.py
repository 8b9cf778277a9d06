"""Server memory under a mixed load: RSS of the launched app at rest, warm, at peak and after N mixed requests.

Starts `python app.py` (the default detector set, the app's own limits) on a free 127.0.0.1 port and drives it over
raw HTTP as a browser would (`/gradio_api/upload`, then `/gradio_api/call/<api>` and its event stream):

- at rest: once the app answers, before any request;
- warm: after one request of every kind (each code path has allocated what it keeps: graphs, arenas, caches);
- then `--requests` requests from `--clients` threads, in a seeded random order: dev face images, large images
  (2400x1800 JPEG, 7000x7000 PNG), a few dev videos, bad files (truncated, not an image, empty, 60x32767);
- peak: the highest RSS sampled every 50 ms (and the kernel's VmHWM), after: right after the last answer and after
  `--idle` seconds without requests. The app's memory is "bounded" when after-idle RSS is within 10 % of warm.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/memory_requests.py --out benchmarks/results/memory_requests.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import logging
import os
import random
import shlex
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import HOST, ROOT, free_port, peak_rss_mb, sample_files, stop_server, wait_until_up  # noqa: E402

log = logging.getLogger("memory_requests")
DATA = ROOT.parent / "shared" / "data"
VIDEOS = ("real/ffpp_youtube/004.mp4", "fake/ffpp_neuraltextures/004_982.mp4", "real/ffpp_youtube/519.mp4",
          "fake/dfdc/abofeumbvv.mp4")
MIB = 1024 * 1024


def _png(width: int, height: int, fmt: str = "PNG") -> bytes:
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([(x // 7) % 256, (y // 5) % 256, ((x + y) // 11) % 256], axis=2).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _large_face(face: bytes, width: int, height: int) -> bytes:
    """A dev face pasted large on a plain canvas (a photo-sized JPEG with a face in it)."""
    from PIL import Image

    im = Image.open(io.BytesIO(face)).convert("RGB")
    canvas = Image.new("RGB", (width, height), (120, 120, 120))
    side = height // 2
    canvas.paste(im.resize((side, side)), (width // 3, height // 4))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def payloads(n: int, seed: int) -> dict[str, list[tuple[str, bytes]]]:
    """Per kind, the (name, bytes) files to send."""
    faces = [(p.name, p.read_bytes()) for p in sample_files(DATA / "faces", 40, seed)]
    video = [(Path(v).name, (DATA / "videos" / v).read_bytes()) for v in VIDEOS]
    return {
        "face": faces,
        "large_jpeg": [("large.jpg", _large_face(faces[0][1], 2400, 1800))],
        "png_7000": [("big7000.png", _png(7000, 7000))],
        "video": video,
        "bad": [("truncated.jpg", faces[1][1][: len(faces[1][1]) // 3]), ("text.png", b"not an image at all"),
                ("empty.jpg", b""), ("tall.png", _png(60, 32767)), ("cut.mp4", video[0][1][:50_000])],
    }


# Share of each kind in the mixed requests (the rest are dev faces).
MIX = {"large_jpeg": 0.04, "png_7000": 0.02, "video": 0.01, "bad": 0.08}


def plan(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    kinds = [k for k, share in MIX.items() for _ in range(max(1, round(share * n)))]
    kinds += ["face"] * (n - len(kinds))
    rng.shuffle(kinds)
    return kinds


def _upload(url: str, name: str, data: bytes) -> str:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{url}gradio_api/upload", data=body,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)[0]


def _call(url: str, api: str, data: list, timeout: float) -> tuple[str, Any]:
    req = urllib.request.Request(f"{url}gradio_api/call/{api}", data=json.dumps({"data": data}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        event_id = json.load(r)["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/{api}/{event_id}", timeout=timeout) as r:
        stream = r.read().decode()
    event, payload = [line for line in stream.splitlines() if line.startswith(("event:", "data:"))][-2:]
    return event.removeprefix("event:").strip(), json.loads(payload.removeprefix("data:"))


def one_request(url: str, kind: str, name: str, data: bytes, *, detector: str, video_detector: str,
                timeout: float) -> dict[str, Any]:
    """One upload + analysis. "ok": a Verdict came back; "refused": the app answered with an error (bad files)."""
    t0 = time.perf_counter()
    try:
        path = _upload(url, name, data)
        file = {"path": path, "meta": {"_type": "gradio.FileData"}}
        is_video = name.endswith(".mp4")
        if is_video:
            event, out = _call(url, "analyze_video", [file, video_detector, []], timeout)
        else:
            event, out = _call(url, "analyze_image", [file, detector, False, "auto"], timeout)
        verdict = out[5 if is_video else 3] if event == "complete" and isinstance(out, list) else None
        outcome = "ok" if isinstance(verdict, dict) and verdict.get("overall") else "refused"
        detail = None if outcome == "ok" else str(out)[:200]
    except (OSError, ValueError) as e:  # a failed request is a result to report, not a crash of the benchmark
        outcome, detail = "failed", f"{type(e).__name__}: {e}"[:200]
    return {"kind": kind, "file": name, "outcome": outcome, "detail": detail,
            "latency_s": round(time.perf_counter() - t0, 3)}


class Sampler:
    """RSS of one process every `period` seconds, in a thread: the highest value since `reset`."""

    def __init__(self, pid: int, period: float = 0.05) -> None:
        import psutil

        self.proc = psutil.Process(pid)
        self.period = period
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rss(self) -> int:
        return self.proc.memory_info().rss

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.rss())
            except OSError:
                return
            time.sleep(self.period)

    def reset(self) -> None:
        self.peak = self.rss()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from udfd.config import Settings
    from udfd.hub import with_members

    settings = Settings.from_env()
    files = payloads(args.requests, args.seed)
    kinds = plan(args.requests, args.seed)
    rng = random.Random(args.seed + 1)
    port = free_port()
    url = f"http://{HOST}:{port}/"
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONUNBUFFERED": "1"}
    default_set = with_members({*settings.detectors, *settings.video_detectors}, settings.models)  # + ensemble members
    if args.default_set_only:  # every other configured model points nowhere: the app lists it as unavailable
        env |= {f"UDFD_MODEL_{name.upper()}": "local-dir:/nonexistent" for name in settings.models
                if name not in default_set}
    log_file = args.out.with_suffix(".server.log")
    mem: dict[str, float] = {}
    call = {"detector": settings.detectors[0], "video_detector": settings.video_detectors[0],
            "timeout": args.timeout}
    with open(log_file, "w") as server_log:
        t_launch = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "app.py", "--host", HOST, "--port", str(port)], cwd=ROOT, env=env,
                                stdout=server_log, stderr=subprocess.STDOUT)
        try:
            startup_s = wait_until_up(url, proc, args.startup_timeout, log_file)
            sampler = Sampler(proc.pid)
            time.sleep(3)
            mem["at_rest_mib"] = sampler.rss() / MIB
            mem["peak_during_startup_mib"] = (peak_rss_mb(proc.pid) or 0.0)
            warm = [one_request(url, k, *files[k][0], **call) for k in ("face", "large_jpeg", "png_7000", "video")]
            warm += [one_request(url, "bad", n, d, **call) for n, d in files["bad"]]
            warm += [one_request(url, "face", n, d, **call) for n, d in files["face"][:10]]
            time.sleep(2)
            mem["warm_mib"] = sampler.rss() / MIB
            sampler.reset()
            load_before = os.getloadavg()
            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.clients) as pool:
                futures = [pool.submit(one_request, url, k, *rng.choice(files[k]), **call) for k in kinds]
                results = [f.result() for f in futures]
            wall = time.perf_counter() - t0
            mem["peak_during_requests_mib"] = sampler.peak / MIB
            mem["after_requests_mib"] = sampler.rss() / MIB
            time.sleep(args.idle)
            mem["after_idle_mib"] = sampler.rss() / MIB
            mem["vmhwm_mib"] = peak_rss_mb(proc.pid) or 0.0
            sampler.stop()
        finally:
            stop_server(proc)
    total_s = time.perf_counter() - t_launch
    outcomes = Counter((r["kind"], r["outcome"]) for r in results)
    unexpected = [r for r in results if (r["outcome"] != "ok") != (r["kind"] == "bad") and r["file"] != "cut.mp4"]
    if not unexpected:
        log_file.unlink(missing_ok=True)
    mem = {k: round(v, 1) for k, v in mem.items()}
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "benchmarks/memory_requests.py", *sys.argv[1:]]),
        "server": {"detectors": list(settings.detectors), "video_detectors": list(settings.video_detectors),
                   "models_loaded": sorted(default_set) if args.default_set_only else sorted(settings.models),
                   "fast": settings.fast, "concurrency": settings.concurrency,
                   "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX", "(app default)"),
                   "startup_s": round(startup_s, 1)},
        "requests": len(results),
        "clients": args.clients,
        "mix": dict(Counter(kinds)),
        "outcomes": {f"{k}:{o}": n for (k, o), n in sorted(outcomes.items())},
        "unexpected": unexpected[:10],
        "wall_s": round(wall, 1),
        "rss": mem,
        "after_idle_vs_warm": round(mem["after_idle_mib"] / mem["warm_mib"] - 1, 4),
        "within_10_percent_of_warm": mem["after_idle_mib"] <= 1.1 * mem["warm_mib"],
        "warm_requests": [{k: r[k] for k in ("kind", "file", "outcome", "latency_s")} for r in warm],
        "latency_s_by_kind": {k: round(float(np.median([r["latency_s"] for r in results if r["kind"] == k])), 3)
                              for k in sorted(set(kinds))},
        "environment": {"cpu_count": os.cpu_count(), "load_avg_before": [round(x, 2) for x in load_before],
                        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
                        "note": "shared 2-core host: latencies are noisy, memory figures much less so"},
        "total_s": round(total_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--idle", type=float, default=10.0)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--startup-timeout", type=float, default=300.0)
    p.add_argument("--default-set-only", action="store_true",
                   help="load only the default image and video detectors (the others are made unavailable)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "memory_requests.json")
    args = p.parse_args(argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    log.info("%s", json.dumps({k: result[k] for k in ("rss", "after_idle_vs_warm", "outcomes", "wall_s")}))
    return 0 if not result["unexpected"] else 1


if __name__ == "__main__":
    sys.exit(main())
