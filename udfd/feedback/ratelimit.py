"""Per-client token bucket for flags: one visitor cannot flood the feedback store or the protector.

Pure apart from the clock, which is passed in (`time.monotonic` by default). Thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

_MAX_CLIENTS = 10_000  # buckets kept at most; full (idle) buckets are dropped first when there are more


class RateLimiter:
    """`allow(client)` is True while `client` has a token: `per_minute` tokens refill per minute, up to `burst`."""

    def __init__(self, per_minute: float, *, burst: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0:
            raise ValueError(f"per_minute must be > 0, got {per_minute}")
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(1, round(per_minute)))
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, time of last update)
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        """Take one token for `client`; False (nothing taken) when its bucket is empty."""
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.get(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            allowed = tokens >= 1.0
            self._buckets[client] = (tokens - 1.0 if allowed else tokens, now)
            if len(self._buckets) > _MAX_CLIENTS:
                self._forget_idle(now)
            return allowed

    def retry_after(self, client: str) -> float:
        """Seconds until `client` has a token again (0 when it has one now)."""
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        return max(0.0, (1.0 - tokens) / self.rate)

    def _forget_idle(self, now: float) -> None:
        full = [c for c, (t, then) in self._buckets.items() if t + (now - then) * self.rate >= self.burst]
        for client in full or list(self._buckets)[: len(self._buckets) - _MAX_CLIENTS]:
            del self._buckets[client]
