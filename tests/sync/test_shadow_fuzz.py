"""Hostile and malformed shadow messages: the client never raises, and the engine only ever receives
values its ControlPort accepts (wrong types, huge numbers, NaN, deep nesting, unicode, missing keys)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.sync import coefficients as coeffs
from agent.sync.loop import SyncLoop
from agent.sync.shadow import ShadowClient
from agent.sync.shadow_rules import CONFIG_KEYS
from cloud.local.shadow_store import ShadowStore
from tests.sync.fake_control import FakeControl
from tests.sync.loopback import LoopbackTransport

THING = "fuzz-1"
DELTA = f"$aws/things/{THING}/shadow/name/config/update/delta"
COEFF_DELTA = f"$aws/things/{THING}/shadow/name/coefficients/update/delta"
GET_ACCEPTED = f"$aws/things/{THING}/shadow/name/coefficients/get/accepted"
DOCUMENTS = f"$aws/things/{THING}/shadow/name/config/update/documents"

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=80),
    st.sampled_from(["anc", "passthrough", "off", "fxnlms", "hybrid", "fxrls", "ANC", "anc\u0000", "ánc"]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
config_keys = st.one_of(st.sampled_from(CONFIG_KEYS), st.text(max_size=30))
settings_like = st.dictionaries(config_keys, json_values, max_size=6)
versions = st.one_of(st.integers(min_value=-5, max_value=10**20), json_values)
documents = st.one_of(
    st.fixed_dictionaries({"version": versions, "state": st.one_of(settings_like, json_values)}),
    st.fixed_dictionaries({"state": settings_like}),  # missing version
    st.dictionaries(st.text(max_size=12), json_values, max_size=5),
    json_values,
)


def _client(tmp_path: Path) -> tuple[ShadowClient, FakeControl]:
    loop = SyncLoop()  # never started: the fuzzer calls the handler directly, and nothing is sent
    control = FakeControl()
    transport = LoopbackTransport(loop, ShadowStore(":memory:"))
    return ShadowClient(loop, transport, control, THING, tmp_path), control


def _assert_engine_only_saw_valid_values(control: FakeControl, applied_before: int) -> None:
    for change in control.applied[applied_before:]:
        assert change, "an empty change reached the engine"
        for key, value in change.items():
            assert control.valid(key, value), (key, value)
    for key, value in control.settings.items():
        assert control.valid(key, value), (key, value)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=documents)
def test_delta_handler_survives_any_document(tmp_path: Path, doc: Any) -> None:
    client, control = _client(tmp_path)
    before = dict(control.settings)
    payload = json.dumps(doc).encode()  # NaN and Infinity are written as JS literals, as a hostile peer may
    client._on_message(DELTA, payload)
    client._on_message(DOCUMENTS, payload)
    _assert_engine_only_saw_valid_values(control, 0)
    state = doc.get("state") if isinstance(doc, dict) else None
    version = doc.get("version") if isinstance(doc, dict) else None
    well_formed = isinstance(version, int) and not isinstance(version, bool) and 0 <= version < 2**53
    if not (well_formed and isinstance(state, dict)):
        assert control.settings == before
        assert control.applied == []
    else:
        for key, value in control.settings.items():
            if value != before[key]:
                assert state.get(key) == value  # only keys the document asked for changed


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_delta_handler_survives_arbitrary_bytes(tmp_path: Path, data: bytes) -> None:
    client, control = _client(tmp_path)
    client._on_message(DELTA, data)
    client._on_message(COEFF_DELTA, data)
    assert control.applied == [] or all(control.valid(k, v) for c in control.applied for k, v in c.items())


def test_deeply_nested_and_oversized_documents_are_ignored(tmp_path: Path) -> None:
    client, control = _client(tmp_path)
    deep = b'{"version": 5, "state": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"}"
    client._on_message(DELTA, deep)
    huge = json.dumps({"version": 5, "state": {"mu": 0.1, "pad": "x" * 200_000}}).encode()
    client._on_message(DELTA, huge)
    assert control.applied == []
    assert client.stats.malformed == 2


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    desired=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "version": versions,
                "encoding": st.sampled_from(["f16-zlib-b64", "f32-zlib-b64", "raw", ""]),
                "checksum": st.one_of(st.text(max_size=70), st.just("a" * 64)),
                "shapes": json_values,
                "data": st.one_of(st.text(max_size=100), json_values),
            }
        ),
    )
)
def test_pushed_coefficients_never_reach_the_engine_unless_valid(tmp_path: Path, desired: Any) -> None:
    client, control = _client(tmp_path)
    doc = {"state": {"desired": desired}, "version": 3, "clientToken": "x"}
    client._pending.clear()
    client._on_full_document("coefficients", doc, 3)
    assert control.loaded == []


def test_valid_pushed_coefficients_do_reach_the_engine(tmp_path: Path) -> None:
    """The counterpart of the fuzz test above: the same path accepts a well-formed set."""
    client, control = _client(tmp_path)
    good = coeffs.encode({"w": np.zeros((2, 64))}, 2).document()
    client._on_full_document("coefficients", {"state": {"desired": good}, "version": 3}, 3)
    assert len(control.loaded) == 1
