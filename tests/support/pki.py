"""Shared values for tests that use `anc-provision`: the test CA passphrase and the type of the in-process
CLI runner (fixture `run_cli` in tests/provisioning/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PASSPHRASE = "correct horse battery staple"

# run_cli("--home", home, "ca", "show") -> (exit code, parsed --json output)
RunCli = Callable[..., tuple[int, dict[str, Any]]]
