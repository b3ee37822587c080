"""`cloud:` sections of agent.yaml pointing a test device at the test broker."""

from __future__ import annotations

from typing import Any

from tests.support.broker import Broker


def cloud_section(mqtt_broker: Broker, thing: str, port: int | None = None, **extra: Any) -> dict[str, Any]:
    """A `cloud:` section for device `thing` (a fresh certificate, CN = thing) against `mqtt_broker`."""
    cert_file, key_file = mqtt_broker.issue_client(thing)
    return {
        "thing_name": thing,
        "endpoint": mqtt_broker.host,
        "port": port or mqtt_broker.port,
        "ca_file": str(mqtt_broker.ca_path),
        "cert_file": str(cert_file),
        "key_file": str(key_file),
        "reconnect_min_s": 0.2,
        "reconnect_max_s": 1.0,
        **extra,
    }
