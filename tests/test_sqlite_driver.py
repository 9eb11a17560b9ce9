"""kith.sqlite_driver: one hand-off per statement, and write turns among an engine's
connections instead of SQLite's sleeping busy handler."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError

from kith import sqlite_driver
from kith.db import make_engine
from tests.conftest import BACKEND

pytestmark = pytest.mark.skipif(BACKEND != "sqlite", reason="the SQLite driver only")


@pytest.fixture
async def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    eng = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
    async with eng.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
    yield eng
    await eng.dispose()


async def test_the_engine_uses_the_one_hop_driver(engine) -> None:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert isinstance(raw.driver_connection, object)
        assert isinstance(raw.dbapi_connection, sqlite_driver.OneHopConnection)


async def test_every_connection_reads_through_a_memory_map(engine) -> None:  # type: ignore[no-untyped-def]
    # (as much of the file as SQLite's build allows: at least the 1 GiB of the bench's seed)
    async with engine.connect() as first, engine.connect() as second:
        for conn in (first, second):
            assert (await conn.execute(text("PRAGMA mmap_size"))).scalar() >= 1 << 30
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 0


async def test_statements_results_counts_and_returning(engine) -> None:  # type: ignore[no-untyped-def]
    async with engine.begin() as conn:
        one = await conn.execute(text("INSERT INTO t (v) VALUES ('a')"))
        assert one.rowcount == 1 and one.lastrowid == 1
        many = await conn.execute(
            text("INSERT INTO t (v) VALUES (:v)"), [{"v": "b"}, {"v": "c"}, {"v": "d"}]
        )
        assert many.rowcount == 3
        back = await conn.execute(text("INSERT INTO t (v) VALUES ('e') RETURNING id, v"))
        assert back.all() == [(5, "e")]
        changed = await conn.execute(text("UPDATE t SET v = upper(v) WHERE id > 2"))
        assert changed.rowcount == 3
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT id, v FROM t ORDER BY id"))).all()
        assert rows == [(1, "a"), (2, "b"), (3, "C"), (4, "D"), (5, "E")]
        assert (await conn.execute(text("SELECT v FROM t WHERE id = 99"))).first() is None
        result = await conn.execute(text("SELECT id FROM t ORDER BY id"))
        assert result.fetchmany(2) == [(1,), (2,)] and result.fetchall() == [(3,), (4,), (5,)]
    async with engine.connect() as conn:  # streamed results keep aiosqlite's own cursor
        streamed = await conn.stream(text("SELECT id FROM t ORDER BY id"))
        assert [row async for row in streamed] == [(i,) for i in range(1, 6)]


async def test_errors_are_the_dbapis_and_a_failed_write_leaves_nothing_locked(engine) -> None:  # type: ignore[no-untyped-def]
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (id, v) VALUES (1, 'a')"))
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t (id, v) VALUES (1, 'again')"))
    with pytest.raises(OperationalError):
        async with engine.connect() as conn:
            await conn.execute(text("SELECT nope FROM t"))
    # The failed transaction was rolled back and its turn given back: another writes at once.
    started = time.perf_counter()
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (id, v) VALUES (2, 'b')"))
    assert time.perf_counter() - started < 1.0
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 2


async def test_a_rolled_back_write_is_gone(engine) -> None:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        await conn.execute(text("INSERT INTO t (v) VALUES ('x')"))
        await conn.rollback()
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 0


async def test_writers_take_turns_and_readers_do_not_wait(engine) -> None:  # type: ignore[no-untyped-def]
    order: list[str] = []
    first_wrote = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t (v) VALUES ('first')"))
            order.append("first wrote")
            first_wrote.set()
            await release_first.wait()  # holds its transaction open
            order.append("first commits")

    async def second() -> None:
        await first_wrote.wait()
        async with engine.begin() as conn:
            # No busy handler: without turns this write would fail with "database is locked".
            await conn.execute(text("PRAGMA busy_timeout=0"))
            await conn.execute(text("INSERT INTO t (v) VALUES ('second')"))
            order.append("second wrote")

    async def reader() -> None:
        await first_wrote.wait()
        async with engine.connect() as conn:  # a read needs no turn: WAL readers go on
            await conn.execute(text("SELECT count(*) FROM t"))
        order.append("read")
        release_first.set()

    started = time.perf_counter()
    await asyncio.gather(first(), second(), reader())
    assert order == ["first wrote", "read", "first commits", "second wrote"]
    # The second writer went on when the first committed, not after a busy-handler sleep.
    assert time.perf_counter() - started < 1.0


async def test_many_concurrent_writers_all_commit(engine) -> None:  # type: ignore[no-untyped-def]
    async def write(i: int) -> None:
        async with engine.begin() as conn:
            await conn.execute(text("PRAGMA busy_timeout=0"))  # turns, not SQLite's waiting
            await conn.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": str(i)})
            await asyncio.sleep(0)
            await conn.execute(text("UPDATE t SET v = v || '!' WHERE v = :v"), {"v": str(i)})

    try:
        await asyncio.gather(*(write(i) for i in range(40)))
    finally:
        async with engine.connect() as conn:
            await conn.execute(text("PRAGMA busy_timeout=30000"))
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t WHERE v LIKE '%!'"))).scalar() == 40


async def test_waiting_for_a_turn_gives_up_like_the_busy_timeout(
    engine,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sqlite_driver, "WRITE_WAIT_SECONDS", 0.2)
    async with engine.connect() as holder:
        await holder.execute(text("INSERT INTO t (v) VALUES ('held')"))
        with pytest.raises(OperationalError, match="other writers"):
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t (v) VALUES ('late')"))
        await holder.commit()
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT v FROM t"))).scalars().all() == ["held"]


def test_which_statements_begin_a_write() -> None:
    writes = sqlite_driver._writes
    assert not writes("SELECT 1") and not writes("  select * from t")
    assert not writes("PRAGMA foreign_keys=ON")
    assert not writes("WITH x AS (SELECT 1) SELECT * FROM x")
    assert not writes("(SELECT 1) UNION ALL (SELECT 2)")
    assert not writes("SELECT updated_at, deleted FROM t")
    assert writes("INSERT INTO t VALUES (1)") and writes("UPDATE t SET v = 1")
    assert writes("DELETE FROM t") and writes("REPLACE INTO t VALUES (1)")
    assert writes("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x")
    assert writes("CREATE TABLE u (id INTEGER)")


def test_which_statements_may_run_on_the_event_loops_thread() -> None:
    inline = sqlite_driver._inline
    assert inline("SELECT 1") == inline("WITH x AS (SELECT 1) SELECT * FROM x") == "read"
    assert inline("INSERT INTO t VALUES (1)") == inline("  update t SET v = 1") == "write"
    assert inline("DELETE FROM t") == "write"
    assert inline("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x") is None
    assert inline("PRAGMA foreign_keys=ON") is None and inline("COMMIT") is None
    assert inline("CREATE TABLE u (id INTEGER)") is None


async def test_a_statement_that_opens_no_transaction_holds_no_turn(engine) -> None:  # type: ignore[no-untyped-def]
    async with engine.connect() as reader:
        # Taken as a possible write, but SQLite opened no transaction: the turn is let go.
        await reader.execute(text("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY)"))
        async with engine.begin() as conn:
            await conn.execute(text("PRAGMA busy_timeout=0"))
            await conn.execute(text("INSERT INTO t (v) VALUES ('not kept waiting')"))
        await reader.execute(text("SELECT count(*) FROM t"))


# Holds a write transaction in another process until told to commit.
_HOLDER = """
import asyncio, sys
from sqlalchemy import text
from kith.db import make_engine

