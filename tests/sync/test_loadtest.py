"""The load test harness on a few agents (the 200-agent, 60 s outage run is a soak test)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.sync.loadtest import Endpoint, LoadReport, run_load
from tests.support.shadow_service import RunningShadowService
from tests.sync.tcp_proxy import TcpProxy


def _run(shadow_service: RunningShadowService, tmp_path: Path, agents: int, **kwargs: Any) -> LoadReport:
    broker = shadow_service.broker
    proxy = TcpProxy(broker.host, broker.port)
    try:
        return run_load(
            agents,
            Endpoint(proxy.host, proxy.port, broker.ca_path),
            Endpoint(broker.host, broker.port, broker.ca_path),
            broker.issue_client,
            broker.service_cert(),
            tmp_path / "agents",
            cut=proxy.cut,
            restore=proxy.restore,
            **kwargs,
        )
    finally:
        proxy.close()


def test_agents_converge_and_lose_no_telemetry_through_an_outage(
    shadow_service: RunningShadowService, tmp_path: Path
) -> None:
    report = _run(shadow_service, tmp_path, 4, duration_s=4.0, telemetry_hz=5.0, round_trips=5, outage_s=1.0)
    assert report.telemetry_sent > 0
    assert report.telemetry_received == report.telemetry_sent
    assert report.lost == 0
    assert report.convergence_s is not None
    assert len(report.round_trip_ms) == 5
    assert any("config round trip" in line for line in report.lines())


@pytest.mark.soak
def test_200_agents_through_a_60_s_outage(shadow_service: RunningShadowService, tmp_path: Path) -> None:
    report = _run(
        shadow_service, tmp_path, 200, duration_s=120.0, round_trips=50, outage_s=60.0, drain_timeout_s=300.0
    )
    print("\n".join(report.lines()))
    assert report.lost == 0
    assert report.convergence_s is not None
    assert report.percentile_ms(95) is not None and report.percentile_ms(95) < 250.0
