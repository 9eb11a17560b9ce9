"""Database plumbing: engine, session factory, declarative Base, id generator, UTC times."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Integer,
    MetaData,
    String,
    any_,
    bindparam,
    event,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import InvalidatePoolError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, ORMExecuteState, Session, SessionTransaction
from sqlalchemy.sql.expression import FunctionElement
from sqlalchemy.types import TypeDecorator

from kith import sqlite_driver

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        # SQLite stores text: drop the offset so string comparison orders correctly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class utc_day(FunctionElement[str]):  # noqa: N801 (SQL functions are lower case)
    """SQL: the UTC day ("2026-11-26") of a `UTCDateTime` column, as text: for a page's many
    rows, what Python would otherwise make a datetime of, only to print its date."""

    type = String()
    inherit_cache = True


@compiles(utc_day, "sqlite")
def _utc_day_sqlite(element: utc_day, compiler: Any, **kw: Any) -> str:
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 10)"  # stored as UTC text


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"to_char(({column}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


def one_of(column: Any, name: str, dialect_name: str) -> ColumnElement[bool]:
    """SQL: `column` is one of the list bound as `name`. On PostgreSQL `= ANY(…)` of one
    array: one statement text for a list of any length, which PostgreSQL plans a few times
    per connection and then reuses; an `IN ($1, …)` was a new statement for each length (a
    page's post states come in dozens of lengths), each planned anew its first five runs on
    each connection (~0.7 ms of PostgreSQL's CPU each). On SQLite an expanding `IN (?, …)`."""
    if dialect_name == "postgresql":
        return cast(ColumnElement[bool], column == any_(bindparam(name, type_=ARRAY(column.type))))
    return cast(ColumnElement[bool], column.in_(bindparam(name, expanding=True)))


# A one-column integer primary key: BIGINT, but INTEGER on SQLite, where only a column
# declared exactly INTEGER is the table's rowid (one b-tree instead of a table and an index
# beside it: migration 0008).
ROWID_KEY = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base of every table, with constraint names both databases agree on; a
    table's one-column integer primary key is `ROWID_KEY`."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, int: BigInteger}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table = cls.__dict__.get("__table__")
        if table is None:
            return
        for column in table.columns:
            if column.type is ROWID_KEY:  # a foreign key takes its target's type: BIGINT
                column.type = BigInteger()
        keys = list(table.primary_key.columns)
        if len(keys) == 1 and type(keys[0].type) is BigInteger:
            keys[0].type = ROWID_KEY


def utcnow() -> datetime:
    """Now, timezone-aware UTC, to the microsecond."""
    return datetime.now(UTC)


_EPOCH_MS = 1_577_836_800_000  # 2020-01-01: keeps ids well inside a signed 64-bit integer.
EPOCH = datetime(2020, 1, 1, tzinfo=UTC)  # the moment id 0 stands for


class IdGenerator:
    """Time-sortable 64-bit ids: milliseconds since 2020 in the high bits, then this process's
    slot (6 bits), then a counter (10 bits).

    Mastodon uses the same shape (ms << 16), so `max_id`/`min_id` pagination is a range scan
    and ids can be compared with a time: `id_for_time(t)`. Two processes never make the same id
    when each holds its own slot (`kith.id_slots` claims one when a Runtime opens a database);
    until then the slot is random. 1,024 ids in one millisecond borrow the next millisecond.
    """

    SLOT_BITS = 6
    SEQ_BITS = 10

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._seq = 0
        self._slot = random.getrandbits(self.SLOT_BITS)

    def use_slot(self, slot: int | None) -> None:
        """Make ids in this slot from now on (None: a random one, while no slot is held)."""
        with self._lock:
            self._slot = random.getrandbits(self.SLOT_BITS) if slot is None else slot

    @property
    def slot(self) -> int:
        return self._slot

    def next_id(self) -> int:
        with self._lock:
            now_ms = int(time.time() * 1000) - _EPOCH_MS
            if now_ms <= self._last_ms:
                now_ms = self._last_ms
                self._seq += 1
                if self._seq >> self.SEQ_BITS:
                    now_ms += 1  # the millisecond's counter is used up: borrow the next one
                    self._seq = 0
            else:
                self._seq = 0
            self._last_ms = now_ms
            return (now_ms << 16) | (self._slot << self.SEQ_BITS) | self._seq


_ids = IdGenerator()


def new_id() -> int:
    """A fresh time-sortable id (see IdGenerator)."""
    return _ids.next_id()


def use_id_slot(slot: int | None) -> None:
    """This process's id slot (see kith.id_slots)."""
    _ids.use_slot(slot)


def id_for_time(moment: datetime) -> int:
    """The smallest id that could have been made at `moment` (for date-bounded range scans)."""
    return (int(moment.timestamp() * 1000) - _EPOCH_MS) << 16


# SQLite reads the database file through a memory map, as much of it as its build allows
# (2 GiB in Debian's): without one, each page a connection's own small cache lacks is a
# pread() and a copy, ~270 of them per Home request of the bench's community (strace -c),
# ~10 % of its CPU. The pages are the kernel's file cache, shared by every connection and
# process (they count in RSS once touched, as cache, not as the process's own memory). The
# write-ahead log is still read and written as before.
SQLITE_MMAP_BYTES = 1 << 40


# Each PostgreSQL session's settings. No JIT: PostgreSQL compiles a statement to machine code
# when its estimated cost passes `jit_above_cost` (100,000 by default), and the policy's
# statements reach that from their LIMIT over many correlated tests, however few rows they
# read: a Home page from its feed ran in 3 ms and compiled for 116 ms, every time (compiled
# code is not kept between runs). Our statements are short; none gains from it.
POSTGRES_SETTINGS = {"jit": "off"}


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; SQLite gets WAL, foreign keys, a busy timeout and a memory map."""
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"timeout": 30})
        # A worker runs a batch's deliveries at once, a session each: connections past the
        # pool's size would be opened (a thread, the pragmas) and closed every time.
        kwargs.setdefault("pool_size", 16)
        if url.startswith("sqlite+aiosqlite"):
            kwargs.setdefault("module", sqlite_driver.module())  # one thread hop per statement
        engine = create_async_engine(url, **kwargs)
        module = kwargs.get("module")
        if isinstance(module, sqlite_driver.OneHopDBAPI):
            module.mmap_bytes = SQLITE_MMAP_BYTES
            event.listen(engine.sync_engine, "engine_disposed", lambda _e: module.close_reader())

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
            cur.close()

        return engine
    # Up to 30 connections, as before (10 kept + 20 overflow), but all 30 kept: an overflow
    # connection is closed when it comes back, so 16 concurrent inbox deliveries opened a new
    # PostgreSQL session every ~7 deliveries (a backend forked, asyncpg's set-up; keeping them
    # cut the inbox's CPU by ~40 %). Last in, first out: a quiet process reuses its few recent
    # connections, and the others sit idle until needed (and are pinged then: `_ping_when_idle`).
    kwargs.setdefault("pool_size", 30)
    kwargs.setdefault("max_overflow", 0)
    kwargs.setdefault("pool_use_lifo", True)
    if url.startswith("postgresql+asyncpg"):
        kwargs.setdefault("connect_args", {"server_settings": POSTGRES_SETTINGS})
    engine = create_async_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine)
    return engine


# A pooled connection that has not been used for this long is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 1.0
_RETURNED_AT = "kith_returned_at"


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Ping a pooled connection before use only if it sat idle (PING_AFTER_IDLE_SECONDS): a
    connection that died meanwhile (the server restarted, an idle timeout, a proxy) is then
    replaced, and the pool's older connections with it, as `pool_pre_ping` does.

    `pool_pre_ping` pings at every checkout; asyncpg's ping is three round trips (BEGIN, `;`,
    ROLLBACK), and a session checks a connection out per transaction: ~0.2 ms of this
    process's CPU per checkout (and PostgreSQL's), 15 % of an inbox delivery's
    (docs/benchmarks.md). A connection back in the pool for less than a second is used without
    one; should it have died in that second, its statement fails once and SQLAlchemy
    invalidates the pool."""
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _returned(_dbapi_conn: Any, record: Any) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get(_RETURNED_AT)
        if returned is None or time.monotonic() - returned < PING_AFTER_IDLE_SECONDS:
            return  # new, or in use a moment ago
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as exc:
            if dialect.is_disconnect(exc, dbapi_conn, None):
                raise InvalidatePoolError(str(exc)) from exc  # the pool reconnects, as a pre-ping
            raise


_WROTE = "kith_uncommitted_writes"


@event.listens_for(Session, "after_flush")
def _flushed(session: Session, _context: Any) -> None:
    session.info[_WROTE] = True


@event.listens_for(Session, "do_orm_execute")
def _executed(state: ORMExecuteState) -> None:
    if not state.is_select:  # INSERT/UPDATE/DELETE, and any textual statement (to be safe)
        state.session.info[_WROTE] = True


@event.listens_for(Session, "after_transaction_end")
def _ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # committed or rolled back, not a savepoint
        session.info.pop(_WROTE, None)


def has_uncommitted_writes(db: AsyncSession | Session) -> bool:
    """Has this session written anything its transaction has not committed yet? What it reads
    now may still be rolled back: caches must not keep it."""
    return bool(db.info.get(_WROTE))


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def session_scope(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """Yield a session and make sure it is closed (and rolled back if left dirty)."""
    async with factory() as session:
        yield session
