"""The AWS IoT Device SDK's own shadow client works against the local service unchanged.

A device connects with `awsiot.mqtt_connection_builder.mtls_from_path` (mutual TLS, its own
certificate) and uses `awsiot.iotshadow.IotShadowClient` on a named shadow; the cloud side sets
`desired` from another connection (the privileged service identity).
"""

from __future__ import annotations

import concurrent.futures
import json
import queue
from typing import Any

import awsiot
import pytest
from awscrt import mqtt, mqtt_request_response
from awsiot import iotshadow, mqtt5_client_builder, mqtt_connection_builder

from tests.support.broker import MqttProbe
from tests.support.shadow_service import RunningShadowService

THING = "anc-sn-sdk-0001"
SHADOW = "config"
TIMEOUT_S = 10.0


class Inbox:
    """Callbacks of the SDK land here, one queue per kind of message."""

    def __init__(self) -> None:
        self.queues: dict[str, queue.Queue[Any]] = {}

    def callback(self, kind: str) -> Any:
        q: queue.Queue[Any] = self.queues.setdefault(kind, queue.Queue())
        return q.put

    def next(self, kind: str) -> Any:
        try:
            return self.queues[kind].get(timeout=TIMEOUT_S)
        except queue.Empty:
            raise AssertionError(f"no {kind} message within {TIMEOUT_S} s") from None

    def empty(self, kind: str) -> bool:
        return self.queues[kind].empty()


def test_sdk_shadow_client_gets_delta_reports_and_sees_delta_clear(
    shadow_service: RunningShadowService,
) -> None:
    broker = shadow_service.broker
    cert, key = broker.issue_client(THING)
    connection = mqtt_connection_builder.mtls_from_path(
        endpoint="localhost",
        port=broker.port,
        cert_filepath=str(cert),
        pri_key_filepath=str(key),
        ca_filepath=str(broker.ca_path),
        client_id=THING,
        clean_session=True,
        keep_alive_secs=30,
    )
    connection.connect().result(TIMEOUT_S)
    client = iotshadow.IotShadowClient(connection)
    inbox = Inbox()
    qos = mqtt.QoS.AT_LEAST_ONCE
    names = {"thing_name": THING, "shadow_name": SHADOW}
    subscriptions = [
        client.subscribe_to_get_named_shadow_accepted(
            iotshadow.GetNamedShadowSubscriptionRequest(**names), qos, inbox.callback("get/accepted")
        ),
        client.subscribe_to_get_named_shadow_rejected(
            iotshadow.GetNamedShadowSubscriptionRequest(**names), qos, inbox.callback("get/rejected")
        ),
        client.subscribe_to_update_named_shadow_accepted(
            iotshadow.UpdateNamedShadowSubscriptionRequest(**names), qos, inbox.callback("update/accepted")
        ),
        client.subscribe_to_update_named_shadow_rejected(
            iotshadow.UpdateNamedShadowSubscriptionRequest(**names), qos, inbox.callback("update/rejected")
        ),
        client.subscribe_to_named_shadow_delta_updated_events(
            iotshadow.NamedShadowDeltaUpdatedSubscriptionRequest(**names), qos, inbox.callback("delta")
        ),
        client.subscribe_to_named_shadow_updated_events(
            iotshadow.NamedShadowUpdatedSubscriptionRequest(**names), qos, inbox.callback("documents")
        ),
    ]
    for future, _topic in subscriptions:
        future.result(TIMEOUT_S)
    try:
        # No shadow yet: the SDK parses the 404 error document.
        client.publish_get_named_shadow(
            iotshadow.GetNamedShadowRequest(client_token="g0", **names), qos
        ).result(TIMEOUT_S)
        error = inbox.next("get/rejected")
        assert isinstance(error, iotshadow.ErrorResponse)
        assert (error.code, error.client_token) == (404, "g0")
        assert error.message == f"No shadow exists with name: '{THING}~{SHADOW}'"

        # The cloud asks for a mode and a step size.
        cloud_cert, cloud_key = broker.service_cert()
        with MqttProbe(broker, cloud_cert, cloud_key) as cloud:
            body = {"state": {"desired": {"mode": "anc", "mu": 0.01}}, "clientToken": "cloud-1"}
            cloud.publish(f"$aws/things/{THING}/shadow/name/{SHADOW}/update", json.dumps(body))

        delta = inbox.next("delta")
        assert isinstance(delta, iotshadow.ShadowDeltaUpdatedEvent)
        assert delta.state == {"mode": "anc", "mu": 0.01}
        assert delta.version == 1
        assert set(delta.metadata) == {"mode", "mu"}
        created = inbox.next("documents")
        assert isinstance(created, iotshadow.ShadowUpdatedEvent)
        assert created.previous is None and created.current.version == 1
        assert created.current.state.desired == {"mode": "anc", "mu": 0.01}
        # Every subscriber sees every accepted update, the cloud's included (as on AWS).
        assert inbox.next("update/accepted").client_token == "cloud-1"

        # The device applies it and reports, with the version it saw.
        client.publish_update_named_shadow(
            iotshadow.UpdateNamedShadowRequest(
                state=iotshadow.ShadowState(reported=delta.state),
                client_token="dev-1",
                version=delta.version,
                **names,
            ),
            qos,
        ).result(TIMEOUT_S)
        accepted = inbox.next("update/accepted")
        assert isinstance(accepted, iotshadow.UpdateShadowResponse)
        assert (accepted.client_token, accepted.version) == ("dev-1", 2)
        assert accepted.state.reported == {"mode": "anc", "mu": 0.01}
        assert set(accepted.metadata.reported) == {"mode", "mu"}
        documents = inbox.next("documents")
        assert (documents.previous.version, documents.current.version) == (1, 2)
        assert documents.current.state.reported == documents.current.state.desired

        # A stale version is refused with the SDK's error model.
        client.publish_update_named_shadow(
            iotshadow.UpdateNamedShadowRequest(
                state=iotshadow.ShadowState(reported={"mode": "off"}),
                client_token="dev-2",
                version=1,
                **names,
            ),
            qos,
        ).result(TIMEOUT_S)
        conflict = inbox.next("update/rejected")
        assert (conflict.code, conflict.message, conflict.client_token) == (409, "Version conflict", "dev-2")

        # The delta is gone: GET shows desired == reported and no delta, and no new delta arrived.
        client.publish_get_named_shadow(
            iotshadow.GetNamedShadowRequest(client_token="g1", **names), qos
        ).result(TIMEOUT_S)
        shadow = inbox.next("get/accepted")
        assert isinstance(shadow, iotshadow.GetShadowResponse)
        assert shadow.client_token == "g1" and shadow.version == 2
        assert shadow.state.delta is None
        assert shadow.state.desired == shadow.state.reported == {"mode": "anc", "mu": 0.01}
        assert inbox.empty("delta")
    finally:
        connection.disconnect().result(TIMEOUT_S)


