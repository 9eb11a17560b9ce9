"""Mastodon's API rate limits with its headers: 300 requests / 5 min per IP without a token,
1,500 / 5 min per access token, in fixed windows. Counted in Redis when KITH_REDIS_URL is set,
so every process of an instance shares the counts; in memory otherwise (one process)."""

from __future__ import annotations

import hashlib
import logging
import time

from fastapi import Request
from redis.exceptions import RedisError

from kith.bus import RedisBus
from kith.mastodon_api.deps import bearer_token

log = logging.getLogger(__name__)

WINDOW = 300
ANONYMOUS_LIMIT = 300
TOKEN_LIMIT = 1500


class ApiRateLimiter:
    """Fixed-window counters keyed by IP or by token hash (never the token itself)."""

    def __init__(
        self, anonymous: int = ANONYMOUS_LIMIT, per_token: int = TOKEN_LIMIT, window: int = WINDOW
    ) -> None:
        self.anonymous, self.per_token, self.window = anonymous, per_token, window
        self._counts: dict[str, int] = {}
        self._window_start = 0

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
        """Count a request in Redis, shared by every process; in this process alone while
        Redis does not answer (a limit must not take the API down with it)."""
        start = int(time.time() // self.window) * self.window
        name = f"{bus.prefix}ratelimit:{key}:{start}"
        try:
            pipe = bus.client.pipeline()
            pipe.incr(name)
            pipe.expire(name, self.window + 5)
            used, _ = await pipe.execute()
        except RedisError as err:
            log.warning("rate limit: Redis unavailable, counting in this process: %s", err)
            return self.hit(key, limit)
        return limit, int(used), start + self.window

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
