"""The local Device Shadow service: AWS IoT's shadow MQTT protocol on any MQTT broker.

Subscribes (QoS 1) to the request topics of every thing, classic and named:
`$aws/things/+/shadow/{get,update,delete}` and `$aws/things/+/shadow/name/+/{get,update,delete}`,
hands each request to `ShadowStore.handle` and publishes its replies (QoS 1) below the same
prefix: `/get|update|delete/accepted|rejected`, `/update/delta`, `/update/documents`, as AWS
IoT Core does (see the topic list in the AWS IoT Developer Guide, "Device Shadow MQTT topics").

The client runs on paho-mqtt's own network thread, keeps a persistent session (requests sent
while the service restarts are delivered when it is back), reconnects by itself when the broker
restarts and subscribes again on every connect. Shadows live in the store's SQLite file.

`anc-cloud local shadow` (see `add_arguments` and `run`) runs it in the foreground.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud.local.shadow_store import OPERATIONS, Operation, ShadowStore

log = logging.getLogger(__name__)

REQUEST_FILTERS: tuple[str, ...] = tuple(f"$aws/things/+/shadow/{op}" for op in OPERATIONS) + tuple(
    f"$aws/things/+/shadow/name/+/{op}" for op in OPERATIONS
)
DEFAULT_CLIENT_ID = "anc-cloud-shadow-service"
KEEPALIVE_S = 30


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    """Where and how the service connects: plain TCP, or TLS with its own client certificate."""

    host: str
    port: int
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> BrokerEndpoint:
        """`mqtt://HOST:PORT` (default port 1883) or `mqtts://HOST:PORT` (default 8883)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(
                f"--broker: {url!r} is not a broker URL; allowed: mqtt://HOST:PORT, mqtts://HOST:PORT"
            )
        port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
        if parts.scheme == "mqtts" and kwargs.get("tls_ca") is None:
            raise ValueError(f"--broker: {url!r} uses TLS, so --tls-ca is required")
        return cls(parts.hostname, port, **kwargs)

    @property
    def uses_tls(self) -> bool:
        return self.tls_ca is not None

    def paho_client(self, client_id: str, *, clean_session: bool) -> mqtt.Client:
        """An MQTT 3.1.1 paho client set up for this endpoint (TLS and credentials), not yet connected."""
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=mqtt.MQTTv311,
        )
        if self.uses_tls:
            client.tls_set(
                ca_certs=str(self.tls_ca),
                certfile=str(self.tls_cert) if self.tls_cert else None,
                keyfile=str(self.tls_key) if self.tls_key else None,
            )
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        return client


def parse_request_topic(topic: str) -> tuple[Operation, str, str | None] | None:
    """(operation, thing, shadow name or None) of a shadow request topic; None for anything else."""
    parts = topic.split("/")
    if len(parts) == 5 and parts[:2] == ["$aws", "things"] and parts[3] == "shadow":
        op, thing, shadow = parts[4], parts[2], None
    elif len(parts) == 7 and parts[:2] == ["$aws", "things"] and parts[3:5] == ["shadow", "name"]:
        op, thing, shadow = parts[6], parts[2], parts[5]
    else:
        return None
    for known in OPERATIONS:
        if op == known:
            return known, thing, shadow
    return None


