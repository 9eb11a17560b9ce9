"""Sliding-window attempt counters (login throttling), in process memory.

Addresses are kept only here, in memory, for the window's length (privacy by default: IPs are
not stored beyond rate limiting). Several `kith serve` processes each count their own share;
with Redis configured a shared counter is the next step (noted in docs/operations.md)."""

from __future__ import annotations

import time
from collections import deque


class SlidingWindow:
    """Counts events per key over the last `window` seconds."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._events: dict[str, deque[float]] = {}

    def _prune(self, key: str, now: float) -> deque[float]:
        q = self._events.setdefault(key, deque())
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def retry_after(self, key: str) -> int:
        """0 if another attempt is allowed now, else seconds to wait."""
        now = time.monotonic()
        q = self._prune(key, now)
        if len(q) < self.limit:
            return 0
        return max(1, int(q[0] + self.window - now) + 1)

    def hit(self, key: str) -> None:
        """Record one attempt."""
        now = time.monotonic()
        self._prune(key, now).append(now)
        if len(self._events) > 100_000:  # bound memory under a flood of distinct keys
            for k in [k for k, v in self._events.items() if not v][:50_000]:
                del self._events[k]

    def reset(self, key: str) -> None:
        self._events.pop(key, None)
