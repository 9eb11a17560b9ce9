"""Publish/subscribe for real-time events: in-process by default, Redis when KITH_REDIS_URL is set.

Services publish after their transaction commits; streaming endpoints subscribe. Events are
small JSON dicts ({"type": "post.created", "post_id": ...}); subscribers look the rest up
and ask `kith.policy` whether their viewer may see it.

Delivery is best effort: an event published while a subscriber is not (yet, or any more)
listening is lost. That is fine for what the bus carries (hints such as "new posts"); what a
page shows always comes from the database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

Event = dict[str, Any]

# Longest wait between two attempts to re-subscribe after Redis went away.
MAX_RECONNECT_DELAY = 30.0


class Bus(Protocol):
    """What every bus does."""

    async def publish(self, channel: str, event: Event) -> None: ...

    def subscribe(
        self, *channels: str, ready: asyncio.Event | None = None
    ) -> AsyncIterator[Event]: ...

    async def close(self) -> None: ...


class MemoryBus:
    """One process's bus: each subscriber has a bounded queue; slow ones drop events."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[Event]]] = {}

    async def publish(self, channel: str, event: Event) -> None:
        """Hand the event to every current subscriber of the channel."""
        for q in list(self._subscribers.get(channel, ())):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(event)

    async def subscribe(
        self, *channels: str, ready: asyncio.Event | None = None
    ) -> AsyncIterator[Event]:
        """Events of these channels, in publishing order. `ready` is set once the subscription
        is in place, so a caller can tell its client "connected" without losing events."""
        q: asyncio.Queue[Event] = asyncio.Queue(maxsize=1000)
        for ch in channels:
            self._subscribers.setdefault(ch, set()).add(q)
        if ready is not None:
            ready.set()
        try:
            while True:
                yield await q.get()
        finally:
            for ch in channels:
                subscribers = self._subscribers.get(ch)
                if subscribers is not None:
                    subscribers.discard(q)
                    if not subscribers:
                        del self._subscribers[ch]

    async def close(self) -> None:
        self._subscribers.clear()


class RedisBus:
    """A bus shared by every process that reaches the same Redis (pub/sub, JSON payloads).

    Redis pub/sub channels ignore the database number, so instances sharing a server are kept
    apart by `prefix` alone."""

    def __init__(self, url: str, prefix: str = "kith:") -> None:
        # The health check pings idle subscriber connections, so a silently dropped one is
        # noticed (and re-made) instead of waiting forever.
        self._redis = aioredis.from_url(url, health_check_interval=30)
        self._prefix = prefix

    @property
    def client(self) -> aioredis.Redis:
        """The Redis connection, for other shared state (e.g. rate-limit counters)."""
        return self._redis

    @property
    def prefix(self) -> str:
        return self._prefix

    async def publish(self, channel: str, event: Event) -> None:
        """Publish to every process; when Redis is down the event is dropped with a warning
        (the change it announces is already committed, and the caller must not fail)."""
        try:
            await self._redis.publish(self._prefix + channel, json.dumps(event))
        except RedisError as err:
            log.warning("bus: could not publish to %s: %s", channel, err)

    async def subscribe(
        self, *channels: str, ready: asyncio.Event | None = None
    ) -> AsyncIterator[Event]:
        """Events of these channels from every process. When the connection drops it
        re-subscribes with a growing delay; events published meanwhile are lost."""
        names = [self._prefix + ch for ch in channels]
        delay = 0.5
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(*names)
                if ready is not None:
                    ready.set()
                delay = 0.5
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=30)
                    if msg is None:
                        continue
                    event = _decode(msg.get("data"))
                    if event is not None:
                        yield event
            except (RedisConnectionError, RedisTimeoutError) as err:
                log.warning("bus: lost Redis (%s); subscribing again in %.1f s", err, delay)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_DELAY)

    async def close(self) -> None:
        await self._redis.aclose()


def _decode(data: object) -> Event | None:
    """A bus message's event, or None (logged) when another program wrote garbage there."""
    try:
        event = json.loads(data)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        event = None
    if not isinstance(event, dict):
        log.warning("bus: dropped a malformed message")
        return None
    return event


def make_bus(redis_url: str, prefix: str = "kith:") -> MemoryBus | RedisBus:
    """Redis pub/sub when a URL is given, else the in-process bus."""
    return RedisBus(redis_url, prefix) if redis_url else MemoryBus()