async def main():
    engine = make_engine(sys.argv[1])
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (v) VALUES ('other process')"))
        print("held", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await engine.dispose()

asyncio.run(main())
"""


async def test_processes_take_turns_too(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    holder = subprocess.Popen(  # noqa: ASYNC220 (the other process, started once)
        [sys.executable, "-c", _HOLDER, f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"

        async def write() -> None:
            async with engine.begin() as conn:
                # No busy handler: without the turn file this would fail at once.
                await conn.execute(text("PRAGMA busy_timeout=0"))
                await conn.execute(text("INSERT INTO t (v) VALUES ('this process')"))

        waiting = asyncio.create_task(write())
        await asyncio.sleep(0.3)
        assert not waiting.done()  # waiting for the other process's turn
        assert holder.stdin is not None
        holder.stdin.write("go\n")
        holder.stdin.flush()
        await asyncio.wait_for(waiting, 10)
    finally:
        holder.communicate(timeout=30)
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT v FROM t ORDER BY id"))).scalars().all()
    assert rows == ["other process", "this process"]


# A read that runs for a while: ~0.3-1 s of SQLite's work, far past the inline budget.
_LONG_READ = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) "
    "SELECT count(*) FROM n"
)


async def _loop_stalls_while(work) -> tuple[object, float]:  # type: ignore[no-untyped-def]
    """`work`'s result, and the longest the event loop went without running a ticker."""
    longest = 0.0
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            longest, last = max(longest, now - last), now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.01)
    try:
        result = await work
        await asyncio.sleep(0.01)  # (the ticker sees the last gap)
    finally:
        done.set()
        await ticker
    return result, longest


