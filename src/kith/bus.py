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
OUTBOX_MAX = 100_000  # events waiting for Redis before more are dropped (Redis far too slow)


class Bus(Protocol):
    """What every bus does."""

    async def publish(self, channel: str, event: Event) -> None: ...

    async def publish_many(self, events: list[tuple[str, Event]]) -> None: ...

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

    async def publish_many(self, events: list[tuple[str, Event]]) -> None:
        """`publish` each (channel, event), in order."""
        for channel, event in events:
            await self.publish(channel, event)

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
        self._queues: dict[str, set[asyncio.Queue[Event]]] = {}  # local subscribers
        self._live: set[str] = set()  # channels Redis confirmed on the current connection
        self._confirm: dict[str, list[asyncio.Future[None]]] = {}
        self._requests: list[tuple[str, str]] = []  # (un)subscribe, for the reader task
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self._outbox: list[tuple[str, str]] = []  # (prefixed channel, JSON) to publish, in order
        self._sender: asyncio.Task[None] | None = None  # the task sending the outbox

    @property
    def client(self) -> aioredis.Redis:
        """The Redis connection, for other shared state (e.g. rate-limit counters)."""
        return self._redis

    @property
    def prefix(self) -> str:
        return self._prefix

    async def publish(self, channel: str, event: Event) -> None:
        """Publish to every process, without waiting for Redis (see `publish_many`)."""
        self._send_soon([(channel, event)])

    async def publish_many(self, events: list[tuple[str, Event]]) -> None:
        """Publish each (channel, event) to every process, in order, without waiting for
        Redis: the events join this process's outbox, which one task sends in publishing
        order, everything queued meanwhile in one round trip (a pipeline). A request that
        waited for the exchange waited for the event loop to come round to Redis's answer:
        under load, the same exchange for a rate limit came back 50-70 ms after it was sent
        (docs/benchmarks.md, session 11). When Redis is down the events are dropped with a
        warning (the change they announce is already committed, and the caller must not
        fail)."""
        self._send_soon(events)

    def _send_soon(self, events: list[tuple[str, Event]]) -> None:
        if len(self._outbox) + len(events) > OUTBOX_MAX:
            log.warning("bus: outbox full (Redis too slow?): dropped %d events", len(events))
            return
        self._outbox.extend((self._prefix + ch, json.dumps(event)) for ch, event in events)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(self._send_outbox())

    async def _send_outbox(self) -> None:
        while self._outbox:
            batch, self._outbox = self._outbox, []
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for name, data in batch:
                        pipe.publish(name, data)
                    await pipe.execute()
            except RedisError as err:
                log.warning("bus: could not publish %d events: %s", len(batch), err)

    async def flush(self, within: float = 5.0) -> None:
        """Wait (up to `within` seconds) until what was published so far is sent or dropped."""
        if self._sender is not None and not self._sender.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._sender), within)

    async def subscribe(
        self, *channels: str, ready: asyncio.Event | None = None
    ) -> AsyncIterator[Event]:
        """Events of these channels from every process. All subscriptions of this process share
        one Redis connection (one per open stream would exhaust Redis at a few thousand
        streams); `ready` is set once Redis confirmed the subscription (or after 5 s). When
        the connection drops it re-subscribes with a growing delay; events published
        meanwhile are lost."""
        q: asyncio.Queue[Event] = asyncio.Queue(maxsize=1000)
        waits: list[asyncio.Future[None]] = []
        for ch in channels:
            subscribers = self._queues.setdefault(ch, set())
            subscribers.add(q)
            if ch not in self._live:
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._confirm.setdefault(ch, []).append(fut)
                waits.append(fut)
                self._requests.append(("subscribe", ch))
        try:
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read_forever())
            if waits:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.gather(*waits), 5)
            if ready is not None:
                ready.set()
            while True:
                yield await q.get()
        finally:
            for ch in channels:
                mine = self._queues.get(ch)
                if mine is None:
                    continue
                mine.discard(q)
                if not mine:
                    del self._queues[ch]
                    self._requests.append(("unsubscribe", ch))

    async def _read_forever(self) -> None:
        """The process's one subscriber connection: applies (un)subscribe requests between
        reads (a pub/sub connection is used by this task alone) and hands each message to the
        local subscribers of its channel."""
        delay = 0.5
        while not self._closing:
            pubsub = self._redis.pubsub()
            try:
                wanted = list(self._queues)
                self._requests.clear()  # everything wanted now is (re)subscribed here
                if wanted:
                    await pubsub.subscribe(*[self._prefix + ch for ch in wanted])
                delay = 0.5
                while True:
                    while self._requests:
                        op, ch = self._requests.pop(0)
                        if op == "subscribe" and ch in self._queues and ch not in self._live:
                            await pubsub.subscribe(self._prefix + ch)
                        elif op == "unsubscribe" and ch not in self._queues:
                            self._live.discard(ch)
                            await pubsub.unsubscribe(self._prefix + ch)
                    if not pubsub.subscribed:
                        await asyncio.sleep(0.05)
                        continue
                    msg = await pubsub.get_message(timeout=0.1)
                    if msg is not None:
                        self._dispatch(msg)
            except (RedisConnectionError, RedisTimeoutError, OSError) as err:
                if self._closing:
                    return
                log.warning("bus: lost Redis (%s); subscribing again in %.1f s", err, delay)
            finally:
                self._live.clear()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RECONNECT_DELAY)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        raw = msg.get("channel")
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        if not name.startswith(self._prefix):
            return
        ch = name[len(self._prefix) :]
        kind = msg.get("type")
        if kind == "subscribe":
            self._live.add(ch)
            for fut in self._confirm.pop(ch, []):
                if not fut.done():
                    fut.set_result(None)
        elif kind == "message":
            event = _decode(msg.get("data"))
            if event is None:
                return
            for q in list(self._queues.get(ch, ())):
                with contextlib.suppress(asyncio.QueueFull):
                    q.put_nowait(event)

    async def close(self) -> None:
        await self.flush(2)  # what was published before closing still goes out
        self._closing = True
        if self._reader is not None:
            self._reader.cancel()
            # Bounded: a read interrupted mid-way may be turned into a connection error by
            # the client library rather than end the task at once.
            with contextlib.suppress(asyncio.CancelledError, TimeoutError, RedisError, OSError):
                await asyncio.wait_for(self._reader, 2)
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
