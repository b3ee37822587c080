"""Starts the agent's cloud sync: `start_sync(...) -> CloudSync`, the daemon's one entry point.

    sync = start_sync(cloud_section, control, state_dir, profile, base_dir=config_dir)
    control_thread_uplink = sync.uplink   # agent.ports.Uplink; calls never block
    ...
    sync.stop(timeout_s=5.0)

Wires, on one sync loop thread: the transport chosen by `cloud.transport` (awsiot or paho), the disk
spool, the publisher (telemetry/events/features), the shadow client (config and coefficients) and the
command subscription (`anc/<thing>/commands`: parsed, then `ControlPort.command`; a refused command is
answered with a `command_rejected` event). Nothing here waits for the network: connecting, reconnecting
and sending happen on the loop while the caller carries on (ANC never depends on the network).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import DEFAULT_CONFIG_PATH
from agent.ports import ControlPort, Uplink
from agent.profiles import Profile
from agent.sync.config import CloudConfig, parse_cloud_config
from agent.sync.loop import SyncLoop
from agent.sync.publisher import Publisher
from agent.sync.shadow import ShadowClient
from agent.sync.spool import Spool
from agent.sync.transport import Transport

log = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 16 * 1024


def make_transport(config: CloudConfig, loop: SyncLoop) -> Transport:
    """The transport named by `config.transport`."""
    if config.transport == "paho":
        from agent.sync.paho_transport import PahoTransport

        return PahoTransport(loop, config)
    from agent.sync.awsiot_transport import AwsIotTransport

    return AwsIotTransport(loop, config)


def parse_command(payload: bytes) -> dict[str, Any]:
    """A command document as a dict with a string `type`; ValueError naming what is wrong."""
    if len(payload) > MAX_COMMAND_BYTES:
        raise ValueError(f"command: {len(payload)} bytes is over the {MAX_COMMAND_BYTES}-byte limit")
    try:
        doc = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"command: not valid JSON ({type(exc).__name__})") from exc
    if not isinstance(doc, dict):
        raise ValueError("command: expected a JSON object with a `type`")
    if not isinstance(doc.get("type"), str) or not doc["type"]:
        raise ValueError("command.type: missing (a non-empty string is required)")
    return doc


class CommandHandler:
    """`anc/<thing>/commands` -> ControlPort.command, on the loop thread."""

    def __init__(self, control: ControlPort, uplink: Uplink) -> None:
        self._control = control
        self._uplink = uplink
        self.handled = 0
        self.rejected = 0

    def __call__(self, _topic: str, payload: bytes) -> None:
        kind = None
        try:
            command = parse_command(payload)
            kind = command["type"]
            self._control.command(command)
            self.handled += 1
        except ValueError as exc:
            self._reject(kind, str(exc))
        except Exception as exc:  # a fault behind the port must not stop the sync loop
            log.exception("ControlPort.command failed")
            self._reject(kind, f"internal error: {type(exc).__name__}")

    def _reject(self, kind: str | None, reason: str) -> None:
        self.rejected += 1
        log.warning("command refused: %s", reason)
        self._uplink.event({"type": "command_rejected", "command_type": kind, "reason": reason[:200]})


@dataclass
class CloudSync:
    """A running sync layer. `uplink` is what the control thread sends through."""

    config: CloudConfig
    loop: SyncLoop
    transport: Transport
    spool: Spool
    publisher: Publisher
    shadow: ShadowClient
    commands: CommandHandler

    @property
    def uplink(self) -> Uplink:
        return self.publisher

    @property
    def connected(self) -> bool:
        return self.transport.connected

    def report_state(self) -> None:
        """Ask for a fresh `config` and `coefficients` report (e.g. after a local change of mode or a
        checkpoint restore). Safe from any thread; returns at once."""

        def report() -> None:
            self.shadow.report_config()
            self.shadow.report_coefficients()

        self.loop.post(report)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Disconnect and end the sync thread; unsent messages stay in the spool for the next start."""

        def shut() -> None:
            self.shadow.stop()
            self.transport.disconnect(timeout_s / 2)

        try:
            self.loop.call_sync(shut, timeout_s)
        except TimeoutError:
            log.warning("sync layer did not disconnect within %.1f s", timeout_s)
        self.loop.stop(timeout_s)
        self.spool.close()


def start_sync(
    cloud: dict[str, Any] | CloudConfig,
    control: ControlPort,
    state_dir: Path,
    profile: Profile,
    *,
    base_dir: Path | None = None,
) -> CloudSync:
    """Parse the `cloud:` section, open the spool in `state_dir`, start the sync thread and begin
    connecting. Returns at once.

    Relative file paths resolve against `base_dir`: pass the directory of the agent.yaml the section came
    from (provisioning writes paths relative to it); the default is the directory of the standard
    `/etc/anc-agent/agent.yaml`.

    `profile` is the running firmware profile; desired values are judged against its bounds by
    `control.apply_settings`. Raises CloudConfigError (naming the field) on a bad section.
    """
    config = (
        cloud
        if isinstance(cloud, CloudConfig)
        else parse_cloud_config(cloud, base_dir or DEFAULT_CONFIG_PATH.parent)
    )
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    spool = Spool(config.spool_file(state_dir), int(config.spool_max_mb * 1024 * 1024))
    loop = SyncLoop().start()
    log.info("cloud sync for %s (profile %s) via %s", config.thing_name, profile.name, config.transport)

    def build() -> CloudSync:
        transport = make_transport(config, loop)
        publisher = Publisher(loop, transport, spool, config)
        shadow = ShadowClient(
            loop,
            transport,
            control,
            config.thing_name,
            state_dir,
            coefficients_interval_s=config.coefficients_interval_s,
        )
        commands = CommandHandler(control, publisher)
        transport.subscribe(f"anc/{config.thing_name}/commands", 1, commands)
        shadow.start()
        transport.connect()
        return CloudSync(config, loop, transport, spool, publisher, shadow, commands)

    try:
        sync = loop.call_sync(build)
    except BaseException:
        loop.stop(1.0)
        spool.close()
        raise
    assert isinstance(sync, CloudSync)
    return sync
