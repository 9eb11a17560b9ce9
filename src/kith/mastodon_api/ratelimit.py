"""Mastodon's API rate limits with its headers: 300 requests / 5 min per IP without a token,
1,500 / 5 min per access token, in fixed windows. Counted in Redis when KITH_REDIS_URL is set,
so every process of an instance shares the counts; in memory otherwise (one process).

In Redis a process reserves a key's requests a few at a time (a lease: one INCRBY for up to
LEASE_MAX of them) instead of one round trip per request, which cost ~10 % of a timeline
request's CPU with two processes. Each request still takes its own place in the shared count,
so no more than the limit ever pass. A lease grows only with the key's traffic in this
process (the first requests of a window are counted one by one), never past the budget left
as last seen (past the limit, where every place is refused, it may), and a process makes
one reservation of a key at a time (requests arriving meanwhile wait for it). What a lease
costs: another process may refuse a request while this one holds unused places, at most
LEASE_MAX - 1 of them per process, and the Remaining header counts those places as used.

A busy key's lease is topped up before it runs out: once three quarters of it are used, a
reservation of as many goes on in a task of its own while requests take the places left. A
request that waits for Redis waits for the event loop to come round several times (the
reply read, the pipeline's steps), and under load each time round is every other request in
hand: with two processes at 16 connections a reservation took 50-70 ms to come back (p50)
and was the timelines' p99 (docs/benchmarks.md, session 11). Quiet keys (fewer than
PREFETCH_AFTER requests in the window) are counted exactly as before."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field

from fastapi import Request
from redis.exceptions import RedisError

from kith.bus import RedisBus
from kith.mastodon_api.deps import bearer_token
from kith.runtime import keep_running

log = logging.getLogger(__name__)

WINDOW = 300
ANONYMOUS_LIMIT = 300
TOKEN_LIMIT = 1500
LEASE_MAX = 16  # places of the shared count reserved at once, at most
PREFETCH_AFTER = 8  # a key's requests in this process and window before its lease is topped up


@dataclass
class _Lease:
    """What this process holds of a key's shared count in the current window."""

    top: int = 0  # the shared count after this process's latest reservation
    hits: int = 0  # requests of the key counted here this window
    places: deque[list[int]] = field(default_factory=deque)  # reserved, unused: [first, last]
    reserving: asyncio.Event | None = None  # set when the reservation under way is done

    @property
    def left(self) -> int:
        """How many places `places` holds."""
        return sum(last - first + 1 for first, last in self.places)


def _done_reserving(lease: _Lease, done: asyncio.Event) -> None:
    if lease.reserving is done:
        lease.reserving = None
    done.set()


class ApiRateLimiter:
    """Fixed-window counters keyed by IP or by token hash (never the token itself)."""

    def __init__(
        self, anonymous: int = ANONYMOUS_LIMIT, per_token: int = TOKEN_LIMIT, window: int = WINDOW
    ) -> None:
        self.anonymous, self.per_token, self.window = anonymous, per_token, window
        self._counts: dict[str, int] = {}
        self._window_start = 0
        self._leases: dict[str, _Lease] = {}
        self._lease_window = 0

    def hit(self, key: str, limit: int) -> tuple[int, int, float]:
        """Count a request in this process; returns (limit, used, reset time)."""
        now = time.time()
        start = int(now // self.window) * self.window
        if start != self._window_start:
            self._counts.clear()
            self._window_start = start
        used = self._counts.get(key, 0) + 1
        self._counts[key] = used
        return limit, used, start + self.window

    async def shared_hit(self, bus: RedisBus, key: str, limit: int) -> tuple[int, int, float]:
        """Count a request in Redis, shared by every process (a place of this process's
        lease, reserving more when it has none left; see the module); in this process alone
        while Redis does not answer (a limit must not take the API down with it). Returns
        (limit, the request's place in the shared count, reset time)."""
        start = int(time.time() // self.window) * self.window
        if start != self._lease_window:
            self._leases.clear()
            self._lease_window = start
        lease = self._leases.get(key)
        if lease is None:
            lease = self._leases[key] = _Lease()
        lease.hits += 1
        while not lease.places:
            if lease.reserving is not None:  # one reservation at a time per key: wait for it
                await lease.reserving.wait()
                continue
            size = max(1, min(LEASE_MAX, lease.hits // 4))
            try:
                await self._reserve(bus, lease, key, start, limit, size)
            except RedisError as err:
                log.warning("rate limit: Redis unavailable, counting in this process: %s", err)
                return self.hit(key, limit)
        first = lease.places[0]
        place = first[0]
        if place == first[1]:
            lease.places.popleft()
        else:
            first[0] = place + 1
        if lease.reserving is None and lease.hits >= PREFETCH_AFTER:
            size, left = min(LEASE_MAX, lease.hits // 4), lease.left
            if left <= size // 4:  # top it up to `size` while the rest is used
                self._top_up(bus, lease, key, start, limit, size - left)
        return limit, place, start + self.window

    async def _reserve(
        self, bus: RedisBus, lease: _Lease, key: str, start: int, limit: int, size: int
    ) -> None:
        """Reserve `size` places of `key`'s shared count in window `start` (fewer when that
        reaches the limit), as the lease's one reservation under way."""
        done = lease.reserving = lease.reserving or asyncio.Event()
        if lease.top < limit:  # exact near the limit; past it every place is refused
            size = min(size, limit - lease.top)
        name = f"{bus.prefix}ratelimit:{key}:{start}"
        try:
            pipe = bus.client.pipeline()
            pipe.incrby(name, size)
            pipe.expire(name, self.window + 5)
            top, _ = await pipe.execute()
        finally:
            _done_reserving(lease, done)
        lease.top = max(lease.top, int(top))
        lease.places.append([int(top) - size + 1, int(top)])

    def _top_up(
        self, bus: RedisBus, lease: _Lease, key: str, start: int, limit: int, size: int
    ) -> None:
        """`_reserve` in a task of its own, marked as under way from now (also if the task
        is cancelled before it starts: shutdown)."""
        done = lease.reserving = asyncio.Event()

        async def reserve() -> None:
            try:
                await self._reserve(bus, lease, key, start, limit, size)
            except RedisError as err:  # the next request that finds no place tries again
                log.warning("rate limit: Redis unavailable, lease not topped up: %s", err)

        keep_running(reserve()).add_done_callback(lambda _task: _done_reserving(lease, done))

    async def check(self, request: Request) -> tuple[dict[str, str], bool]:
        """Count an API request: (Mastodon's rate-limit headers, over the limit?)."""
        token = bearer_token(request)
        if token:
            key, limit = "t:" + hashlib.sha256(token.encode()).hexdigest()[:32], self.per_token
        else:
            key, limit = "ip:" + (request.client.host if request.client else "?"), self.anonymous
        bus = request.app.state.runtime.bus
        if isinstance(bus, RedisBus):
            limit, used, reset = await self.shared_hit(bus, key, limit)
        else:
            limit, used, reset = self.hit(key, limit)
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - used)),
            "X-RateLimit-Reset": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(reset)),
        }
        return headers, used > limit
