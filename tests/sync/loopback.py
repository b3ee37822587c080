"""A transport that talks to a real `ShadowStore` in process: the shadow rules without a broker.

Requests published on shadow topics are handled by the store and its replies delivered to the
subscriptions, as the shadow service would over MQTT. `hold_replies` drops replies (to test timeouts),
`before_request` runs just before the store sees a request (to interleave a cloud write), and
`cloud_update` writes as the cloud would, delivering the resulting delta/documents to the device.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from agent.sync.loop import SyncLoop
from agent.sync.transport import PublishDone, PublishOutcome, SubscribeDone, Transport
from cloud.local.shadow_service import parse_request_topic
from cloud.local.shadow_store import ShadowStore


class LoopbackTransport(Transport):
    def __init__(self, loop: SyncLoop, store: ShadowStore) -> None:
        super().__init__(loop)
        self.store = store
        self.published: list[tuple[str, bytes]] = []
        self.hold_replies = 0
        self.before_request: Callable[[str, bytes], None] | None = None

    def connect(self) -> None:
        self._lib_connected()

    def disconnect(self, timeout_s: float = 5.0) -> None:
        self._lib_disconnected()

    def _send_publish(self, topic: str, payload: bytes, qos: int, done: PublishDone) -> None:
        self.published.append((topic, payload))
        done(PublishOutcome(acked=True, ok=True))
        parsed = parse_request_topic(topic)
        if parsed is None:
            return
        if self.before_request is not None:
            hook, self.before_request = self.before_request, None
            hook(topic, payload)
        operation, thing, shadow = parsed
        replies = self.store.handle(operation, thing, shadow, payload)
        if self.hold_replies > 0:
            self.hold_replies -= 1
            return
        self._deliver(topic.rsplit("/", 1)[0], replies)

    def _send_subscribe(self, topic_filter: str, qos: int, done: SubscribeDone) -> None:
        done(True)

    def _deliver(self, prefix: str, replies: list[Any]) -> None:
        for reply in replies:
            self._lib_message(f"{prefix}/{reply.suffix}", json.dumps(reply.document).encode())

    def cloud_update(self, thing: str, shadow: str, state: dict[str, Any]) -> list[Any]:
        """Write `state` as the cloud would and deliver the broadcasts (delta, documents) to the device."""
        body = json.dumps({"state": state}).encode()
        replies = self.store.handle("update", thing, shadow, body)
        prefix = f"$aws/things/{thing}/shadow/name/{shadow}/update"
        self._deliver(prefix.rsplit("/", 1)[0], [r for r in replies if r.suffix != "update/accepted"])
        return replies
