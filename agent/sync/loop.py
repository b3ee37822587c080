"""The sync layer's own thread: one queue of work items and a heap of timers.

MQTT libraries call back from their network threads; those callbacks only `post` work here, so the
shadow client, the spool and the publisher run on one thread and need no locks among themselves.
Other actors (the control thread calling the uplink) also only `post`, so they never block on I/O.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Work = Callable[[], None]


@dataclass(order=True)
class Timer:
    """A scheduled call; `cancel()` makes it a no-op."""

    due_s: float
    order: int
    work: Work = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class SyncLoop:
    """Runs posted work and due timers on one daemon thread, in order; a failing item is logged."""

    def __init__(self, name: str = "anc-sync", clock: Callable[[], float] = time.monotonic) -> None:
        self._queue: queue.SimpleQueue[Work | None] = queue.SimpleQueue()
        self._timers: list[Timer] = []
        self._timer_lock = threading.Lock()
        self._order = itertools.count()
        self._clock = clock
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> SyncLoop:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def now_s(self) -> float:
        return self._clock()

    def post(self, work: Work) -> None:
        """Run `work` on the loop thread as soon as possible. Safe from any thread; never blocks."""
        self._queue.put(work)

    def call_later(self, delay_s: float, work: Work) -> Timer:
        """Run `work` on the loop thread after `delay_s` seconds (monotonic clock)."""
        timer = Timer(self._clock() + max(0.0, delay_s), next(self._order), work)
        with self._timer_lock:
            heapq.heappush(self._timers, timer)
        self._queue.put(_WAKE)
        return timer

    def call_sync(self, work: Callable[[], object], timeout_s: float = 10.0) -> object:
        """Run `work` on the loop thread and return its result (for set-up, tests and shutdown)."""
        if self.in_loop():
            return work()
        done = threading.Event()
        box: dict[str, object] = {}

        def run() -> None:
            try:
                box["result"] = work()
            except BaseException as exc:
                box["error"] = exc
            finally:
                done.set()

        self.post(run)
        if not done.wait(timeout_s):
            raise TimeoutError(f"sync loop did not run the call within {timeout_s} s")
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box.get("result")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Finish the work already posted, then end the thread (waits at most `timeout_s`)."""
        if not self._thread.is_alive():
            return
        self._stopping = True
        self._queue.put(None)
        if not self.in_loop():
            self._thread.join(timeout_s)

    def _next_timeout_s(self) -> float | None:
        with self._timer_lock:
            while self._timers and self._timers[0].cancelled:
                heapq.heappop(self._timers)
            if not self._timers:
                return None
            return max(0.0, self._timers[0].due_s - self._clock())

    def _due_timers(self) -> list[Timer]:
        now = self._clock()
        due: list[Timer] = []
        with self._timer_lock:
            while self._timers and self._timers[0].due_s <= now:
                t = heapq.heappop(self._timers)
                if not t.cancelled:
                    due.append(t)
        return due

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._next_timeout_s())
            except queue.Empty:
                item = _WAKE
            if item is None:
                return
            for timer in self._due_timers():
                self._call(timer.work)
            if item is not _WAKE:
                self._call(item)

    @staticmethod
    def _call(work: Work) -> None:
        try:
            work()
        except Exception:
            log.exception("sync loop: work item failed")


def _wake() -> None:
    return None


_WAKE: Work = _wake
