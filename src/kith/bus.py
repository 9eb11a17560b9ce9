"""Publish/subscribe for real-time events: in-process by default, Redis when KITH_REDIS_URL is set.

Services publish after their transaction commits; streaming endpoints subscribe. Events are
small JSON dicts ({"type": "post.created", "post_id": ...}); subscribers look the rest up
and ask `kith.policy` whether their viewer may see it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

log = logging.getLogger(__name__)

Event = dict[str, Any]


class Bus(Protocol):
    """What every bus does."""

    async def publish(self, channel: str, event: Event) -> None: ...

    def subscribe(self, *channels: str) -> AsyncIterator[Event]: ...

    async def close(self) -> None: ...


class MemoryBus:
    """One process's bus: each subscriber has a bounded queue; slow ones drop events."""

    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[Event]]] = {}

    async def publish(self, channel: str, event: Event) -> None:
        for q in list(self._subscribers.get(channel, ())):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(event)

    async def subscribe(self, *channels: str) -> AsyncIterator[Event]:
        q: asyncio.Queue[Event] = asyncio.Queue(maxsize=1000)
        for ch in channels:
            self._subscribers.setdefault(ch, set()).add(q)
        try:
            while True:
                yield await q.get()
        finally:
            for ch in channels:
                self._subscribers.get(ch, set()).discard(q)

    async def close(self) -> None:
        self._subscribers.clear()


class RedisBus:
    """A bus shared by every process that reaches the same Redis (pub/sub, JSON payloads)."""

    def __init__(self, url: str, prefix: str = "kith:") -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(url)
        self._prefix = prefix

    async def publish(self, channel: str, event: Event) -> None:
        await self._redis.publish(self._prefix + channel, json.dumps(event))

    async def subscribe(self, *channels: str) -> AsyncIterator[Event]:
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(*(self._prefix + ch for ch in channels))
        try:
            while True:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=30)
                if msg is None:
                    continue
                try:
                    yield json.loads(msg["data"])
                except (ValueError, TypeError):
                    log.warning("dropped a malformed bus message")
        finally:
            with contextlib.suppress(Exception):
                await pubsub.unsubscribe()
                await pubsub.aclose()

    async def close(self) -> None:
        await self._redis.aclose()


def make_bus(redis_url: str) -> MemoryBus | RedisBus:
    """Redis pub/sub when a URL is given, else the in-process bus."""
    return RedisBus(redis_url) if redis_url else MemoryBus()
