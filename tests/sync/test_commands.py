"""Inbound commands (`anc/<thing>/commands`) are parsed at the edge: hostile payloads never raise, and the
ControlPort only ever sees a JSON object with a string `type`; refusals go back up as events."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.sync.client import MAX_COMMAND_BYTES, CommandHandler
from tests.sync.fake_control import FakeControl


class Events:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def telemetry(self, record: dict[str, Any]) -> None: ...

    def features(self, record: dict[str, Any]) -> None: ...

    def event(self, record: dict[str, Any]) -> None:
        self.records.append(record)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30)),
    lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=8), c, max_size=4)),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None)
@given(payload=st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())))
def test_any_payload_is_handled_without_raising(payload: bytes) -> None:
    control, events = FakeControl(), Events()
    handler = CommandHandler(control, events)
    handler("anc/t/commands", payload)
    assert handler.handled + handler.rejected == 1
    assert len(events.records) == handler.rejected
    for command in control.commands:
        assert isinstance(command, dict) and isinstance(command["type"], str)


def test_valid_command_reaches_the_control_port() -> None:
    control, events = FakeControl(), Events()
    CommandHandler(control, events)("anc/t/commands", b'{"type": "capture", "seconds": 2}')
    assert control.commands == [{"type": "capture", "seconds": 2}]
    assert events.records == []


def test_refusals_name_the_problem() -> None:
    control, events = FakeControl(), Events()
    handler = CommandHandler(control, events)
    handler("anc/t/commands", b"[1, 2]")
    handler("anc/t/commands", b'{"kind": "capture"}')
    handler("anc/t/commands", b"x" * (MAX_COMMAND_BYTES + 1))
    handler("anc/t/commands", b"[" * 10_000)
    reasons = [e["reason"] for e in events.records]
    assert "expected a JSON object" in reasons[0]
    assert reasons[1].startswith("command.type: missing")
    assert "over the 16384-byte limit" in reasons[2]
    assert "not valid JSON" in reasons[3]
    assert control.commands == []
