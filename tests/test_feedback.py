"""The feedback store: concurrent writers, a killed writer, torn lines, imagefolder loading, Hub push offline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest

from udfd.config import FeedbackSettings
from udfd.feedback.store import (
    METADATA_NAME,
    FeedbackStore,
    feedback_stats,
    new_record,
    open_store,
    read_records,
    record_to_row,
    row_to_record,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

# A writer process: `n` records from 4 threads, every 25th with consent and an image; prints "ack <i>" after
# each append returns when `ack` is set (the SIGKILL test reads those).
WRITER = r"""
import sys, threading
import numpy as np
from udfd.feedback.store import FeedbackStore, new_record
root, tag, n, ack = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "ack"
store = FeedbackStore(root)
img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
def rec(i):
    return new_record(media_sha256=f"{tag}-{i:06d}", model="vit", revision="v1", scores={"vit": 0.7},
                      predicted_label="fake", user_label="real" if i % 3 else "fake", consent=i % 25 == 0)
def work(start, step):
    for i in range(start, n, step):
        store.append(rec(i), image=img)
if ack:
    for i in range(n):
        store.append(rec(i), image=img)
        print(f"ack {i}", flush=True)
else:
    threads = [threading.Thread(target=work, args=(k, 4)) for k in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
"""


def _writer(root: Path, tag: str, n: int, *, ack: bool = False) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(root), tag, str(n), "ack" if ack else "-"],
                            env=env, stdout=subprocess.PIPE, text=True)


def _record(i: int = 0, *, consent: bool = False, scores: dict | None = None, decision: str = "unscreened"):
    return new_record(media_sha256=f"{i:064x}", model="vit", revision="1.0", scores=scores or {"vit": 0.25},
                      predicted_label="real", user_label="fake", consent=consent, protector_decision=decision,
                      protector_score=None if decision == "unscreened" else 0.8, reason="test")


def test_row_round_trip_keeps_every_field() -> None:
    rec = _record(3, consent=True, scores={"vit": 0.1, "cnn": 0.9}, decision="accepted")
    back = row_to_record(json.loads(json.dumps(record_to_row(rec, file_name="images/x.png"))), shard="s1")
    assert back == rec.__class__(**{**rec.__dict__, "image_file": "s1/images/x.png"})
    unscreened = row_to_record(record_to_row(_record(4), file_name="no_image.png"), shard="s1")
    assert unscreened.protector_score is None and unscreened.image_file is None


def test_eight_processes_times_500_records(tmp_path: Path) -> None:
    procs = [_writer(tmp_path, f"p{k}", 500) for k in range(8)]
    for p in procs:
        assert p.wait(timeout=300) == 0
    contents = read_records(tmp_path)
    assert contents.shards == 8 and contents.torn_lines == 0 and contents.bad_lines == 0
    assert len(contents.records) == 4000
    assert len({r.id for r in contents.records}) == 4000
    assert len({r.media_sha256 for r in contents.records}) == 4000  # every (process, index) exactly once
    with_images = [r for r in contents.records if r.image_file]
    assert len(with_images) == 8 * 20 and all(r.consent for r in with_images)
    assert all((tmp_path / r.image_file).is_file() for r in with_images)
    assert not list(tmp_path.rglob("*.tmp"))


def test_sigkill_mid_stream_loses_at_most_the_record_in_flight(tmp_path: Path) -> None:
    proc = _writer(tmp_path, "k", 1_000_000, ack=True)
    acked = -1
    for line in proc.stdout:
        acked = int(line.split()[1])
        if acked >= 300:
            break
    os.kill(proc.pid, signal.SIGKILL)
    rest = proc.stdout.read()  # acknowledgements already in the pipe
    proc.wait()
    acked = max([acked] + [int(s.split()[1]) for s in rest.splitlines() if s.startswith("ack")])
    indices = sorted(int(r.media_sha256.split("-")[1]) for r in read_records(tmp_path).records)
    assert indices == list(range(len(indices))), "no gap, no duplicate"
    assert acked + 1 <= len(indices) <= acked + 2, "every acknowledged record is there, plus at most the one in flight"
    for r in read_records(tmp_path).records:
        if r.image_file:
            from PIL import Image

            assert Image.open(tmp_path / r.image_file).size == (16, 16)


def test_torn_last_line_is_skipped_and_earlier_records_kept(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path)
    ids = [store.append(_record(i)).id for i in range(5)]
    store.close()
    meta = tmp_path / store.shard / METADATA_NAME
    with open(meta, "ab") as f:
        f.write(b'{"file_name": "no_image.png", "id": "half-writ')
    contents = read_records(tmp_path)
    assert [r.id for r in contents.records] == ids
    assert contents.torn_lines == 1 and contents.bad_lines == 0


def test_consent_decides_whether_the_image_is_kept(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path)
    pixels = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    kept = store.append(_record(1, consent=True), image=pixels)
    dropped = store.append(_record(2, consent=False), image=pixels)
    assert dropped.image_file is None
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(tmp_path / kept.image_file)), pixels)  # lossless PNG
    assert len(list((tmp_path / store.shard / "images").iterdir())) == 1


def test_load_dataset_imagefolder_reads_the_store(tmp_path: Path) -> None:
    import datasets

    root = tmp_path / "store"
    pixels = np.zeros((8, 8, 3), np.uint8)
    first = FeedbackStore(root, shard="a")  # a shard that starts without images and without protector scores
    first.append(_record(1))
    first.append(_record(2, consent=True), image=pixels)
    second = FeedbackStore(root, shard="b")
    second.append(_record(3, consent=True, scores={"vit": 0.4, "cnn": 0.2}, decision="suspicious"), image=pixels)
    ds = datasets.load_dataset("imagefolder", data_dir=str(root), split="train", cache_dir=str(tmp_path / "cache"))
    assert len(ds) == 3
    rows = sorted(ds, key=lambda r: r["media_sha256"])
    assert [r["image_stored"] for r in rows] == [False, True, True]
    assert rows[1]["image"].size == (8, 8)
    assert rows[2]["protector_decision"] == "suspicious"
    assert {s["detector"] for s in rows[2]["scores"]} == {"vit", "cnn"}


class FakeHfApi:
    """Just what CommitScheduler calls; runs 'background' jobs synchronously."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail, self.commits, self.repos = fail, [], []

    def create_repo(self, **kw):
        if self.fail:
            raise self.fail
        self.repos.append(kw)
        return type("RepoUrl", (), {"repo_id": kw["repo_id"]})()

    def run_as_future(self, fn, *args, **kwargs) -> Future:
        fut: Future = Future()
        fut.set_result(fn(*args, **kwargs))
        return fut

    def create_commit(self, **kw):
        self.commits.append(kw)
        return "commit"


def test_commit_scheduler_pushes_the_folder_offline(tmp_path: Path) -> None:
    api = FakeHfApi()
    settings = FeedbackSettings(dir=tmp_path / "fb", repo="org/udfd-feedback", every_minutes=60)
    store, scheduler, status = open_store(settings, hf_api=api)
    try:
        assert status.pushing_to == "org/udfd-feedback" and store.lock is scheduler.lock
        assert api.repos[0]["repo_type"] == "dataset" and api.repos[0]["private"] is True
        store.append(_record(1, consent=True), image=np.zeros((4, 4, 3), np.uint8))
        (store.shard_dir / "images" / ".x.png.tmp").write_bytes(b"half")  # an image being written
        scheduler.trigger().result()
        pushed = {op.path_in_repo for op in api.commits[-1]["operations"]}
        assert f"{store.shard}/{METADATA_NAME}" in pushed and f"{store.shard}/no_image.png" in pushed
        assert any(p.startswith(f"{store.shard}/images/") and p.endswith(".png") for p in pushed)
        assert not any(p.endswith(".tmp") for p in pushed)
        assert api.commits[-1]["repo_type"] == "dataset"
    finally:
        scheduler.stop()


def test_scheduler_failure_is_reported_and_storage_continues(tmp_path: Path, caplog) -> None:
    settings = FeedbackSettings(dir=tmp_path / "fb", repo="org/udfd-feedback")
    with caplog.at_level("ERROR"):
        store, scheduler, status = open_store(settings, hf_api=FakeHfApi(fail=ConnectionError("offline")))
    assert scheduler is None and status.pushing_to is None
    assert "org/udfd-feedback" in status.message and "offline" in status.message and "locally" in status.message
    assert "org/udfd-feedback" in caplog.text
    store.append(_record(1))
    assert len(read_records(tmp_path / "fb").records) == 1


def test_missing_token_is_reported(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no stored login either
    store, scheduler, status = open_store(FeedbackSettings(dir=tmp_path / "fb", repo="org/x"))
    assert scheduler is None and "token" in status.message


def test_stats_count_and_user_accuracy(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path)
    for i, (pred, user, dec) in enumerate([("fake", "fake", "accepted"), ("fake", "real", "accepted"),
                                           ("real", "real", "suspicious"), ("real", "real", "accepted")]):
        store.append(new_record(media_sha256=str(i), model="vit", revision="1.0", scores={"vit": 0.5},
                                predicted_label=pred, user_label=user, consent=False, protector_decision=dec,
                                protector_score=0.5, reason=""))
    stats = feedback_stats(read_records(tmp_path).records)
    assert stats["n"] == 4 and stats["by_decision"] == {"accepted": 3, "suspicious": 1}
    assert stats["user_accuracy"] == pytest.approx(3 / 4)
    assert stats["user_accuracy_accepted"] == pytest.approx(2 / 3)
    assert stats["by_model_version"] == {"vit@1.0": 4}


def test_cli_stats_and_export(tmp_path: Path, capsys, monkeypatch) -> None:
    from training.data import list_samples
    from udfd.cli.main import main

    root = tmp_path / "fb"
    store = FeedbackStore(root)
    pixels = np.zeros((8, 8, 3), np.uint8)
    store.append(_record(1, consent=True, decision="accepted"), image=pixels)  # user says fake
    store.append(_record(2, consent=True, decision="suspicious"), image=pixels)
    store.append(_record(3, consent=False, decision="accepted"))
    monkeypatch.setenv("UDFD_FEEDBACK_DIR", str(root))
    assert main(["feedback", "stats"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["n"] == 3 and stats["by_decision"] == {"accepted": 2, "suspicious": 1} and stats["with_image"] == 2

    assert main(["feedback", "export", str(tmp_path / "out")]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["records"] == 2 and counts["fake"] == 1 and counts["real"] == 0  # accepted only, with image
    samples = list_samples(tmp_path / "out")  # the layout the training scripts read
    assert [(s.label, s.source) for s in samples] == [(1, "feedback")]
    assert len((tmp_path / "out" / "records.jsonl").read_text().splitlines()) == 2

    assert main(["feedback", "export", str(tmp_path / "all"), "--all", "--dir", str(root)]) == 0
    assert json.loads(capsys.readouterr().out)["fake"] == 2


def test_rate_limiter_refills_per_client() -> None:
    from udfd.feedback.ratelimit import RateLimiter

    now = [0.0]
    limiter = RateLimiter(6, clock=lambda: now[0])  # 6 per minute: one token every 10 s, bursts of 6
    assert [limiter.allow("a") for _ in range(7)] == [True] * 6 + [False]
    assert limiter.allow("b")  # another client has its own bucket
    assert limiter.retry_after("a") == pytest.approx(10.0)
    now[0] = 9.0
    assert not limiter.allow("a")
    now[0] = 10.5
    assert limiter.allow("a") and not limiter.allow("a")
    now[0] = 1000.0
    assert sum(limiter.allow("a") for _ in range(10)) == 6  # refills up to the burst, no further


def test_store_keeps_one_record_per_id(tmp_path) -> None:
    from udfd.feedback.store import FeedbackStore, new_record, read_records

    kw = dict(media_sha256="0" * 64, model="vit", revision="v1", scores={"vit": 0.7}, predicted_label="fake",
              user_label="real", consent=False)
    store = FeedbackStore(tmp_path)
    first = store.append(new_record(**kw, id="retry-1234"))
    assert store.append(new_record(**kw, id="retry-1234")) == first
    assert store.contains("retry-1234") and not store.contains("other-1234")
    store.close()
    later = FeedbackStore(tmp_path)  # another process (a restart): the id is still known
    assert later.append(new_record(**kw, id="retry-1234")).time == first.time
    later.append(new_record(**kw))
    later.close()
    assert [r.id for r in read_records(tmp_path).records].count("retry-1234") == 1
    assert len(read_records(tmp_path).records) == 2
