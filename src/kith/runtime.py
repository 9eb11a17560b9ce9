"""The running instance's shared parts (settings, database, bus), reachable from a session.

Every session made by `Runtime.sessions` carries the runtime in `session.info`, so a service
that must publish or read a setting after it commits needs nothing but its session."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kith import id_slots
from kith.bus import MemoryBus, RedisBus, make_bus
from kith.config import Settings
from kith.db import make_engine
from kith.net import OutboundHttp

log = logging.getLogger(__name__)


# The cyclic collector's thresholds for a long-running process (see settle_heap_now).
YOUNG_COLLECTION_EVERY = 10_000


def settle_heap_now() -> None:
    """For a long-running process once it has started: collect start-up's garbage, then move
    everything still alive (modules, routes, mappers, compiled statements: ~230,000 objects)
    out of the cyclic collector's sight, for good (`gc.freeze`). Each full collection walked
    all of them, ~70 ms of CPU a few times a minute under load, about 0.8 ms per post; objects
    made later are collected as before. Not for a process that builds many apps (the tests):
    cycles among frozen objects are never freed.

    Then the youngest generation is collected every YOUNG_COLLECTION_EVERY allocations
    instead of Python's 700. With 16 requests in flight, a request's objects (a session, its
    entities, their cycles) lived through several young collections and were promoted, so
    they died in full collections: one every ~2 s under load, 40-120 ms each with the event
    loop stopped, the requests' p99. Now most die young: ~1/20 of the collections, each young
    one ~1-5 ms, a full one a minute or so; the collector's CPU fell from ~7 % of the
    process's to ~2 %, and POST's p99 from 118-160 to 61-77 ms (docs/benchmarks.md, session 8)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, 10, 10)


@dataclass
class Runtime:
    """Settings, engine, session factory and bus of one Kith process."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession] = field(init=False)
    bus: MemoryBus | RedisBus = field(init=False)
    _http: OutboundHttp | None = field(default=None, init=False, repr=False)
    # Per-process caches of the layers above, by name (mastodon_api.entity_cache): they live
    # and die with the runtime, so each test's instance starts empty.
    caches: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.sessions = async_sessionmaker(
            self.engine, expire_on_commit=False, info={"runtime": self}
        )
        self.bus = make_bus(self.settings.redis_url, self.settings.redis_prefix)

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        url = settings.effective_database_url
        id_slots.claim(url)  # before the first id is made: see kith.id_slots
        return cls(settings=settings, engine=make_engine(url))

    @property
    def http(self) -> OutboundHttp:
        """The process's one outbound HTTP client (SSRF-safe), made when first needed."""
        if self._http is None:
            self._http = OutboundHttp(self.settings)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        await self.bus.close()
        await self.engine.dispose()


def runtime_of(db: AsyncSession) -> Runtime:
    """The runtime that made this session."""
    rt = db.info.get("runtime")
    if rt is None:
        raise RuntimeError("session was not made by a Runtime")
    return rt


_AFTER_COMMIT = "kith_after_commit"


def after_commit(
    db: AsyncSession, key: str, work: Callable[[AsyncSession], Awaitable[None]]
) -> None:
    """Have `work` run once this session's transaction is committed by code that does not know
    what its callees wrote: the job worker (`run_after_commit`). One per `key`. Services that
    commit themselves publish their own events, as before; this is for work done inside a job
    (an inbox activity storing a post or adding notifications), whose commit is the worker's."""
    db.info.setdefault(_AFTER_COMMIT, {})[key] = work


async def run_after_commit(db: AsyncSession) -> None:
    """Run (and forget) what `after_commit` asked for; a failure is logged, not raised."""
    pending: dict[str, Callable[[AsyncSession], Awaitable[None]]] = db.info.pop(_AFTER_COMMIT, {})
    for key, work in pending.items():
        try:
            await work(db)
        except (SQLAlchemyError, RuntimeError, OSError):
            log.warning("after-commit work failed: %s", key, exc_info=True)


def drop_after_commit(db: AsyncSession) -> None:
    """Forget what `after_commit` asked for (the transaction was rolled back)."""
    db.info.pop(_AFTER_COMMIT, None)


_background: set[asyncio.Task[None]] = set()


def in_background(
    db: AsyncSession, work: Callable[[AsyncSession], Awaitable[None]], what: str
) -> None:
    """Run `work` in a session of its own, once the caller's work is done: a page must not
    write, nor wait. A failure (shutting down, database gone) is logged as `what`."""
    factory = runtime_of(db).sessions

    async def run() -> None:
        try:
            async with factory() as own:
                await work(own)
        except (SQLAlchemyError, RuntimeError, OSError):
            log.warning("background work failed: %s", what, exc_info=True)

    keep_running(run())


def keep_running(work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """Run `work` (which handles its own failures) as a task of its own that nobody awaits,
    kept until done; shutdown waits for it (`wait_for_background`)."""
    task = asyncio.get_running_loop().create_task(work)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


async def wait_for_background() -> None:
    """Let `in_background` work finish (tests, benchmarks, shutdown)."""
    while _background:
        await asyncio.gather(*list(_background), return_exceptions=True)
