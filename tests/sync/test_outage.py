"""The broker-outage figures through the real daemon (`agent.sync.outage_bench`): a short outage here so
CI keeps the mechanism honest; the issue's full 60 s outage is the soak test below."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.sync.outage_bench import OutageReport, open_rig, run_outage


def _outage(tmp_path: Path, outage_s: float, before_s: float, after_s: float) -> OutageReport:
    with open_rig(tmp_path) as rig:
        report = run_outage(rig, outage_s=outage_s, before_s=before_s, after_s=after_s)
        assert rig.broker.persistence
    print("\n".join(report.lines()))
    return report


def _assert_nothing_lost_and_shadows_reconverge(report: OutageReport) -> None:
    assert report.seq_first == 1
    assert report.gaps == []
    assert report.received_unique == report.seq_last  # 1..seq_last, every one of them
    assert report.observer_session_kept, "the broker restart must not cost the cloud side its session"
    assert report.drain_s is not None
    assert report.reconvergence_s is not None
    assert report.reported_mu == report.desired_mu
    assert report.shadows_in_sync


def test_a_stopped_broker_loses_no_telemetry_and_the_desired_change_arrives_after_restart(
    tmp_path: Path,
) -> None:
    report = _outage(tmp_path, outage_s=5.0, before_s=3.0, after_s=6.0)
    _assert_nothing_lost_and_shadows_reconverge(report)
    assert report.outage_records >= 3  # made while the broker was down, delivered from the spool after
    for window in report.windows:
        assert window.records > 0 and window.blocks > 0, window
        assert window.callback_us_p99_max is not None
    assert any(line.startswith("audio effects attributable") for line in report.lines())


@pytest.mark.soak
def test_a_60_s_broker_outage_loses_nothing_and_leaves_the_audio_loop_alone(tmp_path: Path) -> None:
    report = _outage(tmp_path, outage_s=60.0, before_s=15.0, after_s=30.0)
    _assert_nothing_lost_and_shadows_reconverge(report)
    assert report.outage_records >= 55
    assert all(w.blocks_lost == 0 for w in report.windows)
    assert report.attributable_to_outage() == []
