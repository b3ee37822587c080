"""The broker-outage figures through the real daemon (`agent.sync.outage_bench`): a short outage here so
CI keeps the mechanism honest; the issue's full 60 s outage is the soak test below."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.sync.outage_bench import OutageReport, WindowStats, open_rig, run_outage


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


def _report_with(before: WindowStats, during: WindowStats, after: WindowStats) -> OutageReport:
    return OutageReport(
        outage_s=60.0, transport="awsiot", profile="hvac-duct-16k", seq_first=1, seq_last=10,
        received_unique=10, duplicates=0, gaps=[], still_spooled=0, outage_records=6, drain_s=1.0,
        reconvergence_s=1.0, shadows_in_sync=True, desired_mu=0.01, reported_mu=0.01,
        observer_session_kept=True, windows=[before, during, after],
    )  # fmt: skip


def test_only_xruns_and_slow_blocks_beyond_the_rate_before_the_outage_are_blamed_on_it() -> None:
    background = _report_with(
        WindowStats("before", blocks=10_000, slow_blocks=80, xruns=1),
        WindowStats("during", blocks=40_000, slow_blocks=330, xruns=5),
        WindowStats("after", blocks=20_000, slow_blocks=150, xruns=2),
    )
    assert background.attributable_to_outage() == []
    assert background.excess("slow_blocks", "during") == pytest.approx(10.0)
    burst = _report_with(
        WindowStats("before", blocks=10_000, slow_blocks=80, xruns=0),
        WindowStats("during", blocks=40_000, slow_blocks=320, xruns=0),
        WindowStats("after", blocks=20_000, slow_blocks=400, xruns=12),
    )
    blamed = burst.attributable_to_outage()
    assert len(blamed) == 2
    assert all(line.startswith("after:") for line in blamed)
    assert any("xruns" in line for line in blamed) and any("slow_blocks" in line for line in blamed)


@pytest.mark.soak
def test_a_60_s_broker_outage_loses_nothing_and_leaves_the_audio_loop_alone(tmp_path: Path) -> None:
    report = _outage(tmp_path, outage_s=60.0, before_s=15.0, after_s=30.0)
    _assert_nothing_lost_and_shadows_reconverge(report)
    assert report.outage_records >= 55
    assert all(w.blocks_lost == 0 for w in report.windows)
    assert report.attributable_to_outage() == []
