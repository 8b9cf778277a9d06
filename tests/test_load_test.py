"""benchmarks/load_test.py end to end on a tiny model: app started on a free loopback port, simultaneous requests."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "load_test.py"


def _module():
    spec = importlib.util.spec_from_file_location("load_test", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_request_count_is_bounded():
    mod = _module()
    with pytest.raises(SystemExit):
        mod.parse_args(["--requests", str(mod.MAX_REQUESTS + 1)])
    assert mod.parse_args([]).requests == 50


@pytest.mark.slow
def test_load_test_serves_every_request(tmp_path, monkeypatch, tiny_vit_dir, shared_faces):
    monkeypatch.setenv("UDFD_MODEL_VIT", f"local-dir:{tiny_vit_dir}")
    monkeypatch.setenv("UDFD_DETECTORS", "vit")
    monkeypatch.setenv("UDFD_CONCURRENCY", "2")
    out = tmp_path / "load.json"
    rc = _module().main(["--requests", "6", "--out", str(out), "--data", str(shared_faces / "real" / "lfw")])
    r = json.loads(out.read_text())
    assert r["errors"] == 0 and rc == 0, r["error_messages"]
    assert len(r["per_request"]) == 6
    assert r["server"]["concurrency"] == 2 and r["server"]["peak_rss_mb"] > 0
    assert all(p["label"] in ("real", "fake") for p in r["per_request"])
    assert r["latency_s"]["p50"] <= r["latency_s"]["p95"] <= r["latency_s"]["max"]
    assert r["throughput_rps"] > 0
