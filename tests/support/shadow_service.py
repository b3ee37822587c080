"""The local Device Shadow service running against a test broker, for any test that needs shadows.

    from tests.support.broker import broker_session  # noqa: F401   (registers the broker fixture)
    from tests.support.shadow_service import shadow_service  # noqa: F401

    def test_agent_applies_desired(shadow_service: RunningShadowService) -> None:
        ...  # devices talk to shadow_service.broker; shadows live in shadow_service.db_path

`running_shadow_service(broker, db_path)` is the same as a context manager (for restart tests).
The service connects as the broker's privileged service user over TLS with `broker.service_cert()`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from cloud.local.shadow_service import BrokerEndpoint, ShadowService
from cloud.local.shadow_store import ShadowStore
from tests.support.broker import Broker

READY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RunningShadowService:
    broker: Broker
    store: ShadowStore
    service: ShadowService
    db_path: Path


def service_endpoint(broker: Broker) -> BrokerEndpoint:
    """The TLS endpoint and client certificate of the broker's privileged service user."""
    cert, key = broker.service_cert()
    return BrokerEndpoint(broker.host, broker.port, tls_ca=broker.ca_path, tls_cert=cert, tls_key=key)


@contextmanager
def running_shadow_service(
    broker: Broker, db_path: Path, *, client_id: str | None = None
) -> Iterator[RunningShadowService]:
    """A started, subscribed shadow service on `broker` keeping its shadows in `db_path`."""
    store = ShadowStore(db_path)
    service = ShadowService(
        store,
        service_endpoint(broker),
        client_id=client_id or f"shadow-service-{secrets.token_hex(4)}",
        persistent_session=False,
    )
    service.start()
    try:
        if not service.wait_ready(READY_TIMEOUT_S):
            raise RuntimeError(f"shadow service did not subscribe; broker log:\n{broker.log_text()}")
        yield RunningShadowService(broker, store, service, db_path)
    finally:
        service.stop()
        store.close()


@pytest.fixture
def shadow_service(broker_session: Broker, tmp_path: Path) -> Iterator[RunningShadowService]:
    """A shadow service per test on the session broker (use unique thing names per test)."""
    with running_shadow_service(broker_session, tmp_path / "shadows.sqlite3") as running:
        yield running
