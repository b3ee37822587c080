"""Client-side limits: token buckets (AWS IoT Core quotas) and reconnect/retry back-off with full jitter.

AWS IoT Core throttles a connection above 100 publishes/s and 512 KB/s, and a thing's shadow above
20 requests/s. Staying below those limits on the device keeps the broker from disconnecting it.
Full jitter (delay = uniform(0, min(max, base * 2**attempt))) spreads a fleet's reconnects after an
outage instead of synchronising them (AWS Architecture Blog, "Exponential Backoff And Jitter").
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class TokenBucket:
    """`rate_per_s` tokens per second, at most `burst` stored. Not thread safe: one owner thread."""

    def __init__(self, rate_per_s: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst <= 0:
            raise ValueError(f"rate_per_s and burst must be positive, got {rate_per_s}, {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._last_s = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last_s) * self.rate_per_s)
        self._last_s = now

    def delay_s(self, cost: float = 1.0) -> float:
        """Seconds until `cost` tokens are available (0.0 when they are now). Takes nothing."""
        self._refill()
        cost = min(cost, self.burst)
        return 0.0 if self._tokens >= cost else (cost - self._tokens) / self.rate_per_s

    def try_take(self, cost: float = 1.0) -> bool:
        """Take `cost` tokens if available now (a cost above `burst` is charged as `burst`)."""
        self._refill()
        cost = min(cost, self.burst)
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False


class Backoff:
    """Exponential back-off with full jitter; `reset()` after a success lasting long enough."""

    def __init__(
        self,
        min_s: float = 1.0,
        max_s: float = 120.0,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError(f"back-off needs 0 < min_s <= max_s, got {min_s}, {max_s}")
        self.min_s = min_s
        self.max_s = max_s
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay_s(self) -> float:
        ceiling = min(self.max_s, self.min_s * (2.0**self.attempt))
        self.attempt = min(self.attempt + 1, 62)
        return self._rng.uniform(0.0, ceiling)

    def reset(self) -> None:
        self.attempt = 0