class ShadowService:
    """The MQTT front end of one `ShadowStore`: start(), wait_ready(), stop().

    With `persistent_session` (the default) the broker keeps the subscriptions and queues requests
    while the service is away; give each running instance its own `client_id`.
    """

    def __init__(
        self,
        store: ShadowStore,
        endpoint: BrokerEndpoint,
        client_id: str = DEFAULT_CLIENT_ID,
        *,
        persistent_session: bool = True,
    ) -> None:
        self._store = store
        self._endpoint = endpoint
        self._ready = threading.Event()
        self._pending_subscribe: int | None = None
        self._client = endpoint.paho_client(client_id, clean_session=not persistent_session)
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    def start(self) -> None:
        """Connect in the background; the client keeps retrying until the broker answers."""
        self._client.connect_async(self._endpoint.host, self._endpoint.port, keepalive=KEEPALIVE_S)
        self._client.loop_start()

    def wait_ready(self, timeout_s: float) -> bool:
        """True once connected and subscribed (again, after a reconnect) within `timeout_s`."""
        return self._ready.wait(timeout_s)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def stop(self) -> None:
        self._ready.clear()
        self._client.disconnect()
        self._client.loop_stop()

    # -- paho callbacks (network thread)

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.warning("shadow service: broker refused the connection: %s", reason)
            return
        log.info("shadow service: connected to %s:%d", self._endpoint.host, self._endpoint.port)
        sock = client.socket()
        if sock is not None:  # replies are small: send each at once instead of waiting for more (Nagle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _result, mid = client.subscribe([(topic, 1) for topic in REQUEST_FILTERS])
        self._pending_subscribe = mid

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: Any, mid: int, reasons: Any, _props: Any
    ) -> None:
        if mid != self._pending_subscribe:
            return
        failed = [r for r in reasons if r.is_failure]
        if failed:
            log.error("shadow service: subscription refused (check the broker ACL): %s", failed)
            return
        self._ready.set()

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        self._ready.clear()
        log.info("shadow service: disconnected (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        parsed = parse_request_topic(message.topic)
        if parsed is None:
            return
        operation, thing, shadow = parsed
        try:
            replies = self._store.handle(operation, thing, shadow, message.payload)
        except Exception:  # keep the network thread alive whatever one request does
            log.exception("shadow service: %s on %s failed", operation, message.topic)
            return
        prefix = message.topic.rsplit("/", 1)[0]
        for reply in replies:
            payload = json.dumps(reply.document, separators=(",", ":"))
            client.publish(f"{prefix}/{reply.suffix}", payload, qos=1)
        if log.isEnabledFor(logging.DEBUG):
            first = replies[0].document
            outcome = (
                f"v{first['version']}"
                if "version" in first
                else f"{first.get('code')} {first.get('message')}"
            )
            name = thing if shadow is None else f"{thing}~{shadow}"
            log.debug("%s %s -> %s (%s)", operation, name, ", ".join(r.suffix for r in replies), outcome)


# ---------------------------------------------------------------- `anc-cloud local shadow`


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker", required=True, help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    parser.add_argument("--tls-ca", type=Path, help="CA certificate that signed the broker's certificate")
    parser.add_argument("--tls-cert", type=Path, help="the service's client certificate")
    parser.add_argument("--tls-key", type=Path, help="the service's private key")
    parser.add_argument("--username", help="broker user name (plain local listeners)")
    parser.add_argument("--password", help="broker password")
    parser.add_argument(
        "--client-id", default=DEFAULT_CLIENT_ID, help="MQTT client id (default: %(default)s)"
    )
    parser.add_argument(
        "--db",
        type=Path,
        default=Path("shadows.sqlite3"),
        help="SQLite file of the shadows (default: %(default)s)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log one line per request")


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM or SIGINT, then disconnect and close the database."""
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if (args.tls_cert is None) != (args.tls_key is None):
        raise SystemExit("anc-cloud local shadow: --tls-cert and --tls-key go together")
    if args.tls_cert is not None and args.tls_ca is None:
        raise SystemExit("anc-cloud local shadow: --tls-cert needs --tls-ca")
    try:
        endpoint = BrokerEndpoint.from_url(
            args.broker,
            tls_ca=args.tls_ca,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            username=args.username,
            password=args.password,
        )
    except ValueError as err:
        raise SystemExit(f"anc-cloud local shadow: {err}") from None
    args.db.parent.mkdir(parents=True, exist_ok=True)
    store = ShadowStore(args.db)
    service = ShadowService(store, endpoint, client_id=args.client_id)
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("shadow service: %s received, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    service.start()
    log.info("shadow service: shadows in %s, broker %s", args.db, args.broker)
    stop.wait()
    service.stop()
    store.close()
    return 0
