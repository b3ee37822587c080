"""The control thread: everything around the audio callback that is not the callback.

Every `tick_s` (20 ms) it drains the engine's rings and
- finishes start-up: when the secondary-path identifier is done, builds the Controller on this thread
  (allocation and compilation never happen on the audio thread) and installs it;
- feeds the reference samples to the safety monitor; a detection switches the Controller to
  pass-through through `Controller.apply` (effective at the next block boundary, crossfaded) and emits an
  event; the switch back waits for the hold time or a `resume` command;
- aggregates telemetry and sends a record every `telemetry_interval_s`, plus log-mel frames when the
  offload is on; events for divergence, unexpected callback faults, xrun bursts;
- pings the systemd watchdog only while the audio loop makes progress (the block counter advanced since
  the last ping), and updates STATUS=;
- writes a coefficient checkpoint every `checkpoint_interval_s` (and on stop);
- raises the audio thread's scheduling priority once its id is known (SCHED_FIFO where allowed).

It also implements `agent.ports.ControlPort` for the sync layer; those methods run on the caller's thread
and take `self._lock` (never held by the audio thread) to serialise with the control thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from agent import __version__
from agent.audio.rings import C_BAD_FRAMES, C_NONFINITE_IN, C_UNEXPECTED, W_SAMPLES
from agent.dsp.controller import (
    M_DISTURBANCE_POWER,
    M_DIVERGENCE_COUNT,
    M_ERROR_POWER,
    M_LIMITER_COUNT,
    M_NONFINITE_COUNT,
    M_OUTPUT_POWER,
    M_REFERENCE_POWER,
    MODE_PASSTHROUGH,
    Controller,
)
from agent.dsp.secondary_path import (
    IdentificationError,
    SecondaryPath,
    SecondaryPathIdentifier,
    secondary_paths_from_dict,
    secondary_paths_to_dict,
)
from agent.engine import STAGE_CONTROL, STAGE_IDENTIFY, STAGE_NAMES, Engine, Silence, Stage
from agent.ports import NullUplink, Uplink
from agent.profiles import Profile
from agent.service.checkpoint import Checkpoint, CheckpointStore
from agent.service.safety_monitor import OverrideChange, SafetyMonitor
from agent.service.sdnotify import Notifier
from agent.service.settings import MODE_NAMES, AgentSettings, merge_desired
from agent.service.telemetry import TelemetryAggregator

log = logging.getLogger(__name__)

COMMAND_TYPES = ("passthrough", "resume", "classification", "capture")
EMERGENCY_LABELS = ("siren", "alarm", "horn")
XRUN_BURST = 10  # xruns in one telemetry interval that make an event


class ControlService:
    """The control thread and the daemon's `ControlPort` (see module docstring)."""

    def __init__(
        self,
        profile: Profile,
        engine: Engine,
        settings: AgentSettings,
        *,
        uplink: Uplink | None = None,
        notifier: Notifier | None = None,
        store: CheckpointStore | None = None,
        checkpoint_interval_s: float = 60.0,
        safety_enabled: bool = True,
        hold_s: float = 5.0,
        realtime_priority: int = 0,
        watchdog_interval_s: float | None = None,
        tick_s: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.profile = profile
        self.engine = engine
        self.settings = settings
        self.uplink: Uplink = uplink if uplink is not None else NullUplink()
        self.notifier = notifier if notifier is not None else Notifier(address="")
        self.store = store
        self.checkpoint_interval_s = checkpoint_interval_s
        self.realtime_priority = realtime_priority
        self.watchdog_interval_s = watchdog_interval_s
        self.tick_s = tick_s
        self._clock = clock
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.safety = SafetyMonitor(profile.audio.sample_rate_hz, hold_s, enabled=safety_enabled)
        self.telemetry = TelemetryAggregator(profile.audio.block_period_s)
        self.controller: Controller | None = None
        self.identifier: SecondaryPathIdentifier | None = None
        self.secondary: list[SecondaryPath] = []
        self._pending_coefficients: dict[str, np.ndarray] | None = None
        self.started_at = clock()
        self.ready = threading.Event()  # set after the first processed block
        self.last_error: str | None = None
        self.last_classification: dict[str, Any] | None = None
        self._effective_mode = settings.controller.mode
        self._last_telemetry = clock()
        self._last_checkpoint = clock()
        self._last_ping = clock()
        self._ping_blocks = 0
        self._counters_seen = {"divergence": 0.0, "unexpected": 0, "bad_frames": 0, "nonfinite_in": 0}
        self._priority_done = False
        self.identification_failures = 0
        self._retry_identification_at = float("inf")
        self.watchdog_pings = 0
        self.last_telemetry: dict[str, Any] | None = None
        self._captures: list[tuple[Path, int, int]] = []

    # ------------------------------------------------------------------ start-up
    def prepare(self) -> str:
        """Install the first stage: a warm controller from the last good checkpoint, or the identifier.

        Returns "warm" or "identify". Runs before the audio stream starts.
        """
        ckpt = self.store.load() if self.store is not None else None
        secondary = self._checkpoint_secondary(ckpt)
        if ckpt is not None and secondary is not None:
            self._build_controller(secondary, ckpt.coefficients)
            log.info("warm start from the checkpoint written at %s", ckpt.meta.get("written_at"))
            return "warm"
        self._warm_up(SecondaryPathIdentifier(self.profile))
        self.identifier = SecondaryPathIdentifier(self.profile)
        self.engine.install(Stage(self.identifier, STAGE_IDENTIFY))
        log.info("identifying the secondary path (%.1f s of probe noise)", self.profile.controller.probe_s)
        return "identify"

    def _checkpoint_secondary(self, ckpt: Checkpoint | None) -> list[SecondaryPath] | None:
        if ckpt is None:
            return None
        if ckpt.meta.get("profile") != self.profile.name:
            log.warning(
                "checkpoint is for profile %r, not %r; identifying again",
                ckpt.meta.get("profile"),
                self.profile.name,
            )
            return None
        try:
            paths = secondary_paths_from_dict(ckpt.secondary)
        except ValueError as exc:
            log.warning("checkpoint holds no usable secondary path (%s); identifying again", exc)
            return None
        if len(paths) != self.profile.channels.controllers:
            log.warning("checkpoint has %d secondary paths, the profile %d; identifying again", len(paths),
                        self.profile.channels.controllers)  # fmt: skip
            return None
        return paths

    def _build_controller(
        self, secondary: list[SecondaryPath], coefficients: dict[str, np.ndarray] | None = None
    ) -> None:
        """Build and install the Controller (control thread; allocation and compilation happen here)."""
        # Compiling can take long on a cold cache: do it without the lock, so the cloud's calls and the
        # safety override are never held up; settings that changed meanwhile are applied below.
        settings = self._effective_settings()
        self._warm_up(Controller(self.profile, secondary, settings))
        controller = Controller(self.profile, secondary, settings)
        with self._lock:
            effective = self._effective_settings()
            if effective != settings:
                controller.apply(effective)
            for coeffs, what in ((coefficients, "checkpoint"), (self._pending_coefficients, "cloud")):
                if coeffs:
                    try:
                        controller.load_coefficients(coeffs)
                    except ValueError as exc:
                        log.warning("coefficients from the %s not loaded: %s", what, exc)
            self._pending_coefficients = None
            self.controller = controller
            self.secondary = list(secondary)
            metric_index = np.array(
                [M_ERROR_POWER, M_REFERENCE_POWER, M_OUTPUT_POWER, M_DISTURBANCE_POWER], dtype=np.int64
            )
            self.engine.install(Stage(controller, STAGE_CONTROL, controller.metrics, metric_index))
            self.identifier = None

    def _warm_up(self, throwaway: Any) -> None:
        """Run one silent block through a throwaway processor of the same kind, so its kernel is
        compiled or loaded from numba's cache here, on the control thread, never on the audio thread."""
        ch = self.profile.channels
        block = self.profile.audio.block_size
        indata = np.zeros((block, ch.input_channels), dtype=np.float32)
        outdata = np.zeros((block, ch.output_channels), dtype=np.float32)
        t0 = time.perf_counter()
        throwaway.process(indata, outdata)
        log.debug("%s kernel ready in %.2f s", type(throwaway).__name__, time.perf_counter() - t0)

    # ------------------------------------------------------------------ thread
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="anc-control", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 1.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _run(self) -> None:
        next_tick = self._clock()
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # the control thread must survive a bad tick; the watchdog notices
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("control tick failed")
            next_tick += self.tick_s
            delay = next_tick - self._clock()
            if delay < -1.0:
                next_tick = self._clock()
            self._stop.wait(max(0.0, delay))

    def tick(self) -> None:
        """One pass of the control loop (see module docstring)."""
        now = self._clock()
        blocks = self.engine.blocks
        if blocks and not self.ready.is_set():
            self.ready.set()
            self.notifier.ready(self.status_line())
        self._raise_priority()
        if self.identifier is not None and self.identifier.done:
            self._finish_identification()
        elif self.controller is None and self.identifier is None and now >= self._retry_identification_at:
            # A failed identification is retried with a fresh probe after a back-off (2, 4, ... 60 s).
            self.identifier = SecondaryPathIdentifier(self.profile, seed=self.identification_failures)
            self.engine.install(Stage(self.identifier, STAGE_IDENTIFY))
        self.telemetry.add(self.engine.rings.drain_blocks())
        samples = self.engine.rings.drain_samples()
        self._capture(samples)
        for change in self.safety.push(samples):
            self._on_override(change)
        self._check_counters()
        if now - self._last_telemetry >= self.settings.telemetry_interval_s:
            self._last_telemetry = now
            self._send_telemetry()
        ping_due = self.watchdog_interval_s is not None and now - self._last_ping >= self.watchdog_interval_s
        if ping_due and blocks > self._ping_blocks:  # only while the audio loop makes progress
            self.notifier.watchdog()
            self.watchdog_pings += 1
            self._ping_blocks = blocks
            self._last_ping = now
        if self.store is not None and now - self._last_checkpoint >= self.checkpoint_interval_s:
            self._last_checkpoint = now
            self.checkpoint()

    def _finish_identification(self) -> None:
        identifier = self.identifier
        assert identifier is not None
        self.engine.install(Stage(Silence(), STAGE_IDENTIFY))
        try:
            secondary = identifier.result()
        except (IdentificationError, ValueError) as exc:
            # A dead mic or speaker: say so, stay silent, probe again later; never cancel with a guessed path.
            self.identification_failures += 1
            log.error("secondary-path identification failed (%s); probing again", exc)
            self.uplink.event({"type": "identification_failed", "reason": str(exc)})
            self.last_error = f"identification: {exc}"
            self.identifier = None
            self._retry_identification_at = self._clock() + min(60.0, 2.0**self.identification_failures)
            return
        t0 = time.perf_counter()
        self._build_controller(secondary)
        log.info(
            "secondary path identified (delays %s samples); controller ready in %.2f s",
            [p.delay_samples for p in secondary], time.perf_counter() - t0,
        )  # fmt: skip
        self.uplink.event({"type": "identified", "delay_samples": [int(p.delay_samples) for p in secondary]})

    def _raise_priority(self) -> None:
        tid = self.engine.audio_thread_id
        if self._priority_done or not tid:
            return
        self._priority_done = True
        if self.realtime_priority <= 0 or not hasattr(os, "sched_setscheduler"):
            return
        try:
            os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(self.realtime_priority))
            log.info("audio thread %d runs SCHED_FIFO priority %d", tid, self.realtime_priority)
        except OSError as exc:
            log.info(
                "audio thread keeps its priority (SCHED_FIFO %d not allowed: %s)", self.realtime_priority, exc
            )

    # ------------------------------------------------------------------ mode and safety
    def _effective_settings(self) -> Any:
        mode = MODE_PASSTHROUGH if self.safety.override else self.settings.controller.mode
        return replace(self.settings.controller, mode=mode)

    def _apply_effective(self) -> None:
        with self._lock:
            effective = self._effective_settings()
            self._effective_mode = effective.mode
            if self.controller is not None:
                self.controller.apply(effective)

    def _on_override(self, change: OverrideChange) -> None:
        self._apply_effective()
        event = change.to_event()
        event["switched_at_s"] = round(self.engine.counter(W_SAMPLES) / self.profile.audio.sample_rate_hz, 3)
        event["mode"] = MODE_NAMES[self._effective_mode]
        log.warning("safety: %s", event)
        self.uplink.event(event)
        self.notifier.status(self.status_line())

    @property
    def effective_mode(self) -> str:
        return MODE_NAMES[self._effective_mode]

    # ------------------------------------------------------------------ telemetry and events
    def _check_counters(self) -> None:
        seen = self._counters_seen
        for key, index in (
            ("unexpected", C_UNEXPECTED),
            ("bad_frames", C_BAD_FRAMES),
            ("nonfinite_in", C_NONFINITE_IN),
        ):
            value = self.engine.counter(index)
            if value > seen[key]:
                self.uplink.event({"type": f"callback_{key}", "count": value, "new": value - seen[key]})
                if key == "unexpected":
                    log.error("the processing stage raised in %d blocks (output silenced)", value - seen[key])
                seen[key] = value
        if self.controller is not None:
            div = float(self.controller.metrics[M_DIVERGENCE_COUNT])
            if div > seen["divergence"]:
                self.uplink.event({"type": "divergence", "count": int(div)})
                log.warning("controller divergence guard fired (total %d)", int(div))
                seen["divergence"] = div

    def _send_telemetry(self) -> None:
        stage = self.engine.stage.code
        mode = self.effective_mode if stage == STAGE_CONTROL else "off"
        extra: dict[str, Any] = {"stage": STAGE_NAMES[stage], "safety_override": self.safety.override}
        if self.controller is not None:
            m = self.controller.metrics
            extra.update(
                divergence_count=int(m[M_DIVERGENCE_COUNT]),
                limiter_count=int(m[M_LIMITER_COUNT]),
                nonfinite_count=int(m[M_NONFINITE_COUNT]),
            )
        extra["callback_faults"] = self.engine.counter(C_UNEXPECTED)
        rec = self.telemetry.record(mode, extra)
        rec["mode"] = self.effective_mode
        self.last_telemetry = rec
        self.uplink.telemetry(rec)
        if rec["xruns"] >= XRUN_BURST:
            self.uplink.event({"type": "xrun_burst", "xruns": rec["xruns"], "kinds": rec["xrun_kinds"]})
        self.notifier.status(self.status_line())
        if self.settings.offload:
            frames = self.safety.take_frames()
            if frames.shape[0]:
                self.uplink.features(
                    {
                        "seq": rec["seq"],
                        "ts": rec["ts"],
                        "sample_rate_hz": self.profile.audio.sample_rate_hz,
                        "n_mels": int(frames.shape[1]),
                        "hop_s": self.safety.features.hop / self.profile.audio.sample_rate_hz,
                        "frames_db": np.round(frames, 1).tolist(),
                    }
                )
        else:
            self.safety.take_frames()

    def status_line(self) -> str:
        att = self.last_telemetry.get("attenuation_db") if self.last_telemetry else None
        stage = STAGE_NAMES[self.engine.stage.code]
        text = f"mode={self.effective_mode} stage={stage}"
        text += f" attenuation={att:.1f}dB" if isinstance(att, float) else " attenuation=n/a"
        if self.safety.override:
            text += f" safety={self.safety.override_label or 'command'}"
        return text

    # ------------------------------------------------------------------ checkpoints and captures
    def checkpoint(self) -> Path | None:
        """Write a checkpoint now (no-op before the controller exists or without a store)."""
        if self.store is None or self.controller is None:
            return None
        with self._lock:
            coeffs = self.controller.coefficients()
            meta = {
                "profile": self.profile.name,
                "agent_version": __version__,
                "settings": self.settings.to_shadow(),
            }
            ckpt = Checkpoint(
                coefficients=coeffs,
                secondary=secondary_paths_to_dict(self.secondary),
                meta=meta,
            )
        try:
            return self.store.save(ckpt)
        except OSError as exc:
            self.last_error = f"checkpoint: {exc}"
            log.error("checkpoint not written: %s", exc)
            return None

    def _capture(self, samples: np.ndarray) -> None:
        if not self._captures or samples.shape[0] == 0:
            return
        done = []
        for i, (path, need, have) in enumerate(self._captures):
            take = samples[: max(0, need - have)]
            with path.open("ab") as f:
                f.write(take.astype("<f4").tobytes())
            self._captures[i] = (path, need, have + take.shape[0])
            if have + take.shape[0] >= need:
                done.append(i)
        for i in reversed(done):
            path, need, _ = self._captures.pop(i)
            self.uplink.event(
                {
                    "type": "capture",
                    "path": str(path),
                    "samples": need,
                    "sample_rate_hz": self.profile.audio.sample_rate_hz,
                    "format": "float32le mono, reference mic of controller 0",
                }
            )

    # ------------------------------------------------------------------ ControlPort
    def apply_settings(self, desired: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            new = merge_desired(self.profile, self.settings, desired)
            self.settings = new
            self._apply_effective()
            return new.to_shadow()

    def current_settings(self) -> dict[str, Any]:
        return self.settings.to_shadow()

    def status(self) -> dict[str, Any]:
        tel = self.last_telemetry or {}
        return {
            "agent_version": __version__,
            "profile": self.profile.name,
            "mode": self.settings.mode_name,
            "effective_mode": self.effective_mode,
            "stage": STAGE_NAMES[self.engine.stage.code],
            "safety_override": self.safety.override,
            "safety_label": self.safety.override_label,
            "attenuation_db": tel.get("attenuation_db"),
            "uptime_s": round(self._clock() - self.started_at, 1),
            "blocks": self.engine.blocks,
            "xruns": self.telemetry.total_xruns,
            "last_error": self.last_error,
        }

    def coefficients(self) -> dict[str, np.ndarray]:
        with self._lock:
            return self.controller.coefficients() if self.controller is not None else {}

    def load_coefficients(self, coefficients: dict[str, np.ndarray]) -> None:
        with self._lock:
            if self.controller is None:
                self._pending_coefficients = dict(coefficients)
                return
            self.controller.load_coefficients(coefficients)

    def command(self, command: dict[str, Any]) -> None:
        if not isinstance(command, dict):
            raise ValueError("command: expected a JSON object with a 'type' field")
        kind = command.get("type")
        if kind not in COMMAND_TYPES:
            raise ValueError(f"type: {kind!r} is not allowed (allowed values: {', '.join(COMMAND_TYPES)})")
        with self._lock:
            if kind == "passthrough":
                hold_s = command.get("hold_s", self.safety.hold_s)
                if isinstance(hold_s, bool) or not isinstance(hold_s, int | float) or not 0 <= hold_s <= 3600:
                    raise ValueError(f"hold_s: {hold_s!r} is outside [0, 3600]")
                label = command.get("label")
                if label is not None and not isinstance(label, str):
                    raise ValueError(f"label: {label!r} is not a string")
                change = self.safety.command_passthrough(float(hold_s), label)
                if change is not None:
                    self._on_override(change)
            elif kind == "resume":
                change = self.safety.command_resume()
                if change is not None:
                    self._on_override(change)
            elif kind == "classification":
                label, conf = command.get("label"), command.get("confidence")
                if not isinstance(label, str):
                    raise ValueError(f"label: {label!r} is not a string")
                if conf is not None and (isinstance(conf, bool) or not isinstance(conf, int | float)):
                    raise ValueError(f"confidence: {conf!r} is not a number in [0, 1]")
                self.last_classification = {"label": label, "confidence": conf, "at": time.time()}
            elif kind == "capture":
                seconds = command.get("seconds", 2.0)
                if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= 30:
                    raise ValueError(f"seconds: {seconds!r} is outside (0, 30]")
                if self.store is None:
                    raise ValueError("capture: this agent has no state directory to capture into")
                directory = self.store.state_dir / "captures"
                directory.mkdir(parents=True, exist_ok=True)
                path = directory / f"capture-{int(time.time() * 1000)}.f32"
                path.write_bytes(b"")
                self._captures.append((path, self.profile.audio.samples(float(seconds)), 0))