async def test_quick_reads_run_on_the_event_loops_thread(engine) -> None:  # type: ignore[no-untyped-def]
    """A quick read needs no hand-off: the connection's thread is never asked."""
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (v) VALUES ('a'), ('b')"))
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).dbapi_connection
        asked = []
        real = raw._connection._execute

        async def counted(fn, *args):  # type: ignore[no-untyped-def]
            asked.append(fn)
            return await real(fn, *args)

        raw._connection._execute = counted
        rows = (await conn.execute(text("SELECT v FROM t ORDER BY id"))).all()
        assert rows == [("a",), ("b",)] and asked == []


async def test_a_long_read_goes_to_the_thread_without_stalling_the_loop(engine) -> None:  # type: ignore[no-untyped-def]
    """Interrupted at the budget and run again on the connection's thread: the right answer,
    the event loop free meanwhile, and the statement's next runs sent there at once."""
    dbapi = engine.sync_engine.dialect.loaded_dbapi
    async with engine.connect() as conn:

        async def read() -> object:
            return (await conn.execute(text(_LONG_READ))).scalar_one()

        started = time.perf_counter()
        count, stall = await _loop_stalls_while(read())
        assert count == 3_000_000
        took = time.perf_counter() - started
        assert stall < max(0.1, took / 3), (stall, took)  # (the loop ran throughout)
        assert dbapi.slow_statements[_LONG_READ] == sqlite_driver.SLOW_RUNS_ON_THREAD
        assert (await conn.execute(text(_LONG_READ))).scalar_one() == 3_000_000
        assert dbapi.slow_statements[_LONG_READ] == sqlite_driver.SLOW_RUNS_ON_THREAD - 1


async def test_an_interrupted_read_leaves_its_transaction_as_it_was(engine) -> None:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        await conn.execute(text("INSERT INTO t (v) VALUES ('mine')"))  # uncommitted
        assert (await conn.execute(text(_LONG_READ))).scalar_one() == 3_000_000
        await conn.execute(text("INSERT INTO t (v) VALUES ('also mine')"))
        await conn.commit()
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT v FROM t ORDER BY id"))).all()
        assert rows == [("mine",), ("also mine",)]


async def test_a_long_first_write_is_undone_and_done_on_the_thread(engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The write that begins a transaction runs inline too; interrupted, SQLite undoes it,
    and it runs again on the thread: written once, in the transaction that goes on."""
    monkeypatch.setattr(sqlite_driver, "INLINE_BUDGET_SECONDS", 0.0)
    many = (
        "INSERT INTO t (v) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
        "WHERE i < 20000) SELECT 'x' || i FROM n"
    )
    async with engine.connect() as conn:
        assert (await conn.execute(text(many))).rowcount == 20000
        await conn.execute(text("INSERT INTO t (v) VALUES ('last')"))
        await conn.commit()
    dbapi = engine.sync_engine.dialect.loaded_dbapi
    assert many in dbapi.slow_statements
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 20001
        assert (await conn.execute(text("SELECT count(DISTINCT v) FROM t"))).scalar_one() == 20001


async def test_other_errors_of_an_inline_statement_are_raised(engine) -> None:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        with pytest.raises(OperationalError, match="no such table"):
            await conn.execute(text("SELECT * FROM nowhere"))
        await conn.rollback()
        await conn.execute(text("INSERT INTO t (id, v) VALUES (1, 'a')"))
        await conn.commit()
        with pytest.raises(IntegrityError):
            await conn.execute(text("INSERT INTO t (id, v) VALUES (1, 'again')"))
        await conn.rollback()
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT v FROM t"))).all() == [("a",)]


async def test_a_write_waiting_for_another_programs_lock_waits_on_the_thread(
    engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """A writer outside Kith's write turns (the sqlite3 shell, say) holds SQLite's lock: the
    first write of a transaction waits for it on the connection's thread, as the busy
    timeout allows, not in SQLite's busy handler on the event loop's."""
    other = sqlite3.connect(tmp_path / "d.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t (v) VALUES ('theirs')")
    loop = asyncio.get_running_loop()
    loop.call_later(0.4, other.execute, "COMMIT")
    async with engine.connect() as conn:

        async def write() -> None:
            await conn.execute(text("INSERT INTO t (v) VALUES ('mine')"))
            await conn.commit()

        started = time.perf_counter()
        _, stall = await _loop_stalls_while(write())
        assert time.perf_counter() - started >= 0.35  # it did wait for the other program
        assert stall < 0.2, stall
        await conn.execute(text("INSERT INTO t (v) VALUES ('then at once')"))
        await conn.commit()
    other.close()
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT v FROM t ORDER BY id"))).all()
        assert rows == [("theirs",), ("mine",), ("then at once",)]
