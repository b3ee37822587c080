"""Store behaviour outside the rules table: rate limit, names, persistence, topic and URL parsing."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from cloud.local.shadow_service import BrokerEndpoint, parse_request_topic
from cloud.local.shadow_store import ShadowStore


class Clock:
    def __init__(self, now_s: float = 1_700_000_000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def _update(store: ShadowStore, thing: str, state: dict, shadow: str | None = "config") -> list[str]:
    payload = json.dumps({"state": state}).encode()
    return [r.suffix for r in store.handle("update", thing, shadow, payload)]


def test_more_than_20_requests_a_second_per_thing_are_429_then_budget_refills() -> None:
    clock = Clock()
    store = ShadowStore(clock=clock, monotonic=clock)
    for i in range(20):
        assert _update(store, "busy", {"reported": {"n": i}})[0] == "update/accepted"
    replies = store.handle(
        "update", "busy", "config", b'{"state": {"reported": {"n": 99}}, "clientToken": "c"}'
    )
    assert [r.suffix for r in replies] == ["update/rejected"]
    assert replies[0].document["code"] == 429
    assert replies[0].document["message"] == "Too Many Requests"
    assert replies[0].document["clientToken"] == "c"
    # Another thing has its own budget; GET counts too.
    assert store.handle("get", "quiet", "config", b"")[0].document["code"] == 404
    clock.now_s += 0.5  # half a second refills 10 requests
    accepted = [_update(store, "busy", {"reported": {"n": i}})[0] for i in range(11)]
    assert accepted == ["update/accepted"] * 10 + ["update/rejected"]
    get = store.handle("get", "busy", "config", b"")[0].document
    assert get["code"] == 429  # still empty: the rejected requests did not refill it


@pytest.mark.parametrize(
    ("thing", "shadow", "field"),
    [("bad/thing", "config", "thing name"), ("t" * 129, None, "thing name"), ("ok", "sp ace", "shadow name")],
)
def test_bad_names_are_400_naming_the_field_and_the_allowed_characters(
    thing: str, shadow: str | None, field: str
) -> None:
    doc = ShadowStore().handle("update", thing, shadow, b'{"state": {}}')[0].document
    assert doc["code"] == 400
    assert f"Invalid {field}" in doc["message"] and "a-z A-Z 0-9 : _ -" in doc["message"]


def test_named_and_classic_shadows_of_a_thing_are_separate() -> None:
    store = ShadowStore()
    _update(store, "t1", {"reported": {"a": 1}}, shadow=None)
    _update(store, "t1", {"reported": {"a": 2}}, shadow="config")
    _update(store, "t1", {"reported": {"a": 3}}, shadow="coefficients")
    values = [
        store.handle("get", "t1", s, b"")[0].document["state"]["reported"]["a"]
        for s in (None, "config", "coefficients")
    ]
    assert values == [1, 2, 3]


def test_shadows_persist_in_a_wal_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "shadows.sqlite3"
    store = ShadowStore(db)
    _update(store, "t1", {"desired": {"mode": "anc"}})
    _update(store, "t1", {"reported": {"mode": "off"}})
    store.close()
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened = ShadowStore(db)
    doc = reopened.handle("get", "t1", "config", b"")[0].document
    assert doc["version"] == 2
    assert doc["state"] == {"desired": {"mode": "anc"}, "reported": {"mode": "off"}, "delta": {"mode": "anc"}}
    reopened.close()


def test_deleted_shadow_version_restarts_from_zero_after_48_hours() -> None:
    clock = Clock()
    store = ShadowStore(clock=clock, monotonic=clock)
    _update(store, "t1", {"desired": {"a": 1}})
    _update(store, "t1", {"desired": {"a": 2}})
    store.handle("delete", "t1", "config", b"")
    clock.now_s += 48 * 3600 + 1
    accepted = store.handle("update", "t1", "config", b'{"state": {"desired": {"a": 3}}}')[0].document
    assert accepted["version"] == 1


@pytest.mark.parametrize(
    ("topic", "parsed"),
    [
        ("$aws/things/dev-1/shadow/update", ("update", "dev-1", None)),
        ("$aws/things/dev-1/shadow/name/config/get", ("get", "dev-1", "config")),
        ("$aws/things/dev-1/shadow/name/config/delete", ("delete", "dev-1", "config")),
        ("$aws/things/dev-1/shadow/update/accepted", None),
        ("$aws/things/dev-1/shadow/name/config/update/delta", None),
        ("$aws/things/dev-1/shadow/list", None),
        ("anc/dev-1/telemetry", None),
    ],
)
def test_request_topics_are_recognised_and_replies_are_not(topic: str, parsed: tuple | None) -> None:
    assert parse_request_topic(topic) == parsed


def test_broker_urls_parse_and_bad_ones_name_the_flag_and_the_allowed_forms() -> None:
    assert BrokerEndpoint.from_url("mqtt://127.0.0.1:18830") == BrokerEndpoint("127.0.0.1", 18830)
    tls = BrokerEndpoint.from_url("mqtts://localhost", tls_ca=Path("ca.pem"))
    assert (tls.port, tls.uses_tls) == (8883, True)
    with pytest.raises(ValueError, match=r"--broker: 'http://x:1' .*mqtt://HOST:PORT"):
        BrokerEndpoint.from_url("http://x:1")
    with pytest.raises(ValueError, match="--tls-ca is required"):
        BrokerEndpoint.from_url("mqtts://localhost:8883")


def test_database_failure_is_a_500_and_the_shadow_is_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "shadows.sqlite3"
    store = ShadowStore(db, busy_timeout_s=0.05)
    _update(store, "t1", {"desired": {"mode": "anc"}})
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    replies = store.handle(
        "update", "t1", "config", b'{"state": {"desired": {"mode": "off"}}, "clientToken": "x"}'
    )
    locker.execute("ROLLBACK")
    assert [r.suffix for r in replies] == ["update/rejected"]
    assert replies[0].document["code"] == 500 and replies[0].document["clientToken"] == "x"
    doc = store.handle("get", "t1", "config", b"")[0].document
    assert (doc["version"], doc["state"]["desired"]) == (1, {"mode": "anc"})
