"""The AWS Device Shadow rules, one table row per documented behaviour.

Every row runs against `ShadowStore` directly (with a clock that advances one second per request),
and the rows marked `mqtt` also run through the real service on a real Mosquitto, sent by a device
that holds its own certificate: the replies must be the same.
"""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cloud.local.shadow_store import ShadowStore
from tests.support.broker import Broker, MqttProbe
from tests.support.shadow_service import RunningShadowService, running_shadow_service

T0 = 1_700_000_000  # the fake clock's first second; request i of a row happens at T0 + i


class _Anything:
    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Anything()


def ts(step: int) -> dict[str, int]:
    """Metadata of a leaf written by request `step` (store runs only)."""
    return {"timestamp": T0 + step}


def matches(expected: Any, actual: Any) -> bool:
    """JSON equality where ANY matches anything and true never equals 1."""
    if expected is ANY:
        return True
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(matches(v, actual[k]) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    return expected == actual


@dataclass(frozen=True)
class Case:
    """Requests `steps` in order, then check the replies to the last one.

    `expect`: reply suffix -> the keys of that reply document that must match (others are free);
    `absent`: suffixes that must not be sent for the last request.
    """

    name: str
    steps: list[tuple[str, Any]]
    expect: dict[str, dict[str, Any]]
    absent: tuple[str, ...] = ()
    shadow: str | None = "config"
    mqtt: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def upd(state: Any, **extra: Any) -> tuple[str, Any]:
    return ("update", {"state": state, **extra})


def desired(**values: Any) -> tuple[str, Any]:
    return upd({"desired": values})


def reported(**values: Any) -> tuple[str, Any]:
    return upd({"reported": values})


GET: tuple[str, Any] = ("get", None)
DELETE: tuple[str, Any] = ("delete", None)


def nested(depth: int) -> dict[str, Any]:
    """An object `depth` levels deep: nested(1) == {"k1": 1}."""
    value: Any = 1
    for level in range(depth, 0, -1):
        value = {f"k{level}": value}
    return value


BLOB_FITS = 8192 - len('{"desired":{"blob":""}}')  # the compact document is exactly 8 KB

CASES: list[Case] = [
    Case(
        "delta_lists_desired_keys_that_differ_or_are_missing_in_reported",
        [reported(color="GREEN", engine="ON"), desired(color="RED", state="STOP")],
        {"update/delta": {"state": {"color": "RED", "state": "STOP"}, "version": 2}},
    ),
    Case(
        "nested_delta_keeps_the_path_to_the_root",
        [
            reported(lights={"color": {"r": 255, "g": 0, "b": 255}}),
            desired(lights={"color": {"r": 255, "g": 255, "b": 255}}),
        ],
        {"update/delta": {"state": {"lights": {"color": {"g": 255}}}}},
    ),
    Case(
        "arrays_that_differ_go_whole_into_the_delta",
        [reported(colors=["RED", "GREEN"]), desired(colors=["RED", "GREEN", "BLUE"])],
        {"update/delta": {"state": {"colors": ["RED", "GREEN", "BLUE"]}}},
    ),
    Case(
        "equal_arrays_make_no_delta",
        [reported(colors=["RED"]), desired(colors=["RED"])],
        {"update/accepted": {"version": 2}},
        absent=("update/delta",),
    ),
    Case(
        "true_is_not_equal_to_one_in_the_delta",
        [reported(on=1), desired(on=True)],
        {"update/delta": {"state": {"on": True}}},
    ),
    Case(
        "delta_message_holds_the_whole_delta_not_only_the_request",
        [desired(a=1), desired(b=2)],
        {"update/delta": {"state": {"a": 1, "b": 2}, "version": 2}},
    ),
    Case(
        "reported_only_update_sends_no_delta",
        [desired(x=2), reported(x=1)],
        {"update/accepted": {"state": {"reported": {"x": 1}}, "version": 2}},
        absent=("update/delta",),
    ),
    Case(
        "array_update_replaces_the_whole_array",
        [desired(colors=["RED", "GREEN", "BLUE"]), desired(colors=["RED"]), GET],
        {"get/accepted": {"state": {"desired": {"colors": ["RED"]}, "delta": {"colors": ["RED"]}}}},
    ),
    Case(
        "null_deletes_a_key",
        [desired(engine="ON", color="RED"), reported(color="RED"), desired(engine=None), GET],
        {"get/accepted": {"state": {"desired": {"color": "RED"}, "reported": {"color": "RED"}}}},
    ),
    Case(
        "null_section_removes_the_section_and_its_delta",
        [desired(color="RED"), upd({"reported": {"color": "red"}, "desired": None}), GET],
        {"get/accepted": {"state": {"reported": {"color": "red"}}, "version": 2}},
    ),
    Case(
        "null_state_empties_the_document_but_keeps_the_shadow",
        [desired(a=1), reported(a=2), upd(None), GET],
        {"get/accepted": {"state": {}, "metadata": {}, "version": 3}},
    ),
    Case(
        "empty_state_is_accepted_and_counts_a_version",
        [desired(a=1), upd({})],
        {"update/accepted": {"state": {}, "metadata": {}, "version": 2}},
        absent=("update/delta",),
    ),
    Case(
        "version_increments_on_every_update",
        [desired(a=1), desired(a=2), reported(a=2), GET],
        {"get/accepted": {"version": 3}},
    ),
    Case(
        "stale_version_is_a_409_conflict",
        [desired(a=1), desired(a=2), upd({"desired": {"a": 3}}, version=1, clientToken="tok-409")],
        {"update/rejected": {"code": 409, "message": "Version conflict", "clientToken": "tok-409"}},
    ),
    Case(
        "matching_version_is_accepted",
        [desired(a=1), upd({"desired": {"a": 3}}, version=1)],
        {"update/accepted": {"version": 2}},
    ),
    Case(
        "rejected_update_changes_nothing",
        [desired(a=1), upd({"desired": {"a": 3}}, version=7), GET],
        {"get/accepted": {"state": {"desired": {"a": 1}, "delta": {"a": 1}}, "version": 1}},
    ),
    Case(
        "missing_state_is_400",
        [("update", {"clientToken": "tok-1"})],
        {"update/rejected": {"code": 400, "message": "Missing required node: state", "clientToken": "tok-1"}},
    ),
    Case(
        "state_that_is_not_an_object_is_400",
        [upd(5)],
        {"update/rejected": {"code": 400, "message": "State node must be an object"}},
    ),
    Case(
        "desired_that_is_not_an_object_is_400",
        [upd({"desired": [1, 2]})],
        {"update/rejected": {"code": 400, "message": "Desired node must be an object"}},
    ),
    Case(
        "reported_that_is_not_an_object_is_400",
        [upd({"reported": "on"})],
        {"update/rejected": {"code": 400, "message": "Reported node must be an object"}},
    ),
    Case(
        "unknown_node_in_state_is_400",
        [upd({"delta": {"a": 1}})],
        {"update/rejected": {"code": 400, "message": "State contains an invalid node: 'delta'"}},
    ),
    Case(
        "malformed_json_is_400",
        [("update", b'{"state": {"desired": ')],
        {"update/rejected": {"code": 400, "message": "Invalid JSON"}},
    ),
    Case(
        "payload_that_is_not_utf8_is_415",
        [("update", b'{"state": {"desired": {"a": "\xff"}}}')],
        {
            "update/rejected": {
                "code": 415,
                "message": "Unsupported documented encoding; supported encoding is UTF-8",
            }
        },
    ),
    Case(
        "version_that_is_not_an_integer_is_400",
        [upd({"desired": {"a": 1}}, version="1")],
        {"update/rejected": {"code": 400, "message": "Invalid version"}},
    ),
    Case(
        "null_inside_an_array_is_400",
        [desired(colors=[None, "RED"])],
        {"update/rejected": {"code": 400}},
    ),
    Case(
        "six_levels_of_nesting_are_accepted",
        [upd({"desired": nested(6)})],  # the desired object itself is level 1
        {"update/accepted": {"version": 1}},
    ),
    Case(
        "seven_levels_of_nesting_are_400",
        [upd({"desired": nested(7)})],
        {
            "update/rejected": {
                "code": 400,
                "message": "JSON contains too many levels of nesting; maximum is 6",
            }
        },
    ),
    Case(
        "state_of_exactly_8kb_is_accepted_whitespace_not_counted",
        [("update", json.dumps({"state": {"desired": {"blob": "x" * BLOB_FITS}}}, indent=8).encode())],
        {"update/accepted": {"version": 1}},
    ),
    Case(
        "state_over_8kb_is_413",
        [desired(blob="x" * (BLOB_FITS + 1))],
        {"update/rejected": {"code": 413, "message": "The payload exceeds the maximum size allowed"}},
    ),
    Case(
        "size_limit_applies_to_the_merged_document",
        [desired(a="x" * 5000), reported(b="y" * 5000)],
        {"update/rejected": {"code": 413}},
    ),
    Case(
        "client_token_of_64_bytes_is_echoed",
        [upd({"desired": {"a": 1}}, clientToken="t" * 64)],
        {"update/accepted": {"clientToken": "t" * 64}, "update/delta": {"clientToken": "t" * 64}},
    ),
    Case(
        "client_token_over_64_bytes_is_400",
        [upd({"desired": {"a": 1}}, clientToken="t" * 65)],
        {"update/rejected": {"code": 400, "message": "Invalid clientToken"}},
    ),
    Case(
        "get_of_a_missing_named_shadow_is_404",
        [("get", {"clientToken": "g1"})],
        {"get/rejected": {"code": 404, "message": ANY, "clientToken": "g1"}},
        extra={"missing_name": "~config"},
    ),
    Case(
        "get_of_a_missing_classic_shadow_is_404",
        [GET],
        {"get/rejected": {"code": 404, "message": ANY}},
        shadow=None,
    ),
    Case(
        "delete_answers_version_and_timestamp",
        [desired(a=1), desired(a=2), ("delete", {"clientToken": "d1"})],
        {"delete/accepted": {"version": 2, "timestamp": ANY, "clientToken": "d1"}},
    ),
    Case(
        "delete_then_get_is_404",
        [desired(a=1), DELETE, GET],
        {"get/rejected": {"code": 404}},
    ),
    Case(
        "delete_of_a_missing_shadow_is_404",
        [DELETE],
        {"delete/rejected": {"code": 404}},
    ),
    Case(
        "update_after_delete_continues_the_version",
        [desired(a=1), desired(a=2), DELETE, desired(b=1), GET],
        {"get/accepted": {"state": {"desired": {"b": 1}, "delta": {"b": 1}}, "version": 3}},
    ),
    Case(
        "classic_shadow_updates_and_reads_back",
        [reported(temp=55), GET],
        {"get/accepted": {"state": {"reported": {"temp": 55}}, "version": 1}},
        shadow=None,
    ),
    Case(
        "documents_carry_previous_and_current",
        [reported(x=1), upd({"desired": {"x": 2}}, clientToken="doc")],
        {
            "update/documents": {
                "previous": {"state": {"reported": {"x": 1}}, "metadata": ANY, "version": 1},
                "current": {
                    "state": {"reported": {"x": 1}, "desired": {"x": 2}},
                    "metadata": ANY,
                    "version": 2,
                },
                "timestamp": ANY,
                "clientToken": "doc",
            }
        },
    ),
    Case(
        "documents_of_the_first_update_have_no_previous",
        [desired(x=2)],
        {"update/documents": {"current": {"state": {"desired": {"x": 2}}, "metadata": ANY, "version": 1}}},
    ),
    # Timestamps: the store run's clock makes request i happen at T0 + i.
    Case(
        "metadata_keeps_a_timestamp_per_leaf",
        [desired(a=1, b={"c": 2}), desired(b={"d": 3}), reported(arr=[1, {"e": 2}]), GET],
        {
            "get/accepted": {
                "metadata": {
                    "desired": {"a": ts(0), "b": {"c": ts(0), "d": ts(1)}},
                    "reported": {"arr": [ts(2), {"e": ts(2)}]},
                },
                "timestamp": T0 + 3,
            }
        },
        mqtt=False,
    ),
    Case(
        "accepted_echoes_the_request_with_its_metadata",
        [desired(a=1), upd({"desired": {"a": None, "b": {"c": 1}}})],
        {
            "update/accepted": {
                "state": {"desired": {"a": None, "b": {"c": 1}}},
                "metadata": {"desired": {"a": ts(1), "b": {"c": ts(1)}}},
                "version": 2,
                "timestamp": T0 + 1,
            }
        },
        mqtt=False,
    ),
    Case(
        "delta_metadata_equals_the_desired_metadata",
        [desired(a=1, b=1), reported(a=1), desired(c=5)],
        {
            "update/delta": {
                "state": {"b": 1, "c": 5},
                "metadata": {"b": ts(0), "c": ts(2)},
                "timestamp": T0 + 2,
            }
        },
        mqtt=False,
    ),
]


def _body(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    return json.dumps(body).encode()


def _check(case: Case, replies: dict[str, dict[str, Any]], thing: str) -> None:
    for suffix, expected in case.expect.items():
        assert suffix in replies, f"{case.name}: no {suffix}; got {sorted(replies)}"
        doc = replies[suffix]
        for key, value in expected.items():
            assert key in doc, f"{case.name}: {suffix} lacks {key!r}: {doc}"
            assert matches(value, doc[key]), f"{case.name}: {suffix}.{key} = {doc[key]!r}, expected {value!r}"
    for suffix in case.absent:
        assert suffix not in replies, f"{case.name}: unexpected {suffix}: {replies[suffix]}"
    if "missing_name" in case.extra or (case.shadow is None and "get/rejected" in case.expect):
        name = thing + case.extra.get("missing_name", "")
        assert replies["get/rejected"]["message"] == f"No shadow exists with name: '{name}'"


class FakeClock:
    def __init__(self) -> None:
        self.now_s = float(T0)

    def __call__(self) -> float:
        return self.now_s


def run_on_store(case: Case, thing: str) -> dict[str, dict[str, Any]]:
    clock = FakeClock()
    store = ShadowStore(clock=clock, monotonic=clock)
    replies: dict[str, dict[str, Any]] = {}
    for op, body in case.steps:
        replies = {r.suffix: r.document for r in store.handle(op, thing, case.shadow, _body(body))}
        clock.now_s += 1.0
    store.close()
    return replies


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_store_follows_the_aws_rule(case: Case) -> None:
    _check(case, run_on_store(case, "dev-1"), "dev-1")


# ---------------------------------------------------------------- the same rows through MQTT


class ShadowDevice:
    """A device speaking the shadow protocol with its own certificate (CN = thing name).

    `request` publishes one request, then a GET on a barrier shadow: the service answers in order,
    so everything received before the barrier's answer is the reply set of the request.
    """

    BARRIER = "zz-barrier"

    def __init__(self, broker: Broker, thing: str) -> None:
        self.thing = thing
        cert, key = broker.issue_client(thing)
        self.probe = MqttProbe(broker, cert, key, client_id=thing).connect()
        assert self.probe.subscribe(f"$aws/things/{thing}/shadow/#") == [1]

    def prefix(self, shadow: str | None) -> str:
        base = f"$aws/things/{self.thing}/shadow"
        return base if shadow is None else f"{base}/name/{shadow}"

    def request(self, op: str, shadow: str | None, payload: bytes) -> dict[str, dict[str, Any]]:
        prefix = self.prefix(shadow)
        barrier = self.prefix(self.BARRIER)
        self.probe.publish(f"{prefix}/{op}", payload)
        self.probe.publish(f"{barrier}/get", b"")
        replies: dict[str, dict[str, Any]] = {}
        while True:
            try:
                topic, body = self.probe.next_message(timeout_s=10)
            except queue.Empty:
                raise AssertionError(f"no answer to {op} on {prefix}; got {sorted(replies)}") from None
            if topic == f"{barrier}/get/rejected":
                return replies
            if topic.startswith(barrier):
                continue
            if topic.startswith(prefix + "/") and topic.count("/") > prefix.count("/") + 1:
                replies[topic[len(prefix) + 1 :]] = json.loads(body)

    def close(self) -> None:
        self.probe.close()


@pytest.fixture(scope="module")
def service(
    broker_session: Broker,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningShadowService]:
    db_path: Path = tmp_path_factory.mktemp("shadow-rules") / "shadows.sqlite3"
    with running_shadow_service(broker_session, db_path) as running:
        yield running


MQTT_CASES = [c for c in CASES if c.mqtt]


@pytest.mark.parametrize("case", MQTT_CASES, ids=[c.name for c in MQTT_CASES])
def test_service_follows_the_aws_rule_over_mqtt(case: Case, service: RunningShadowService) -> None:
    thing = f"rules-{MQTT_CASES.index(case)}"
    device = ShadowDevice(service.broker, thing)
    try:
        replies: dict[str, dict[str, Any]] = {}
        for op, body in case.steps:
            replies = device.request(op, case.shadow, _body(body))
        _check(case, replies, thing)
    finally:
        device.close()
