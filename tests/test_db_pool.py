"""kith.db's PostgreSQL pool: a connection that sat idle is pinged before use, so one the
server dropped meanwhile is replaced without an error; one used a moment ago is not pinged
(a ping is three round trips with asyncpg: docs/benchmarks.md). Its sessions run without JIT."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from kith import db as kith_db
from kith.db import make_engine
from tests.conftest import BACKEND

pytestmark = pytest.mark.skipif(BACKEND != "postgres", reason="PostgreSQL's pool")


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(database_url, pool_size=1, max_overflow=0)
    yield eng
    await eng.dispose()


@pytest.fixture
def pings(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the pings the pool sends."""
    dialect = engine.sync_engine.dialect
    counted: list[int] = []
    real_ping = dialect.do_ping

    def counting_ping(dbapi_conn: Any) -> bool:
        counted.append(1)
        return real_ping(dbapi_conn)

    monkeypatch.setattr(dialect, "do_ping", counting_ping)
    return counted


async def backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def kill_backend(database_url: str, pid: int) -> None:
    """What a server restart or an idle timeout does to one connection."""
    admin = create_async_engine(database_url, isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    await admin.dispose()


async def test_connection_used_a_moment_ago__is_handed_out_without_a_ping(
    engine: AsyncEngine, pings: list[int]
) -> None:
    # Given a pooled connection just used
    first = await backend_pid(engine)
    # When it is used again at once, several times
    again = [await backend_pid(engine) for _ in range(3)]
    # Then it is the same connection, and nothing pinged it
    assert again == [first] * 3
    assert pings == []


async def test_idle_connection_dropped_by_the_server__is_replaced_without_an_error(
    engine: AsyncEngine, database_url: str, pings: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a pooled connection that sat idle (long enough: the threshold is made 0 here)
    monkeypatch.setattr(kith_db, "PING_AFTER_IDLE_SECONDS", 0.0)
    old = await backend_pid(engine)
    # ... and that the server dropped meanwhile
    await kill_backend(database_url, old)
    # When the next statement runs
    new = await backend_pid(engine)
    # Then it succeeds on a new connection, found out by the ping
    assert new != old
    assert pings == [1]


async def test_connection_dropped_a_moment_after_use__fails_once_then_the_pool_recovers(
    engine: AsyncEngine, database_url: str, pings: list[int]
) -> None:
    # Given a connection the server dropped right after it went back to the pool (the cost
    # of not pinging busy connections)
    old = await backend_pid(engine)
    await kill_backend(database_url, old)
    # When the next statement runs at once, it fails (the connection is invalidated)
    with pytest.raises(DBAPIError):
        await backend_pid(engine)
    # Then the one after runs on a new connection
    assert await backend_pid(engine) != old
    assert pings == []


async def test_sessions__run_without_jit(engine: AsyncEngine) -> None:
    # PostgreSQL compiled a 3 ms Home page for 116 ms when its estimate passed jit_above_cost.
    async with engine.connect() as conn:
        assert (await conn.execute(text("SHOW jit"))).scalar() == "off"
