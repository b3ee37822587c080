"""SIGHUP's reload, in process: live changes keep the pipeline, structural ones rebuild it, bad files change
nothing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from agent.config import load_config
from agent.service.daemon import Daemon


def _write(path: Path, **cfg) -> None:
    base = {"backend": "simulated", "simulated": {"paced": False}, "realtime_priority": 0,
            "state_dir": str(path.parent / "state"), "profile": "hvac-duct-16k"}  # fmt: skip
    base.update(cfg)
    path.write_text(yaml.safe_dump(base))


def test_reload_applies_live_rebuilds_on_profile_change_and_rejects_bad_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "agent.yaml"
    _write(path, telemetry_interval_s=1.0)
    daemon = Daemon(load_config(path))
    first = daemon.start()
    try:
        _write(path, telemetry_interval_s=0.5, controller={"mu": 0.01})
        daemon.reload()
        assert daemon.pipeline is first  # same engine, same stream
        assert first.control.current_settings()["mu"] == 0.01
        assert first.control.current_settings()["telemetry_interval_s"] == 0.5

        path.write_text("backend: [unclosed")
        with caplog.at_level(logging.ERROR):
            daemon.reload()
        assert "reload rejected" in caplog.text and str(path) in caplog.text
        assert daemon.pipeline is first and first.backend.running

        _write(path, profile="vehicle-cabin-48k")
        daemon.reload()
        second = daemon.pipeline
        assert second is not None and second is not first
        assert second.profile.name == "vehicle-cabin-48k" and second.backend.running
        assert not first.backend.running
    finally:
        daemon.stop()
