"""kith.sqlite_writes: statements compiled once and run on SQLite's thread in one hand-off,
writing exactly what SQLAlchemy would, and group commit that keeps each write's outcome."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import JSON, BigInteger, Column, MetaData, String, Table, bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from kith import sqlite_writes
from kith.db import UTCDateTime, make_engine
from kith.sqlite_writes import (
    CompiledWrite,
    compiled_write,
    group_writer,
    is_one_hop,
    write_in_one_hop,
)
from tests.conftest import BACKEND

pytestmark = pytest.mark.skipif(BACKEND != "sqlite", reason="SQLite's write path only")

META = MetaData()
ROWS = Table(
    "rows",
    META,
    Column("id", BigInteger, primary_key=True),
    Column("name", String(50), unique=True),
    Column("doc", JSON),
    Column("at", UTCDateTime),
    Column("kind", String(10)),
)
INSERT_ROW = insert(ROWS).values(
    id=bindparam("id"),
    name=bindparam("name"),
    doc=bindparam("doc"),
    at=bindparam("at"),
    kind="fixed",  # a literal: compiled as a bind with its own value
)
WHEN = datetime(2026, 11, 26, 9, 30, 1, 123456, tzinfo=UTC)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    async with eng.begin() as conn:
        await conn.run_sync(META.create_all)
    yield eng
    await eng.dispose()


def run(compiled: CompiledWrite, values: dict[str, Any]) -> Any:
    def work(conn: sqlite3.Connection) -> int:
        return conn.execute(compiled.sql, compiled.parameters(values)).rowcount

    return work


async def raw_rows(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        result = await conn.exec_driver_sql("SELECT id, name, doc, at, kind FROM rows ORDER BY id")
        return [tuple(r) for r in result]


async def test_one_hop_write__stores_exactly_what_sqlalchemy_stores(engine: AsyncEngine) -> None:
    # Given the same values, once through SQLAlchemy and once compiled for one hand-off
    doc = {"a": [1, None, "é"], "b": None}
    async with engine.begin() as conn:
        await conn.execute(INSERT_ROW, {"id": 1, "name": "orm", "doc": doc, "at": WHEN})
    compiled = compiled_write(INSERT_ROW, engine)
    values = {"id": 2, "name": "hop", "doc": doc, "at": WHEN}
    # When written in one hop
    assert await write_in_one_hop(engine, run(compiled, values)) == 1
    # Then the stored text is the same, byte for byte (JSON, the UTC timestamp, the literal)
    first, second = await raw_rows(engine)
    assert first[2:] == second[2:]
    assert second[4] == "fixed"
    async with engine.connect() as conn:
        back = (await conn.execute(select(ROWS.c.doc, ROWS.c.at).where(ROWS.c.id == 2))).one()
    assert (back.doc, back.at) == (doc, WHEN)
    assert is_one_hop(engine)


async def test_one_hop_write__raising_work_is_rolled_back(engine: AsyncEngine) -> None:
    compiled = compiled_write(INSERT_ROW, engine)

    def half_then_fail(conn: sqlite3.Connection) -> None:
        run(compiled, {"id": 1, "name": "x", "doc": None, "at": WHEN})(conn)
        raise RuntimeError("changed its mind")

    with pytest.raises(RuntimeError):
        await write_in_one_hop(engine, half_then_fail)
    assert await raw_rows(engine) == []
    # and the engine's write turn was given back: a session writes at once
    async with asyncio.timeout(5), engine.begin() as conn:
        await conn.execute(INSERT_ROW, {"id": 3, "name": "y", "doc": None, "at": WHEN})
    assert len(await raw_rows(engine)) == 1


async def test_group_commit__concurrent_writes_share_hops_and_keep_their_outcomes(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled = compiled_write(INSERT_ROW, engine)
    hops = 0

    async def counted(*args: Any) -> Any:
        nonlocal hops
        hops += 1
        return await write_in_one_hop(*args)

    monkeypatch.setattr(sqlite_writes, "write_in_one_hop", counted)
    writer = group_writer(engine)
    # Given 30 concurrent writes, one of which breaks a unique constraint
    values = [{"id": i, "name": f"n{i}", "doc": {"i": i}, "at": WHEN} for i in range(30)]
    values[7]["name"] = "n3"
    outcomes = await asyncio.gather(
        *(writer.write(run(compiled, v)) for v in values), return_exceptions=True
    )
    # Then that one alone failed, with its own error, and every other row is committed
    assert isinstance(outcomes[7], sqlite3.IntegrityError)
    assert [o for i, o in enumerate(outcomes) if i != 7] == [1] * 29
    assert [r[0] for r in await raw_rows(engine)] == [i for i in range(30) if i != 7]
    # in fewer hand-offs (and commits) than writes
    assert 1 < hops < 30


async def test_group_commit__waits_for_a_session_that_holds_the_write_turn(
    engine: AsyncEngine,
) -> None:
    compiled = compiled_write(INSERT_ROW, engine)
    async with engine.connect() as conn:
        await conn.execute(INSERT_ROW, {"id": 1, "name": "a", "doc": None, "at": WHEN})
        # While another connection's write is open, the group write waits its turn
        pending = asyncio.ensure_future(
            group_writer(engine).write(
                run(compiled, {"id": 2, "name": "b", "doc": None, "at": WHEN})
            )
        )
        await asyncio.sleep(0.05)
        assert not pending.done()
        await conn.commit()
    assert await asyncio.wait_for(pending, 5) == 1
    assert [r[0] for r in await raw_rows(engine)] == [1, 2]


async def test_group_commit__a_cancelled_writer_leaves_the_others_their_outcomes(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled = compiled_write(INSERT_ROW, engine)
    gates = [asyncio.Event(), asyncio.Event()]  # one per group, opened by the test
    waiting = asyncio.Queue[int]()

    async def held(*args: Any) -> Any:  # each group waits at its gate before it writes
        n = len(gates) - sum(1 for g in gates if not g.is_set())  # groups let through so far
        await waiting.put(n)
        await gates[n].wait()
        return await write_in_one_hop(*args)

    monkeypatch.setattr(sqlite_writes, "write_in_one_hop", held)
    writer = group_writer(engine)

    def write(i: int) -> asyncio.Future[Any]:
        values = {"id": i, "name": f"n{i}", "doc": None, "at": WHEN}
        return asyncio.ensure_future(writer.write(run(compiled, values)))

    # Given a group of one being written, and two writers that will share the next group
    first = write(1)
    assert await asyncio.wait_for(waiting.get(), 5) == 0
    second, third = write(2), write(3)
    await asyncio.sleep(0)
    gates[0].set()
    assert await asyncio.wait_for(first, 5) == 1
    assert await asyncio.wait_for(waiting.get(), 5) == 1
    # When the first writer of that next group is cancelled (its client went away) while
    # the group is being written
    second.cancel()
    await asyncio.sleep(0)
    gates[1].set()
    # Then the other still gets its own outcome, and nothing hangs
    assert await asyncio.wait_for(third, 5) == 1
    assert second.cancelled()
    # (the cancelled caller's row had been handed over: written, like a request whose
    # client left after sending it)
    assert [r[0] for r in await raw_rows(engine)] == [1, 2, 3]
