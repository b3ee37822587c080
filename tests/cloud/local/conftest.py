"""Fixtures for the local stack's tests: the real Mosquitto broker and the shadow service on it."""

from tests.support.broker import broker, broker_session  # noqa: F401
from tests.support.shadow_service import shadow_service  # noqa: F401
