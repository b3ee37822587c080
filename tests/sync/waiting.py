"""Small helpers for waiting on things that happen on the sync loop or in a broker."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0, step_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()


class Inbox:
    """Collects (topic, payload) pairs from a transport handler; `get` waits for the next one."""

    def __init__(self) -> None:
        self._q: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.items: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()

    def __call__(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self.items.append((topic, payload))
        self._q.put((topic, payload))

    def get(self, timeout_s: float = 10.0) -> tuple[str, bytes]:
        return self._q.get(timeout=timeout_s)

    def empty_for(self, seconds: float) -> bool:
        try:
            self._q.get(timeout=seconds)
        except queue.Empty:
            return True
        return False


class Box:
    """A one-shot result set from the loop thread and awaited by the test."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.value: Any = None

    def __call__(self, value: Any) -> None:
        self.value = value
        self._event.set()

    def wait(self, timeout_s: float = 10.0) -> Any:
        if not self._event.wait(timeout_s):
            raise TimeoutError("no result within the timeout")
        return self.value


def get_shadow(store: Any, thing: str, shadow: str) -> dict[str, Any]:
    """A `ShadowStore`'s reply to a get (a document, or a 404 error document), waiting out 429s: the
    test's reads share the thing's request rate with the device."""
    replies: list[Any] = []

    def answered() -> bool:
        replies.append(store.handle("get", thing, shadow, b"{}")[0])
        return replies[-1].document.get("code") != 429

    assert wait_until(answered, step_s=0.05), "the shadow service kept answering 429"
    document = replies[-1].document
    assert isinstance(document, dict)
    return document
