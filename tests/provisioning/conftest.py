"""Fixtures for the provisioning tests: the real Mosquitto broker."""

from tests.support.broker import broker, broker_session  # noqa: F401
