"""SQLAlchemy's aiosqlite driver with at most one thread hand-off per statement, not four.

aiosqlite runs each call on its connection's own thread, and SQLAlchemy's adapter makes four
such calls per statement (make a cursor, execute, fetch all, close), each a queue put, a
thread wake-up and a wake-up of the event loop through its self-pipe. Measured on a post with
two mentions and two hashtags, those hand-offs were most of the event loop's time: ~150 per
post. Here one function runs on the connection's thread and does all four, returning the
rows, description, rowcount and lastrowid together.

Also, a connection knows whether SQLite has a transaction open (read on its thread after each
statement), so returning a connection to the pool after a commit costs no rollback hand-off.

**Write turns.** SQLite has one writer. A second connection that wants to write waits in
SQLite's busy handler, which sleeps 1-100 ms at a time: under concurrent posting that was
the p99 (seconds). So the connections of one engine take turns in the event loop instead: a
statement that would begin a write transaction first takes the engine's turn (an
`asyncio.Lock` per event loop), held until that connection commits, rolls back or closes. A
connection already in a transaction goes on without one (it holds SQLite's lock already).
Waiting for a turn gives up after WRITE_WAIT_SECONDS, as the busy timeout does.

**Quick statements on the event loop's own thread.** A read (SELECT, or WITH without a
write), and the write that begins a transaction, run at once on the event loop's thread,
without a hand-off, unless they outlast INLINE_BUDGET_SECONDS: then SQLite's progress
handler interrupts the statement and it runs again on the connection's thread, as that SQL
does for its next SLOW_RUNS_ON_THREAD runs. Sixteen connection threads handing the GIL
back and forth with the event loop cost more than the statements themselves: under 16
concurrent Home requests, ~220 context switches per request and nearly twice the CPU of
the same request alone (docs/benchmarks.md). Interrupting is safe only there: an
interrupted SELECT leaves its transaction as it was, and an interrupted write that began
the transaction leaves nothing (SQLite rolls the whole transaction back, which held only
it). A later write in a transaction, a commit (which may checkpoint the WAL), a plan
(`run_writing`) and a streamed result keep the thread. The first write never waits in
SQLite's busy handler on the event loop's thread: Kith's own writers take turns before it,
and when another program holds SQLite's lock (the sqlite3 shell, say) the write goes to the
connection's thread to wait for it there.

Used by `kith.db.make_engine` for every `sqlite+aiosqlite` URL (as the dialect's DB-API module);
server-side cursors (streamed results) keep aiosqlite's own path.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import re
import sqlite3
import sys
import threading
import time
import weakref
from collections import deque
from typing import Any

import aiosqlite
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

log = logging.getLogger(__name__)

_Outcome = tuple[Any, int, int | None, list[Any], bool]

WRITE_WAIT_SECONDS = 30.0  # as PRAGMA busy_timeout in kith.db.make_engine
_READ_ONLY = ("SELECT", "PRAGMA", "EXPLAIN", "VALUES")
_WRITE_WORDS = re.compile(r"\b(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)


INLINE_BUDGET_SECONDS = 0.005  # a statement running longer goes to the connection's thread
SLOW_RUNS_ON_THREAD = 64  # ... and so do that statement's next runs
_PROGRESS_EVERY = 1000  # SQLite virtual machine instructions between looks at the clock
_INLINE = ("SELECT", "WITH", "VALUES")  # reads that may run inline
_DML = ("INSERT", "UPDATE", "DELETE", "REPLACE")  # writes that may, beginning a transaction
NOT_INLINE: Any = object()  # (a sentinel: "run it on the thread", or "read the usual way")


def _writes(operation: str) -> bool:
    """Would this statement begin a write transaction?"""
    return _kind(operation)[0]


def _inline(operation: str) -> str | None:
    """Where this statement may run on the event loop's thread (see the module): "read"
    always, "write" when it begins its transaction, None never."""
    return _kind(operation)[1]


@functools.lru_cache(maxsize=4096)
def _kind(operation: str) -> tuple[bool, str | None]:
    """(`_writes`, `_inline`) of a statement, from its first word once per SQL text."""
    head = operation.lstrip(" \t\r\n(")[:8].upper()
    if head.startswith(_READ_ONLY):
        writes = False
    elif head.startswith("WITH"):
        writes = _WRITE_WORDS.search(operation) is not None
    else:
        writes = True
    if head.startswith(_INLINE) and not writes:
        return writes, "read"
    return writes, "write" if head.startswith(_DML) else None


def _run(conn: sqlite3.Connection, operation: str, parameters: Any) -> _Outcome:
    """The whole statement, its rows and the transaction state: on the connection's thread,
    or on the event loop's (`OneHopConnection.run_inline`)."""
    cursor = conn.cursor()
    try:
        cursor.execute(operation, () if parameters is None else parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, cursor.rowcount, cursor.lastrowid, rows, conn.in_transaction
    finally:
        cursor.close()


def _run_many(conn: sqlite3.Connection, operation: str, seq_of_parameters: Any) -> _Outcome:
    cursor = conn.cursor()
    try:
        cursor.executemany(operation, seq_of_parameters)
        return cursor.description, cursor.rowcount, cursor.lastrowid, [], conn.in_transaction
    finally:
        cursor.close()


def _run_fn(
    conn: sqlite3.Connection, fn: Any, args: tuple[Any, ...], release: Any
) -> tuple[Any, bool]:
    result = fn(conn, *args)
    if not conn.in_transaction and release is not None:
        release()  # see OneHopConnection._release_on_thread
    return result, conn.in_transaction


def _commit(conn: sqlite3.Connection, release: Any) -> None:
    conn.commit()
    if release is not None:
        release()


class _Budget:
    """INLINE_BUDGET_SECONDS for one statement on the event loop's thread: while armed,
    SQLite's progress handler interrupts the statement once past the deadline (`overran`
    then says that is why it failed)."""

    __slots__ = ("deadline", "overran", "_check")

    def __init__(self) -> None:
        self.deadline = 0.0
        self.overran = False
        self._check = self._past_deadline  # (bound once: SQLite calls it often)

    def arm(self, conn: sqlite3.Connection) -> None:
        self.overran = False
        self.deadline = time.perf_counter() + INLINE_BUDGET_SECONDS
        conn.set_progress_handler(self._check, _PROGRESS_EVERY)

    @staticmethod
    def disarm(conn: sqlite3.Connection) -> None:
        conn.set_progress_handler(None, 0)

    def _past_deadline(self) -> bool:
        """SQLite's progress handler during an inline statement: true interrupts it."""
        if time.perf_counter() > self.deadline:
            self.overran = True
        return self.overran


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor whose statements each cost one hand-off to the SQLite thread."""

    __slots__ = ("_description", "_rowcount", "_lastrowid", "_arraysize")

    def __init__(self, adapt_connection: OneHopConnection) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]  # no aiosqlite cursor: see _run
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self._arraysize = 1

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    async def _async_soft_close(self) -> None:
        return None  # nothing is open on the SQLite thread

    def close(self) -> None:
        self._rows.clear()

    def setinputsizes(self, *inputsizes: Any) -> None:
        return None

    def _take(self, outcome: _Outcome) -> None:
        self._description, self._rowcount, self._lastrowid, rows, in_tx = outcome
        self._rows = deque(rows)
        conn: OneHopConnection = self._adapt_connection  # type: ignore[assignment]
        conn.in_transaction = in_tx
        if not in_tx:
            conn.give_turn_back()  # it began no transaction (or ended one): nothing to hold

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        conn: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        adapt: OneHopConnection = self._adapt_connection  # type: ignore[assignment]
        await adapt.take_turn(operation)
        async with adapt._execute_mutex:
            try:
                outcome = NOT_INLINE
                inline = _inline(operation)
                if inline == "read":
                    outcome = adapt.run_inline(operation, _run, operation, parameters)
                elif inline == "write" and not conn._conn.in_transaction:
                    outcome = adapt.run_inline(operation, _run, operation, parameters, writes=True)
                if outcome is NOT_INLINE:
                    outcome = await conn._execute(_run, conn._conn, operation, parameters)
            except BaseException:
                # A failed statement may have begun a transaction (sqlite3 opens one
                # before DML): until told otherwise, assume one is open.
                self._adapt_connection.in_transaction = True  # type: ignore[attr-defined]
                raise
            self._take(outcome)
        return self

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        conn: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        await self._adapt_connection.take_turn(operation)  # type: ignore[attr-defined]
        async with self._adapt_connection._execute_mutex:
            try:
                outcome = await conn._execute(_run_many, conn._conn, operation, seq_of_parameters)
            except BaseException:
                # A failed statement may have begun a transaction (sqlite3 opens one
                # before DML): until told otherwise, assume one is open.
                self._adapt_connection.in_transaction = True  # type: ignore[attr-defined]
                raise
            self._take(outcome)
        return self


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    """aiosqlite's adapted connection with OneHopCursor, write turns, and no rollback when
    SQLite says no transaction is open (the pool rolls back every connection it takes back)."""

    __slots__ = (
        "in_transaction",
        "inline_ok",
        "_turn",
        "_budget",
        "_busy_ms",
    )
    _cursor_cls = OneHopCursor  # type: ignore[assignment]
    dbapi: OneHopDBAPI

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self.in_transaction = False  # a new connection has none
        self.inline_ok = True  # may be used from the event loop's thread (see connect)
        self._turn: asyncio.Lock | None = None
        self._budget = _Budget()
        self._busy_ms: int | None = None  # the connection's busy timeout, once read

    def run_inline(self, key: str, fn: Any, *args: Any, writes: bool = False) -> Any:
        """`fn(sqlite3_connection, *args)` here on the event loop's thread, or NOT_INLINE
        when it must run on the connection's thread instead: it outlasted
        INLINE_BUDGET_SECONDS (interrupted, nothing returned, nothing left written), or `key`
        (its SQL) did so lately, or (`writes`) SQLite's lock is held by another program, for
        which it must not wait here. `fn` runs one statement, a read or (`writes`) the
        transaction's first write (see the module)."""
        if not self.inline_ok:
            return NOT_INLINE
        slow = self.dbapi.slow_statements
        runs_left = slow.get(key)
        if runs_left is not None:
            if runs_left <= 1:
                del slow[key]
            else:
                slow[key] = runs_left - 1
            return NOT_INLINE
        conn: sqlite3.Connection = self._connection._conn
        began = not conn.in_transaction
        budget = self._budget
        budget.arm(conn)
        if writes:  # no waiting in SQLite's busy handler here (the turns cover Kith's own)
            if self._busy_ms is None:
                self._busy_ms = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
            conn.execute("PRAGMA busy_timeout = 0")
        try:
            return fn(conn, *args)
        except sqlite3.OperationalError as error:
            busy = writes and error.sqlite_errorcode == sqlite3.SQLITE_BUSY
            if not (budget.overran or busy):
                raise
            if began and conn.in_transaction:
                conn.rollback()  # (SQLite has already rolled an interrupted write back)
            if budget.overran:
                self.dbapi.note_slow(key)
            return NOT_INLINE
        finally:
            budget.disarm(conn)
            if writes:
                conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")

    async def take_turn(self, operation: str) -> None:
        """Before a statement: if it would begin a write transaction, wait for the turn."""
        if self.in_transaction or self._turn is not None or not _writes(operation):
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WRITE_WAIT_SECONDS
        lock = self.dbapi.turn_lock()
        try:
            async with asyncio.timeout(WRITE_WAIT_SECONDS):  # no task, as wait_for makes
                await lock.acquire()
        except TimeoutError:
            raise sqlite3.OperationalError(
                "database is locked (this process's other writers held it too long)"
            ) from None
        try:
            await self.dbapi.take_file_turn(max(0.0, deadline - loop.time()))
        except BaseException:
            lock.release()
            raise
        self._turn = lock

    async def run_writing(self, fn: Any, *args: Any) -> Any:
        """`fn(sqlite3_connection, *args)` on the connection's thread, in one hand-off, with
        the write turn (`kith.sqlite_writes`, `kith.db_plans`). A transaction `fn` leaves
        open stays open, with the turn, until the connection commits or rolls back."""
        await self.take_turn("INSERT")
        return await self._hand_off(fn, args, self._release_on_thread())

    async def run_reading(self, fn: Any, sql: str, *args: Any) -> Any:
        """`fn(sqlite3_connection, sql, *args)` without the write turn, on the event loop's
        thread if it is quick, else on the connection's in one hand-off (see the module): `fn`
        must only read (`kith.db_plans.read`), and may run twice."""
        async with self._execute_mutex:
            result = self.run_inline(sql, fn, sql, *args)
        if result is not NOT_INLINE:
            return result
        return await self._hand_off(fn, (sql, *args), None)

    async def _hand_off(self, fn: Any, args: tuple[Any, ...], release: Any) -> Any:
        conn: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        async with self._execute_mutex:
            try:
                result, self.in_transaction = await conn._execute(
                    _run_fn, conn._conn, fn, args, release
                )
            except BaseException:
                self.in_transaction = True  # unknown: the pool's rollback ends it
                raise
        if not self.in_transaction:
            self.give_turn_back()
        return result

    def give_turn_back(self) -> None:
        if self._turn is not None:
            self.dbapi.give_file_turn()
            self._turn.release()
            self._turn = None

    def rollback(self) -> None:
        try:
            if self.in_transaction:
                super().rollback()
                self.in_transaction = False
        finally:
            self.give_turn_back()

    def commit(self) -> None:
        if self.in_transaction:  # else nothing is open (a plan committed early: db_plans)
            # A failed commit keeps the turn: the rollback that follows frees it.
            conn: aiosqlite.Connection = self._connection  # type: ignore[assignment]
            if conn._connection is not None:  # (as SQLAlchemy's adapter checks)
                try:
                    await_(conn._execute(_commit, conn._conn, self._release_on_thread()))
                except Exception as error:
                    self._handle_exception(error)
        self.in_transaction = False
        self.give_turn_back()

    def _release_on_thread(self) -> Any:
        """What SQLite's thread calls once this connection's transaction has ended there:
        the other processes' writers may go on at once, rather than when this event loop
        next gets round to it (under load, milliseconds during which the write turn was
        held for nothing). Safe from that thread: this process's other writers wait for the
        in-process turn, which only the event loop gives back, so no one here takes the
        file turn meanwhile. The in-process turn is given back by a callback the thread
        queues on the loop, ahead of the one that resumes the writer: the next writer here
        is woken one pass of the loop sooner (under load each pass runs every request in
        hand, and a post's wait for the turn was most of its latency: docs/benchmarks.md,
        session 11)."""
        turn = self._turn
        if turn is None:
            return None
        loop = asyncio.get_running_loop()
        give_file_turn = self.dbapi.give_file_turn

        def release() -> None:
            give_file_turn()
            with contextlib.suppress(RuntimeError):  # (the loop closed: nothing waits there)
                loop.call_soon_threadsafe(self._give_back, turn)

        return release

    def _give_back(self, turn: asyncio.Lock) -> None:
        """The in-process turn `turn` given back, if this connection still holds it."""
        if self._turn is turn:
            self._turn = None
            turn.release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.give_turn_back()

    def terminate(self) -> None:
        try:
            super().terminate()
        finally:
            self.give_turn_back()


class SharedReader:
    """One plain sqlite3 connection of the engine's, read-only, for the quick reads of
    sessions that have not begun a transaction (`kith.db_plans.read`), on the event loop's
    thread: no connection checked out of the pool, no transaction begun, nothing given back
    at the end. A request that only reads (a timeline: the token, the page, its states)
    spent ~0.25 ms of its ~1.9 ms of CPU on its session's connection alone
    (docs/benchmarks.md, session 11). Each statement sees the latest commit, as it would on a
    pooled connection outside a transaction (SQLite's reads are their own transaction).
    Used only from the thread that opened it; a statement that outlasts
    INLINE_BUDGET_SECONDS, or finds the database busy, is interrupted and the caller reads
    the usual way."""

    __slots__ = ("_conn", "_thread", "_dbapi", "_budget")

    def __init__(self, path: str, dbapi: OneHopDBAPI) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA query_only = ON")
        self._conn.execute("PRAGMA busy_timeout = 0")
        self._conn.execute(f"PRAGMA mmap_size = {dbapi.mmap_bytes}")
        self._thread = threading.get_ident()
        self._dbapi = dbapi
        self._budget = _Budget()

    def run(self, key: str, fn: Any, *args: Any) -> Any:
        """`fn(sqlite3_connection, *args)` for one SELECT (`key` is its SQL), or NOT_INLINE
        (not this thread, a slow statement lately, interrupted, busy)."""
        if threading.get_ident() != self._thread or key in self._dbapi.slow_statements:
            return NOT_INLINE
        conn, budget = self._conn, self._budget
        budget.arm(conn)
        try:
            return fn(conn, *args)
        except sqlite3.OperationalError as error:
            if budget.overran:
                self._dbapi.note_slow(key)
            elif error.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                raise
            return NOT_INLINE
        finally:
            budget.disarm(conn)

    def close(self) -> None:
        self._conn.close()


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The DB-API module handed to SQLAlchemy (`create_async_engine(..., module=...)`): one
    per engine, so it holds the engine's write turns.

    Between processes (web workers, a separate job worker) the turn is an exclusive `flock`
    on `<database>-writer`, taken by the process's turn holder: a process waiting for it
    wakes as soon as it is free, where SQLite's busy handler would sleep up to 100 ms at a
    time. A wait that gives up (WRITE_WAIT_SECONDS) leaves a thread blocked in `flock`; the
    engine then stops using the file (SQLite's own locking still holds) rather than risk
    believing it holds a lock that thread will take and drop."""

    def __init__(self, aiosqlite: Any, sqlite: Any) -> None:
        super().__init__(aiosqlite, sqlite)
        # One lock per event loop: a lock is bound to the loop it first waited in.
        self._turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._turn_file: int | None = None  # a descriptor of <database>-writer
        self._file_turn_held = False
        self._database: str | None = None  # the file's path, once a connection was made
        self._reader: SharedReader | None = None
        self._reader_failed = False
        self.mmap_bytes = 0  # PRAGMA mmap_size of the SharedReader (kith.db.make_engine sets it)
        # The SQL of statements that outlasted the inline budget lately, and how many more
        # runs each has on the connection's thread (OneHopConnection.run_inline).
        self.slow_statements: dict[str, int] = {}

    def note_slow(self, sql: str) -> None:
        if len(self.slow_statements) >= 1024:  # (a process meets few such statements)
            self.slow_statements.clear()
        self.slow_statements[sql] = SLOW_RUNS_ON_THREAD

    def reader(self) -> SharedReader | None:
        """The engine's SharedReader (made on first use, on this thread), or None: no file
        (an in-memory database), or it could not be opened."""
        if self._reader is None and self._database is not None and not self._reader_failed:
            try:
                self._reader = SharedReader(self._database, self)
            except sqlite3.Error:
                log.warning("no shared reader for %s: reads check out connections", self._database)
                self._reader_failed = True
        return self._reader

    def close_reader(self) -> None:
        """Close the SharedReader (the engine is disposed); a later read makes a new one."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def turn_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._turns.get(loop)
        if lock is None:
            lock = self._turns[loop] = asyncio.Lock()
        return lock

    def _open_turn_file(self, database: Any) -> None:
        if self._turn_file is not None or not isinstance(database, str | os.PathLike):
            return
        name = os.fspath(database)
        if not name or name == ":memory:" or name.startswith("file:"):
            return
        self._database = name
        try:
            self._turn_file = os.open(f"{name}-writer", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            log.warning("no write-turn file beside %s: SQLite's locking alone", name)

    async def take_file_turn(self, within: float) -> None:
        fd = self._turn_file
        if fd is None:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting = asyncio.get_running_loop().run_in_executor(
                None, fcntl.flock, fd, fcntl.LOCK_EX
            )
            try:
                await asyncio.wait_for(asyncio.shield(waiting), within)
            except BaseException:
                self._turn_file = None  # see the class docstring; the descriptor is left open
                waiting.add_done_callback(lambda _f: _unlock_quietly(fd))
                if isinstance(sys.exc_info()[1], TimeoutError):
                    raise sqlite3.OperationalError(
                        "database is locked (another process's writer held it too long)"
                    ) from None
                raise
        self._file_turn_held = True

    def give_file_turn(self) -> None:
        if self._file_turn_held:
            self._file_turn_held = False
            if self._turn_file is not None:
                fcntl.flock(self._turn_file, fcntl.LOCK_UN)

    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        creator_fn = kw.pop("async_creator_fn", None)
        self._open_turn_file(arg[0] if arg else kw.get("database"))
        if creator_fn:
            connection = creator_fn(*arg, **kw)
        else:
            # Quick statements run on the event loop's thread too, never while the
            # connection's own thread runs something (the connection's mutex, and each call
            # awaited before the next).
            connection = self.aiosqlite.connect(*arg, **{**kw, "check_same_thread": False})
            connection._thread.daemon = True  # as SQLAlchemy's own driver does
        adapted = OneHopConnection(self, await_(connection))
        adapted.inline_ok = creator_fn is None  # (a creator's connection may refuse threads)
        return adapted


def _unlock_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)


def module() -> OneHopDBAPI:
    return OneHopDBAPI(aiosqlite, sqlite3)
