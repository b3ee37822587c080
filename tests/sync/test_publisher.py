"""The publisher over an in-process transport: sequence numbers, drop counts, order, resend, audio guard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from agent.sync.config import parse_cloud_config
from agent.sync.loop import SyncLoop
from agent.sync.publisher import Publisher, audio_free
from agent.sync.spool import Spool
from cloud.local.shadow_store import ShadowStore
from tests.sync.loopback import LoopbackTransport
from tests.sync.waiting import wait_until


def _rig(
    loop: SyncLoop, tmp_path: Path, max_bytes: int = 1 << 20
) -> tuple[LoopbackTransport, Spool, Publisher]:
    section = {
        "thing_name": "pub-1",
        "endpoint": "localhost",
        "ca_file": "ca",
        "cert_file": "c",
        "key_file": "k",
    }
    config = parse_cloud_config(section, tmp_path, check_files=False)
    transport = LoopbackTransport(loop, ShadowStore(":memory:"))
    spool = Spool(tmp_path / "spool.sqlite", max_bytes)
    publisher = loop.call_sync(lambda: Publisher(loop, transport, spool, config))
    assert isinstance(publisher, Publisher)
    return transport, spool, publisher


def _telemetry(transport: LoopbackTransport) -> list[dict]:
    return [json.loads(p) for t, p in transport.published if t == "anc/pub-1/telemetry"]


def test_offline_telemetry_is_sent_in_order_with_sequence_numbers_once_connected(
    loop: SyncLoop, tmp_path: Path
) -> None:
    transport, spool, publisher = _rig(loop, tmp_path)
    for i in range(25):
        publisher.telemetry({"attenuation_db": i})
    publisher.event({"type": "divergence"})
    assert wait_until(lambda: loop.call_sync(lambda: spool.pending) == 26)
    assert transport.published == []
    loop.call_sync(transport.connect)
    assert wait_until(lambda: loop.call_sync(lambda: spool.pending) == 0)
    docs = _telemetry(transport)
    assert [d["seq"] for d in docs] == list(range(1, 26))
    assert [d["attenuation_db"] for d in docs] == list(range(25))
    assert transport.published[-1][0] == "anc/pub-1/events"


def test_drops_of_a_full_spool_are_counted_in_telemetry(loop: SyncLoop, tmp_path: Path) -> None:
    transport, spool, publisher = _rig(loop, tmp_path, max_bytes=2000)
    for i in range(60):
        publisher.telemetry({"attenuation_db": i, "pad": "x" * 40})
    assert wait_until(lambda: loop.call_sync(lambda: spool.dropped_total) > 0)
    dropped = loop.call_sync(lambda: spool.dropped_total)
    loop.call_sync(transport.connect)
    publisher.telemetry({"attenuation_db": 99})
    assert wait_until(lambda: any(d["attenuation_db"] == 99 for d in _telemetry(transport)))
    docs = _telemetry(transport)
    assert docs[-1]["spool_dropped"] == dropped
    assert docs[0]["seq"] == dropped + 1  # the oldest went first
    assert docs[-1]["seq"] == 61


def test_sequence_numbers_continue_after_a_restart(loop: SyncLoop, tmp_path: Path) -> None:
    _transport, spool, publisher = _rig(loop, tmp_path)
    for _ in range(3):
        publisher.telemetry({})
    assert wait_until(lambda: loop.call_sync(lambda: spool.pending) == 3)
    loop.call_sync(spool.close)
    transport2, _spool2, publisher2 = _rig(loop, tmp_path)
    loop.call_sync(transport2.connect)
    publisher2.telemetry({})
    assert wait_until(lambda: len(_telemetry(transport2)) == 4)
    assert [d["seq"] for d in _telemetry(transport2)] == [1, 2, 3, 4]


def test_records_that_could_hold_raw_audio_are_refused(loop: SyncLoop, tmp_path: Path) -> None:
    transport, _spool, publisher = _rig(loop, tmp_path)
    loop.call_sync(transport.connect)
    publisher.event({"type": "capture", "PCM": [1, 2]})
    publisher.telemetry({"spectrum": np.zeros(48000)})
    publisher.features({"log_mel": np.zeros((10, 64))})
    assert wait_until(lambda: publisher.stats.features_sent == 1)
    assert publisher.stats.records_refused == 2
    assert [t for t, _ in transport.published] == ["anc/pub-1/features"]
    assert audio_free({"nested": {"waveform": []}}) is not None
    assert audio_free({"log_mel": [[0.0] * 64] * 10}) is None
