"""Fixtures for the sync tests: the shared TLS Mosquitto (per-device ACLs), the local shadow service
and a running sync loop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.sync.loop import SyncLoop
from tests.support.broker import broker, broker_session  # noqa: F401
from tests.support.shadow_service import shadow_service  # noqa: F401


@pytest.fixture
def loop() -> Iterator[SyncLoop]:
    lp = SyncLoop().start()
    try:
        yield lp
    finally:
        lp.stop(5.0)
