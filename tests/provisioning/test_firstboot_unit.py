"""The first-boot provisioning unit passes `systemd-analyze verify` and runs before the agent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "anc-provision-firstboot.service"
VENV_BIN = Path(sys.executable).parent / "anc-provision"


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/anc-provision claim" in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace("/usr/local/bin/anc-provision", str(VENV_BIN)))
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert UNIT.name not in result.stderr, result.stderr  # no warnings about our unit either


def test_unit_runs_once_before_the_agent() -> None:
    lines = {line.strip() for line in UNIT.read_text().splitlines()}
    assert "Type=oneshot" in lines
    assert "ConditionPathExists=!/etc/anc-agent/device.crt" in lines
    assert "Before=anc-agent.service" in lines
