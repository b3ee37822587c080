"""The device daemon: wires the engine, an audio backend, the control thread and the sync layer.

Life cycle (`anc-agent run --config PATH`):
1. parse the config (errors exit 2 naming file, field and allowed values), load the profile, check the
   controller overrides against its bounds;
2. build the Engine and the ControlService, which installs a warm Controller from the last good
   checkpoint or starts the secondary-path identification;
3. start the sync layer when a `cloud:` section is present (else records go to a NullUplink);
4. start the audio backend; the control thread sends READY=1 after the first processed block.

Signals: SIGTERM/SIGINT stop cleanly (audio stopped, final checkpoint, sync stopped) within 2 s;
SIGHUP re-reads the config: controller overrides that changed in the file, telemetry interval, feature
offload, safety hold and log level apply without stopping audio (through `Controller.apply`); a change of
profile, backend, state directory, cloud section, safety switch or real-time priority restarts the
pipeline in-process. SIGUSR1 toggles a stall of the simulated/WAV backends (no blocks delivered), a
diagnostic used to prove that the systemd watchdog stops being fed when audio stops.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any

from agent.audio import AudioBackend, AudioBackendError, open_backend
from agent.config import AgentConfig, ConfigError, load_config
from agent.engine import Engine
from agent.profiles import Profile, ProfileError, load_profile
from agent.service.checkpoint import CheckpointStore
from agent.service.control import ControlService
from agent.service.sdnotify import Notifier, watchdog_interval_s
from agent.service.settings import AgentSettings, default_settings, merge_desired

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 2.0
# How long a Python thread may hold the GIL while another waits for it (CPython's default is 5 ms, a
# whole block period and more). The audio callback needs the GIL for its few Python lines; with 0.5 ms
# the control and sync threads hand it over quickly instead of delaying a block by up to 5 ms.
GIL_SWITCH_INTERVAL_S = 0.0005


def tune_interpreter() -> None:
    """Interpreter settings for a process that runs an audio callback next to other Python threads."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


# Config fields whose change needs a new audio pipeline (everything else applies live on SIGHUP).
RESTART_FIELDS = ("profile", "backend", "simulated", "wav", "state_dir", "cloud", "realtime_priority")


def find_start_sync() -> Any:
    """The sync layer's `start_sync(cloud, control, state_dir, profile, base_dir=...)`, or None."""
    for module in ("agent.sync", "agent.sync.client"):
        try:
            fn = getattr(importlib.import_module(module), "start_sync", None)
        except ImportError:
            continue
        if fn is not None:
            return fn
    return None


def resolve(config: AgentConfig) -> tuple[Profile, AgentSettings]:
    """The profile and the start-up settings of `config`; ConfigError names the file and the field."""
    try:
        profile = load_profile(config.profile)
    except ProfileError as exc:
        raise ConfigError(f"{config.source}: profile: {exc}") from exc
    base = default_settings(profile, config.telemetry_interval_s, config.offload_features)
    try:
        settings = merge_desired(profile, base, config.controller)
    except ValueError as exc:
        raise ConfigError(f"{config.source}: controller.{exc}") from exc
    return profile, settings


@dataclass
class Pipeline:
    profile: Profile
    engine: Engine
    backend: AudioBackend
    control: ControlService
    sync: Any
    start_mode: str


