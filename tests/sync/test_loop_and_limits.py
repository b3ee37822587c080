"""The sync loop (order, timers, failures contained) and the client-side limits (token bucket, back-off)."""

from __future__ import annotations

import random
import threading

from agent.sync.loop import SyncLoop
from agent.sync.ratelimit import Backoff, TokenBucket
from tests.sync.waiting import wait_until


def test_posted_work_runs_in_order_on_the_loop_thread(loop: SyncLoop) -> None:
    seen: list[tuple[int, bool]] = []
    for i in range(100):
        loop.post(lambda i=i: seen.append((i, loop.in_loop())))
    assert wait_until(lambda: len(seen) == 100)
    assert seen == [(i, True) for i in range(100)]


def test_timers_fire_in_due_order_and_cancelled_ones_never(loop: SyncLoop) -> None:
    fired: list[str] = []
    done = threading.Event()
    loop.call_later(0.15, lambda: (fired.append("late"), done.set()))
    loop.call_later(0.05, lambda: fired.append("early"))
    loop.call_later(0.10, lambda: fired.append("cancelled")).cancel()
    assert done.wait(5)
    assert fired == ["early", "late"]


def test_a_failing_work_item_does_not_stop_the_loop(loop: SyncLoop) -> None:
    loop.post(lambda: 1 / 0)
    assert loop.call_sync(lambda: "alive") == "alive"


def test_token_bucket_allows_the_burst_then_the_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate_per_s=20.0, burst=20.0, clock=lambda: now[0])
    assert sum(bucket.try_take() for _ in range(30)) == 20
    assert abs(bucket.delay_s() - 0.05) < 1e-9
    now[0] += 0.5
    assert sum(bucket.try_take() for _ in range(30)) == 10


def test_token_bucket_charges_bytes() -> None:
    now = [0.0]
    bucket = TokenBucket(rate_per_s=512 * 1024, burst=128 * 1024, clock=lambda: now[0])
    assert bucket.try_take(100_000)
    assert not bucket.try_take(100_000)
    assert abs(bucket.delay_s(100_000) - (100_000 - 31_072) / (512 * 1024)) < 1e-6


def test_backoff_uses_full_jitter_below_a_doubling_ceiling_and_resets() -> None:
    backoff = Backoff(min_s=1.0, max_s=8.0, rng=random.Random(1))
    ceilings = [1, 2, 4, 8, 8, 8]
    delays = [backoff.next_delay_s() for _ in ceilings]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    samples = [Backoff(1.0, 8.0, random.Random(s)).next_delay_s() for s in range(200)]
    assert min(samples) < 0.1 and max(samples) > 0.9  # spread over [0, 1]: full jitter
    backoff.reset()
    assert backoff.attempt == 0
