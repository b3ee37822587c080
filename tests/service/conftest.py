"""Fixtures for the service tests: the real Mosquitto broker (mutual TLS, per-thing ACLs)."""

from tests.support.broker import broker, broker_session  # noqa: F401
