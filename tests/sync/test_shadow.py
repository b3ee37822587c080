"""The shadow client against the real shadow rules (`ShadowStore`) through an in-process transport."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.sync import coefficients as coeffs
from agent.sync.loop import SyncLoop
from agent.sync.shadow import COEFFICIENTS, CONFIG, ShadowClient
from agent.sync.shadow_rules import ShadowLimitError, check_state
from cloud.local.shadow_store import ShadowStore
from tests.sync.fake_control import FakeControl
from tests.sync.loopback import LoopbackTransport
from tests.sync.waiting import get_shadow, wait_until

THING = "dev-1"


@dataclass
class Rig:
    loop: SyncLoop
    store: ShadowStore
    transport: LoopbackTransport
    control: FakeControl
    client: ShadowClient

    def connect(self) -> None:
        self.loop.call_sync(self.transport.connect)
        assert wait_until(lambda: all(self.client.synced.values())), self.client.stats
        self.settle()

    def settle(self) -> None:
        """Wait until the client has no request in flight."""
        assert wait_until(lambda: self.loop.call_sync(lambda: not self.client._pending))

    def stored(self, shadow: str) -> dict[str, Any]:
        document = get_shadow(self.store, THING, shadow)
        assert "state" in document, document
        return document

    def cloud(self, shadow: str, state: dict[str, Any]) -> None:
        self.loop.call_sync(lambda: self.transport.cloud_update(THING, shadow, state))
        self.settle()


def make_rig(loop: SyncLoop, tmp_path: Path, store: ShadowStore, control: FakeControl | None = None) -> Rig:
    transport = LoopbackTransport(loop, store)
    control = control or FakeControl()
    client = ShadowClient(loop, transport, control, THING, tmp_path, request_timeout_s=0.5)
    loop.call_sync(client.start)
    return Rig(loop, store, transport, control, client)


@pytest.fixture
def store() -> Iterator[ShadowStore]:
    s = ShadowStore(":memory:")
    yield s
    s.close()


@pytest.fixture
def rig(loop: SyncLoop, tmp_path: Path, store: ShadowStore) -> Rig:
    return make_rig(loop, tmp_path, store)


def seed(store: ShadowStore, shadow: str, state: dict[str, Any]) -> None:
    (reply, *_) = store.handle("update", THING, shadow, json.dumps({"state": state}).encode())
    assert reply.suffix == "update/accepted", reply.document


def test_first_connection_creates_both_shadows_with_the_applied_state(rig: Rig) -> None:
    rig.connect()
    reported = rig.stored(CONFIG)["state"]["reported"]
    assert reported["mu"] == rig.control.settings["mu"]
    assert reported["agent_version"] == "0.1.0"
    assert reported["profile"] == "headphone-ff-48k"
    assert reported["status"]["attenuation_db"] == 12.5
    assert "last_rejection" not in reported
    assert rig.stored(COEFFICIENTS)["state"]["reported"]["encoding"] == "f16-zlib-b64"


def test_desired_held_while_offline_is_applied_on_connect(rig: Rig) -> None:
    seed(rig.store, CONFIG, {"desired": {"mu": 0.01, "taps": 128, "mode": "passthrough"}})
    rig.connect()
    assert rig.control.settings["mu"] == 0.01
    assert rig.control.settings["taps"] == 128
    assert rig.control.settings["mode"] == "passthrough"
    doc = rig.stored(CONFIG)
    assert "delta" not in doc["state"]
    assert doc["state"]["reported"]["taps"] == 128


def test_delta_is_applied_and_reported(rig: Rig) -> None:
    rig.connect()
    rig.cloud(CONFIG, {"desired": {"mu": 0.2, "offload": True}})
    assert rig.control.settings["mu"] == 0.2 and rig.control.settings["offload"] is True
    doc = rig.stored(CONFIG)
    assert doc["state"]["reported"]["mu"] == 0.2
    assert "delta" not in doc["state"]


def test_out_of_bounds_value_is_rejected_reported_and_running_value_stays(rig: Rig) -> None:
    rig.connect()
    before_mu = rig.control.settings["mu"]
    rig.cloud(CONFIG, {"desired": {"mu": 3.0, "taps": 64}})
    assert rig.control.settings["mu"] == before_mu
    assert rig.control.settings["taps"] == 64  # the valid value in the same document still applies
    rejection = rig.stored(CONFIG)["state"]["reported"]["last_rejection"]
    assert rejection["field"] == "mu"
    assert "outside [0.0001, 1]" in rejection["reason"]
    assert isinstance(rejection["at"], int)
    # a later valid desired document clears the rejection
    rig.cloud(CONFIG, {"desired": {"mu": 0.3}})
    assert rig.control.settings["mu"] == 0.3
    assert "last_rejection" not in rig.stored(CONFIG)["state"]["reported"]


def test_unknown_and_nested_desired_keys_are_rejected_without_touching_the_engine(rig: Rig) -> None:
    rig.connect()
    applied_before = len(rig.control.applied)
    rig.cloud(CONFIG, {"desired": {"volume": 11, "mu": {"deep": 1}}})
    assert len(rig.control.applied) == applied_before
    assert rig.stored(CONFIG)["state"]["reported"]["last_rejection"]["field"] in ("volume", "mu")


def test_delta_older_than_the_version_held_is_discarded(rig: Rig) -> None:
    rig.connect()
    held = rig.client.versions[CONFIG]
    stale = {"version": held - 1, "state": {"mu": 0.5}, "timestamp": 1}
    topic = f"$aws/things/{THING}/shadow/name/config/update/delta"
    rig.loop.call_sync(lambda: rig.client._on_message(topic, json.dumps(stale).encode()))
    assert rig.control.settings["mu"] != 0.5
    assert rig.client.stats.stale_discarded == 1


def test_version_conflict_regets_and_merges_cloud_desired(rig: Rig) -> None:
    rig.connect()

    def cloud_writes_first(_topic: str, _payload: bytes) -> None:
        seed(rig.store, CONFIG, {"desired": {"taps": 32}})  # no broadcast: only the store knows

    rig.transport.before_request = cloud_writes_first
    rig.loop.call_sync(rig.client.report_config)
    rig.settle()
    assert rig.client.stats.conflicts == 1
    assert rig.control.settings["taps"] == 32
    doc = rig.stored(CONFIG)
    assert doc["state"]["reported"]["taps"] == 32
    assert rig.client.versions[CONFIG] == doc["version"]


def test_reported_keys_the_device_does_not_own_are_deleted(
    store: ShadowStore, loop: SyncLoop, tmp_path: Path
) -> None:
    seed(store, CONFIG, {"reported": {"legacy_gain": 3, "mu": 0.9}})
    rig = make_rig(loop, tmp_path, store)
    rig.connect()
    reported = rig.stored(CONFIG)["state"]["reported"]
    assert "legacy_gain" not in reported
    assert reported["mu"] == rig.control.settings["mu"]  # the device wins for reported


def test_throttled_requests_are_retried_until_accepted(loop: SyncLoop, tmp_path: Path) -> None:
    store = ShadowStore(":memory:", requests_per_s=4.0, burst=1.0)
    rig = make_rig(loop, tmp_path, store)
    rig.connect()
    assert rig.client.stats.throttled >= 1
    assert rig.stored(CONFIG)["state"]["reported"]["mu"] == rig.control.settings["mu"]
    store.close()


def test_unanswered_request_is_sent_again(rig: Rig) -> None:
    rig.transport.hold_replies = 1  # the first get is answered into the void
    rig.connect()
    assert rig.client.stats.timeouts >= 1
    assert "reported" in rig.stored(CONFIG)["state"]


def test_coefficients_are_reported_inline_when_they_fit(rig: Rig) -> None:
    rig.connect()
    reported = rig.stored(COEFFICIENTS)["state"]["reported"]
    arrays = coeffs.decode(reported, {"w": (2, 64)})
    np.testing.assert_allclose(arrays["w"], rig.control.coeffs["w"], atol=1e-4)
    assert reported["version"] == 1


def test_large_coefficients_are_kept_locally_and_reported_by_pointer(
    loop: SyncLoop, tmp_path: Path, store: ShadowStore
) -> None:
    rig = make_rig(loop, tmp_path, store, FakeControl(coefficient_shapes={"w": (2, 2048)}))
    rig.connect()
    reported = rig.stored(COEFFICIENTS)["state"]["reported"]
    assert "data" not in reported
    assert reported["s3_key"].startswith(f"coefficients/{THING}/1-")
    kept = tmp_path / "shadow" / "coefficients" / reported["s3_key"].rsplit("/", 1)[1]
    with np.load(kept) as npz:
        np.testing.assert_array_equal(npz["w"], rig.control.coeffs["w"])


def test_pushed_coefficient_set_is_validated_loaded_and_desired_cleared(rig: Rig) -> None:
    rig.connect()
    pushed = {"w": np.full((2, 64), 0.125, dtype=np.float32)}
    rig.cloud(COEFFICIENTS, {"desired": coeffs.encode(pushed, 40).document()})
    assert wait_until(lambda: len(rig.control.loaded) == 1)
    rig.settle()
    np.testing.assert_array_equal(rig.control.coeffs["w"], pushed["w"])
    state = rig.stored(COEFFICIENTS)["state"]
    assert "desired" not in state
    assert state["reported"]["version"] == 40


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(checksum="0" * 64), "coefficients.checksum"),
        (lambda d: d.update(shapes={"w": [2, 63]}), "coefficients.shapes.w"),
        (lambda d: d.update(shapes={"v": [2, 64]}), "coefficients.shapes"),
        (lambda d: d.update(encoding="f64-raw"), "coefficients.encoding"),
        (lambda d: d.update(data="!!!not base64"), "coefficients.data"),
    ],
)
def test_bad_pushed_coefficient_set_is_rejected_and_not_loaded(rig: Rig, mutate: Any, field: str) -> None:
    rig.connect()
    doc = coeffs.encode({"w": np.full((2, 64), 0.5)}, 9).document()
    mutate(doc)
    rig.cloud(COEFFICIENTS, {"desired": doc})
    assert wait_until(lambda: rig.client.coefficients_rejection is not None)
    rig.settle()
    assert rig.control.loaded == []
    assert rig.client.coefficients_rejection["field"] == field
    assert rig.stored(COEFFICIENTS)["state"]["reported"]["last_rejection"]["field"] == field


def test_state_over_8_kb_or_too_deep_is_refused_before_sending() -> None:
    with pytest.raises(ShadowLimitError) as too_big:
        check_state({"reported": {"blob": "x" * 8200}})
    assert too_big.value.code == 413
    deep: dict[str, Any] = {"v": 1}
    for _ in range(6):
        deep = {"d": deep}
    with pytest.raises(ShadowLimitError) as too_deep:
        check_state({"reported": deep})
    assert too_deep.value.code == 400
    assert check_state({"reported": {"mu": 0.1}}) > 0


def test_client_tokens_are_unique_and_within_64_bytes(rig: Rig) -> None:
    rig.connect()
    tokens = [
        json.loads(p)["clientToken"] for t, p in rig.transport.published if t.startswith("$aws/things/")
    ]
    assert len(tokens) == len(set(tokens)) >= 4
    assert all(len(t.encode()) <= 64 for t in tokens)


def test_coefficients_fall_back_to_a_pointer_when_the_service_answers_413(
    loop: SyncLoop, tmp_path: Path
) -> None:
    store = ShadowStore(":memory:", max_state_bytes=2000)  # as if a large desired set took the room
    rig = make_rig(loop, tmp_path, store, FakeControl(coefficient_shapes={"w": (2, 512)}))
    rig.connect()
    reported = rig.stored(COEFFICIENTS)["state"]["reported"]
    assert "data" not in reported and reported["s3_key"].startswith(f"coefficients/{THING}/")
    store.close()
