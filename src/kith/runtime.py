"""The running instance's shared parts (settings, database, bus), reachable from a session.

Every session made by `Runtime.sessions` carries the runtime in `session.info`, so a service
that must publish or read a setting after it commits needs nothing but its session."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kith.bus import MemoryBus, RedisBus, make_bus
from kith.config import Settings
from kith.db import make_engine


@dataclass
class Runtime:
    """Settings, engine, session factory and bus of one Kith process."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession] = field(init=False)
    bus: MemoryBus | RedisBus = field(init=False)

    def __post_init__(self) -> None:
        self.sessions = async_sessionmaker(
            self.engine, expire_on_commit=False, info={"runtime": self}
        )
        self.bus = make_bus(self.settings.redis_url, self.settings.redis_prefix)

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        return cls(settings=settings, engine=make_engine(settings.effective_database_url))

    async def close(self) -> None:
        await self.bus.close()
        await self.engine.dispose()


def runtime_of(db: AsyncSession) -> Runtime:
    """The runtime that made this session."""
    rt = db.info.get("runtime")
    if rt is None:
        raise RuntimeError("session was not made by a Runtime")
    return rt