class Daemon:
    """One running agent (see module docstring)."""

    def __init__(
        self, config: AgentConfig, notifier: Notifier | None = None, started_at: float | None = None
    ) -> None:
        self.config = config
        self.notifier = notifier if notifier is not None else Notifier()
        self.pipeline: Pipeline | None = None
        self._wake = threading.Event()
        self._stop_requested = False
        self._reload_requested = False
        self._stall_requested = False
        self.stalled = False
        self.started_at = time.monotonic() if started_at is None else started_at
        self.first_block_s: float | None = None

    # ------------------------------------------------------------------ pipeline
    def start(self) -> Pipeline:
        config = self.config
        tune_interpreter()
        profile, settings = resolve(config)
        config.state_dir.mkdir(parents=True, exist_ok=True)
        engine = Engine(profile)
        try:
            backend = open_backend(config.backend, profile, **config.backend_options())
        except (AudioBackendError, ValueError) as exc:
            raise ConfigError(f"{config.source}: {config.backend}: {exc}") from exc
        control = ControlService(
            profile,
            engine,
            settings,
            notifier=self.notifier,
            store=CheckpointStore(config.state_dir),
            checkpoint_interval_s=config.checkpoint_interval_s,
            safety_enabled=config.safety.enabled,
            hold_s=config.safety.hold_s,
            realtime_priority=config.realtime_priority,
            watchdog_interval_s=watchdog_interval_s(),
        )
        start_mode = control.prepare()
        sync = None
        if config.cloud:
            start_sync = find_start_sync()
            if start_sync is None:
                log.warning("a cloud section is configured but this build has no sync layer; running offline")
            else:
                try:
                    sync = start_sync(
                        config.cloud, control, config.state_dir, profile, base_dir=config.source.parent
                    )
                except ValueError as exc:  # CloudConfigError names `cloud.<field>` and the allowed values
                    backend_stop = getattr(backend, "stop", None)
                    if backend_stop is not None:
                        backend_stop()
                    raise ConfigError(f"{config.source}: {exc}") from exc
                control.uplink = sync.uplink
        backend.start(engine.callback)
        control.start()
        self.pipeline = Pipeline(profile, engine, backend, control, sync, start_mode)
        lat = backend.latency
        log.info(
            "running profile %s on the %s backend (%s start), latency in %.1f ms / out %.1f ms",
            profile.name, backend.name, start_mode, 1e3 * lat.input_s, 1e3 * lat.output_s,
        )  # fmt: skip
        return self.pipeline

    def stop(self) -> None:
        """Stop audio, write the final checkpoint, stop the sync layer."""
        p, self.pipeline = self.pipeline, None
        if p is None:
            return
        p.backend.stop()
        p.control.stop()
        path = p.control.checkpoint()
        if path is not None:
            log.info("final checkpoint written to %s", path)
        if p.sync is not None:
            try:
                p.sync.stop(timeout_s=max(0.1, STOP_TIMEOUT_S / 2))
            except Exception:
                log.exception("sync layer did not stop cleanly")

    # ------------------------------------------------------------------ signals
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            self._stop_requested = True
        elif signum == signal.SIGHUP:
            self._reload_requested = True
        elif signum == signal.SIGUSR1:
            self._stall_requested = True
        self._wake.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(sig, self._on_signal)

    def run(self) -> int:
        """Start, then serve signals until asked to stop. Returns the process exit code."""
        self.install_signal_handlers()
        self.start()
        return self.serve()

    def serve(self) -> int:
        """Serve signals until asked to stop, then stop cleanly. Returns the process exit code."""
        while True:
            p = self.pipeline
            if self.first_block_s is None and p is not None and p.control.ready.wait(0.05):
                self.first_block_s = time.monotonic() - self.started_at
                log.info(
                    "first block processed %.2f s after start (%s start)", self.first_block_s, p.start_mode
                )
            self._wake.wait(0.05 if self.first_block_s is None else 0.1)
            self._wake.clear()
            if self._stop_requested:
                break
            if self._reload_requested:
                self._reload_requested = False
                self.reload()
            if self._stall_requested:
                self._stall_requested = False
                self.toggle_stall()
        self.notifier.stopping()
        t0 = time.monotonic()
        self.stop()
        log.info("stopped in %.2f s", time.monotonic() - t0)
        return 0

    def toggle_stall(self) -> None:
        p = self.pipeline
        if p is None:
            return
        want = not self.stalled
        if p.backend.stall(want):
            self.stalled = want
            log.warning("audio backend %s", "stalled (diagnostic)" if want else "resumed")
        else:
            log.warning("the %s backend cannot stall; SIGUSR1 ignored", p.backend.name)

    def reload(self) -> None:
        """Re-read the config file (SIGHUP); apply live what can be, restart the pipeline otherwise."""
        self.notifier.reloading()
        try:
            new = load_config(self.config.source)
            resolve(new)
        except ConfigError as exc:
            log.error("reload rejected, the running configuration stays: %s", exc)
            self.notifier.ready(self.pipeline.control.status_line() if self.pipeline else None)
            return
        old, self.config = self.config, new
        logging.getLogger().setLevel(new.log_level.upper())
        p = self.pipeline
        needs_restart = any(getattr(old, f) != getattr(new, f) for f in RESTART_FIELDS)
        needs_restart = needs_restart or old.safety.enabled != new.safety.enabled
        if p is None or needs_restart:
            log.info("configuration change needs a new audio pipeline; restarting it")
            self.stop()
            self.start()
            self.notifier.ready(self.pipeline.control.status_line() if self.pipeline else None)
            return
        desired = {k: v for k, v in new.controller.items() if old.controller.get(k) != v}
        if new.telemetry_interval_s != old.telemetry_interval_s:
            desired["telemetry_interval_s"] = new.telemetry_interval_s
        if new.offload_features != old.offload_features:
            desired["offload"] = new.offload_features
        p.control.safety.hold_s = new.safety.hold_s
        p.control.checkpoint_interval_s = new.checkpoint_interval_s
        if desired:
            try:
                applied = p.control.apply_settings(desired)
                log.info("reloaded without stopping audio: %s", applied)
            except ValueError as exc:
                log.error("reload: %s: %s; the running settings stay", new.source, exc)
        self.notifier.ready(p.control.status_line())
