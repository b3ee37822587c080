"""The disk spool: order, acknowledgement, bounded drop-oldest with a count, and kill -9 survival."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.sync.spool import Spool

REPO = Path(__file__).resolve().parents[2]


def test_batches_come_back_in_append_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=1 << 20)
    ids = [spool.append("anc/t/telemetry", f"m{i}".encode()) for i in range(20)]
    assert ids == sorted(ids)
    got = spool.batch(after_id=0, limit=100)
    assert [m.payload for m in got] == [f"m{i}".encode() for i in range(20)]
    assert [m.payload for m in spool.batch(after_id=ids[9], limit=3)] == [b"m10", b"m11", b"m12"]


def test_only_acknowledged_messages_are_deleted(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=1 << 20)
    ids = [spool.append("t", bytes([i])) for i in range(5)]
    assert spool.ack(ids[1]) and spool.ack(ids[3])
    assert not spool.ack(ids[3])
    assert [m.id for m in spool.batch(0, 10)] == [ids[0], ids[2], ids[4]]
    assert spool.pending == 3


def test_bound_drops_oldest_first_and_counts_the_drops(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=100)  # each message: 1 topic byte + 9 payload = 10
    for i in range(25):
        spool.append("t", f"{i:09d}".encode())
    kept = [int(m.payload) for m in spool.batch(0, 100)]
    assert kept == list(range(15, 25))
    assert spool.dropped_total == 15
    assert spool.size_bytes == 100
    reopened = Spool(tmp_path / "s.sqlite", max_bytes=100)
    assert reopened.dropped_total == 15
    assert reopened.size_bytes == 100


def test_message_larger_than_the_bound_is_refused_and_nothing_is_lost(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=50)
    spool.append("t", b"keep")
    with pytest.raises(ValueError, match="exceeds the spool bound"):
        spool.append("t", b"x" * 60)
    assert [m.payload for m in spool.batch(0, 10)] == [b"keep"]


def test_counter_is_stored_with_the_message(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=1 << 20)
    spool.append("t", b"a", counter=("seq:telemetry", 41))
    spool.append("t", b"b", counter=("seq:telemetry", 42))
    spool.close()
    assert Spool(tmp_path / "s.sqlite", max_bytes=1 << 20).counter("seq:telemetry") == 42


def test_ids_keep_increasing_after_the_spool_empties_and_reopens(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite", max_bytes=1 << 20)
    first = spool.append("t", b"a")
    spool.ack(first)
    spool.close()
    assert Spool(tmp_path / "s.sqlite", max_bytes=1 << 20).append("t", b"b") > first


def test_unreadable_spool_is_moved_aside_and_a_fresh_one_starts(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    spool = Spool(path, max_bytes=1000)
    assert spool.pending == 0
    spool.append("t", b"new")
    assert any(p.name.startswith("s.sqlite.corrupt-") for p in tmp_path.iterdir())


def test_unacknowledged_messages_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    writer = textwrap.dedent(
        f"""
        import sys, time
        from agent.sync.spool import Spool
        spool = Spool({str(path)!r}, max_bytes=1 << 20)
        ids = [spool.append("anc/t/telemetry", b"m%d" % i, counter=("seq", i)) for i in range(200)]
        for i in ids[:50]:
            spool.ack(i)
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", writer],
        cwd=REPO,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    spool = Spool(path, max_bytes=1 << 20)
    assert [m.payload for m in spool.batch(0, 1000)] == [b"m%d" % i for i in range(50, 200)]
    assert spool.counter("seq") == 199
    assert spool.pending == 150