def test_sdk_v2_request_response_client_over_mqtt5(shadow_service: RunningShadowService) -> None:
    """The SDK's newer IotShadowClientV2 (correlates replies by clientToken) on an MQTT 5 client."""
    broker = shadow_service.broker
    thing = "anc-sn-sdk-0002"
    cert, key = broker.issue_client(thing)
    connected: concurrent.futures.Future[None] = concurrent.futures.Future()
    client5 = mqtt5_client_builder.mtls_from_path(
        endpoint="localhost",
        port=broker.port,
        cert_filepath=str(cert),
        pri_key_filepath=str(key),
        ca_filepath=str(broker.ca_path),
        client_id=thing,
        on_lifecycle_connection_success=lambda _event: connected.set_result(None),
    )
    client5.start()
    try:
        connected.result(TIMEOUT_S)
        shadow = iotshadow.IotShadowClientV2(
            client5,
            mqtt_request_response.ClientOptions(
                max_request_response_subscriptions=4,
                max_streaming_subscriptions=2,
                operation_timeout_in_seconds=10,
            ),
        )
        names = {"thing_name": thing, "shadow_name": SHADOW}
        deltas: queue.Queue[iotshadow.ShadowDeltaUpdatedEvent] = queue.Queue()
        subscribed: concurrent.futures.Future[None] = concurrent.futures.Future()

        def on_status(event: mqtt_request_response.SubscriptionStatusEvent) -> None:
            if event.type == mqtt_request_response.SubscriptionStatusEventType.SUBSCRIPTION_ESTABLISHED:
                subscribed.set_result(None)

        stream = shadow.create_named_shadow_delta_updated_stream(
            iotshadow.NamedShadowDeltaUpdatedSubscriptionRequest(**names),
            awsiot.ServiceStreamOptions(
                incoming_event_listener=deltas.put, subscription_status_listener=on_status
            ),
        )
        stream.open()
        subscribed.result(TIMEOUT_S)

        with pytest.raises(awsiot.V2ServiceException) as missing:
            shadow.get_named_shadow(iotshadow.GetNamedShadowRequest(**names)).result(TIMEOUT_S)
        assert missing.value.modeled_error.code == 404

        shadow.update_named_shadow(
            iotshadow.UpdateNamedShadowRequest(state=iotshadow.ShadowState(desired={"taps": 256}), **names)
        ).result(TIMEOUT_S)
        delta = deltas.get(timeout=TIMEOUT_S)
        assert (delta.state, delta.version) == ({"taps": 256}, 1)

        reported = shadow.update_named_shadow(
            iotshadow.UpdateNamedShadowRequest(state=iotshadow.ShadowState(reported=delta.state), **names)
        ).result(TIMEOUT_S)
        assert reported.version == 2 and reported.state.reported == {"taps": 256}

        current = shadow.get_named_shadow(iotshadow.GetNamedShadowRequest(**names)).result(TIMEOUT_S)
        assert current.version == 2 and current.state.delta is None
        assert deltas.empty()
    finally:
        client5.stop()
