"""A run of statements in the session's transaction, written once and run the cheapest way
each database allows.

A *plan* is a generator that yields `Step`s (a Core statement and its values) and receives
each step's rows (or None). `run_plan(db, plan)` runs it in the session's transaction (left
open: the caller commits or rolls back):
- on SQLite (`kith.sqlite_driver`), the whole plan runs on the connection's thread in one
  hand-off, with the write turn, each statement compiled once (`sqlite_writes.CompiledWrite`):
  no SQLAlchemy execution path, no hop per statement. Through a session, a statement cost
  0.3-0.7 ms of CPU (a new post ran ten); here it costs what SQLite does;
- on PostgreSQL, step by step on the session's asyncpg connection itself (`_on_asyncpg`:
  compiled once, asyncpg's prepared statements, no SQLAlchemy execution path), in the
  session's transaction (begun first, as SQLAlchemy would).

So a plan must be plain computation between its steps: it may run on another thread, and must
not touch the session, the event loop or anything not thread-safe (`new_id` is). Rows are as
the driver returns them (on SQLite no result processing): read plain integers and strings.
Errors are the driver's (`sqlite3.IntegrityError`…) on SQLite, SQLAlchemy's elsewhere; either
way nothing of the transaction is kept once the caller rolls back.

`read(db, statement, values)` is the same for one SELECT on every request's path (the token,
a page's states): on SQLite one hand-off without the write turn, its values through the
columns' result processors, so the rows equal what the session would return. Through the
session such a read cost ~0.37 ms of CPU, ~0.07 ms here. A session that has begun no
transaction (nothing written, nothing to flush) reads through the engine's shared reader
(`sqlite_driver.SharedReader`) instead, checking no connection out of the pool. On
PostgreSQL the SELECT goes to asyncpg itself (`_on_asyncpg`), and runs outside a transaction
until the session begins one (no BEGIN or ROLLBACK for a request that only reads); its errors
are SQLAlchemy's.
`loaded(db, Model, values)` makes an entity from a row of every column, as if the session
had loaded it."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import asyncpg
from sqlalchemy import Table, bindparam, inspect
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Mapper, configure_mappers, make_transient_to_detached
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.expression import BindParameter, Executable

from kith.sqlite_driver import NOT_INLINE, OneHopConnection, OneHopDBAPI
from kith.sqlite_writes import compiled_for

T = TypeVar("T")

Rows = list[Sequence[Any]]


@dataclass(frozen=True, slots=True)
class Step:
    """One statement of a plan: `values` by bind name, or a list of them (executemany, no
    expanding binds). `rows`: the plan wants the rows back (a SELECT, or RETURNING).
    The statement must live as long as the process (a module-level constant): it is compiled
    once, keyed by identity."""

    statement: Executable
    values: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    rows: bool = False


@dataclass(frozen=True, slots=True)
class CommitEarly:
    """A plan's last step when the caller will write nothing more before it commits: on
    SQLite the transaction is committed within the same hand-off, so the write turn is
    given back there (not held while the event loop gets round to the commit: with two web
    processes, the other one's writers waited that long), and the session's own commit then
    finds nothing to do. Elsewhere it does nothing (the session commits)."""


COMMIT_EARLY = CommitEarly()

Plan = Generator[Step | CommitEarly, Rows | None, T]


def column_binds(
    table: Table, columns: Sequence[str] | None = None, *, prefix: str = ""
) -> dict[str, BindParameter[Any]]:
    """Every column of `table` (or these `columns`) as a bind of its own type, named after it
    (with `prefix`): for an INSERT a plan runs (`insert(t).values(column_binds(t))`), whose
    values must then name every column."""
    chosen = table.columns if columns is None else [table.c[name] for name in columns]
    return {c.key: bindparam(prefix + c.key, type_=c.type) for c in chosen}


def insert_ignoring_conflicts(table: Table) -> dict[str, Insert]:
    """By dialect name: an INSERT of every column of `table` (`column_binds`) that skips a
    row a unique index already holds (`ON CONFLICT DO NOTHING`)."""
    return {
        name: insert(table).values(column_binds(table)).on_conflict_do_nothing()
        for name, insert in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
    }


async def run_plan(db: AsyncSession, plan: Plan[T]) -> T:
    """Run `plan` in the session's transaction (see the module); its return value."""
    held = await _connection(db)  # (flushes what the session holds first)
    if isinstance(held.driver, OneHopConnection):
        return await held.driver.run_writing(_run_on_thread, plan, held.dialect)
    try:
        step = next(plan)
        while True:
            if isinstance(step, CommitEarly):
                step = plan.send(None)
                continue
            step = plan.send(await _run_step_elsewhere(held, step))
    except StopIteration as done:
        return done.value


async def _run_step_elsewhere(held: _Held, step: Step) -> Rows | None:
    """A plan's step on PostgreSQL: through asyncpg itself, as `read` (a statement with a
    bound list SQLAlchemy would expand: through the session's connection)."""
    if isinstance(held.driver, AsyncAdapt_asyncpg_connection):
        compiled = compiled_for(step.statement, held.dialect)  # type: ignore[arg-type]
        if not compiled.expands:
            if isinstance(step.values, Mapping):
                rows = await _on_asyncpg(held, *compiled.render(step.values), writes=True)
                return rows if step.rows else None
            if step.rows:  # RETURNING from several rows: one statement each
                found: Rows = []
                for values in step.values:
                    found += await _on_asyncpg(held, *compiled.render(values), writes=True)
                return found
            each = [compiled.parameters(v) for v in step.values]
            await _on_asyncpg(held, compiled.sql, each, writes=True, many=True)
            return None
    result = await held.connection.execute(step.statement, step.values)
    return list(result.all()) if step.rows else None


async def read(db: AsyncSession, statement: Executable, values: Mapping[str, Any]) -> Rows:
    """The rows of one SELECT in the session's transaction, as the session would return them
    (see the module). What the session holds unflushed is flushed first, as autoflush would.
    The statement must live as long as the process (compiled once, keyed by identity)."""
    session = db.sync_session
    if session.get_transaction() is None and not (session.new or session.dirty or session.deleted):
        # Nothing begun, nothing to flush: on SQLite, the engine's shared reader, if quick.
        bind = session.get_bind()
        dbapi = bind.dialect.loaded_dbapi
        reader = dbapi.reader() if isinstance(dbapi, OneHopDBAPI) else None
        if reader is not None:
            compiled = compiled_for(statement, bind.dialect)  # type: ignore[arg-type]
            sql, params = compiled.render(values)
            found = reader.run(sql, _fetch, sql, params)
            if found is not NOT_INLINE:
                return compiled.rows(found)
    held = await _connection(db)
    if isinstance(held.driver, OneHopConnection):
        compiled = compiled_for(statement, held.dialect)  # type: ignore[arg-type]
        sql, params = compiled.render(values)
        return compiled.rows(await held.driver.run_reading(_fetch, sql, params))
    if isinstance(held.driver, AsyncAdapt_asyncpg_connection):
        compiled = compiled_for(statement, held.dialect)  # type: ignore[arg-type]
        if not compiled.expands:
            locks = getattr(statement, "_for_update_arg", None) is not None  # FOR UPDATE/SHARE
            return compiled.rows(await _on_asyncpg(held, *compiled.render(values), writes=locks))
    return list((await held.connection.execute(statement, values)).all())


async def _on_asyncpg(
    held: _Held, sql: str, params: Any, *, writes: bool, many: bool = False
) -> Any:
    """On PostgreSQL: the rows of `sql` run with `params` (or, `many`, once with each of
    `params`, no rows) on the session's asyncpg connection itself (its prepared statements,
    cached per connection), past SQLAlchemy's execution path (~0.2 ms of CPU a statement).
    In the connection's transaction, begun first for a write or a locking read (`writes`: its
    lock is then held until the session ends the transaction), as SQLAlchemy would; a read
    before the session has begun one runs on its own, as SQLite's reads outside a transaction
    (under READ COMMITTED each statement sees the latest commits either way), so a request
    that only reads sends no BEGIN and no ROLLBACK. A session asked for a stricter isolation
    begins its transaction first. Errors are SQLAlchemy's, as through the session; a
    connection the error leaves unusable is invalidated."""
    adapter = held.driver
    conn = cast(asyncpg.Connection, adapter._connection)  # (SQLAlchemy types it narrowly)
    try:
        async with adapter._execute_mutex:
            if adapter._transaction is None and (
                writes or adapter.isolation_level not in _OWN_SNAPSHOT
            ):
                await adapter._start_transaction()
            if many:
                return await conn.executemany(sql, params)
            return await conn.fetch(sql, *params)
    except Exception as error:
        lost = _ends_connection(conn, error)
        if lost:
            adapter._transaction = None
            await held.connection.invalidate()
        try:
            adapter._handle_exception(error)  # (raises it as its DB-API module's, if it has one)
        except Exception as translated:
            raise DBAPIError.instance(
                sql, params, translated, adapter.dbapi.Error, connection_invalidated=lost
            ) from error


def _ends_connection(connection: asyncpg.Connection, error: Exception) -> bool:
    """Is the connection unusable after this error? The server's refusal of a statement
    leaves it usable (the transaction, if any, is then rolled back as usual); the client's own
    errors (closed, protocol out of step) and a server error that ends the session do not."""
    if connection.is_closed() or not isinstance(error, asyncpg.PostgresError):
        return True
    return getattr(error, "severity", None) in ("FATAL", "PANIC")


# The isolation levels (asyncpg's names) under which a statement outside a transaction sees
# what one inside would: the server's default (READ COMMITTED; Kith asks for no other) and
# autocommit.
_OWN_SNAPSHOT = (None, "read_committed", "autocommit")


@dataclass(frozen=True, slots=True)
class _Held:
    """A session's connection in its current transaction: SQLAlchemy's, and the driver's
    beneath it (`OneHopConnection` on SQLite, asyncpg's adapted connection on PostgreSQL)."""

    transaction: Any  # the session's SessionTransaction it belongs to
    connection: AsyncConnection
    driver: Any
    dialect: Dialect


_HELD_CONNECTION = "kith_held_connection"


async def _connection(db: AsyncSession) -> _Held:
    """The session's connection, its transaction begun, after flushing what the session
    holds (as a statement would autoflush it), known again without SQLAlchemy's greenlet
    hops for the rest of the transaction (`_held_connection`)."""
    session = db.sync_session
    if session.new or session.dirty or session.deleted:
        await db.flush()
    held = _held_connection(db)
    if held is not None:
        return held
    conn = await db.connection()
    driver = (await conn.get_raw_connection()).dbapi_connection
    held = _Held(session.get_transaction(), conn, driver, conn.dialect)
    db.info[_HELD_CONNECTION] = held
    return held


def _held_connection(db: AsyncSession) -> _Held | None:
    """The connection of the session's current transaction, when `read` or `run_plan` has
    met it before: no hop through SQLAlchemy's greenlet to find it again."""
    held: _Held | None = db.info.get(_HELD_CONNECTION)
    if held is None:
        return None
    current = db.sync_session.get_transaction()
    if current is None or current is not held.transaction or not current.is_active:
        return None
    return held


def _fetch(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def loaded(db: AsyncSession, model: type[T], values: Sequence[Any]) -> T:
    """The `model` entity of a row of all its table's columns (in the table's order), held by
    the session as if it had loaded it: persistent, unchanged; the one it already holds, if
    any (as a query would give, without overwriting it)."""
    entity_class: Any = model  # (a class is hashable; mypy doubts type[T] is)
    mapper, keys, key_positions = _loading(entity_class)
    session = db.sync_session
    identity = mapper.identity_key_from_primary_key(tuple(values[i] for i in key_positions))
    held = session.identity_map.get(identity)
    if held is not None:
        return held
    manager = mapper.class_manager
    entity = manager.new_instance()
    state = instance_state(entity)
    state.dict.update(zip(keys, values, strict=True))
    if manager.dispatch.load:  # someone listens to loads: the public (slower) way
        make_transient_to_detached(entity)
        session.add(entity)
    else:  # as SQLAlchemy's loader registers a row it made an entity of
        state.key = identity
        state.identity_token = None
        state.session_id = session.hash_key
        session.identity_map._add_unpresent(state, identity)
    return entity


def loaded_rows(db: AsyncSession, model: type[T], rows: Sequence[Sequence[Any]]) -> list[T]:
    """`loaded` for rows that begin with every column of `model` (more may follow)."""
    entity_class: Any = model
    width = len(column_keys(entity_class))
    return [loaded(db, model, row[:width]) for row in rows]


@functools.cache
def column_keys(model: Any) -> list[str]:
    """The attribute names of `model`'s table's columns, in the table's order."""
    configure_mappers()  # (an entity made before any query needs its attributes set up)
    mapper: Mapper[Any] = inspect(model)
    return [mapper.get_property_by_column(c).key for c in mapper.local_table.columns]


@functools.cache
def _loading(model: Any) -> tuple[Mapper[Any], list[str], list[int]]:
    """`model`'s mapper, its column keys, and where its primary key lies in a row."""
    keys = column_keys(model)
    mapper: Mapper[Any] = inspect(model)
    columns: list[Any] = list(mapper.local_table.columns)
    return mapper, keys, [columns.index(c) for c in mapper.primary_key]


def _run_on_thread(conn: sqlite3.Connection, plan: Plan[T], dialect: Dialect) -> T:
    """On SQLite's thread: every step, sqlite3's own calls. sqlite3 begins the transaction
    before the first write, as it does for the session's statements."""
    try:
        step = next(plan)
        while True:
            step = plan.send(_run_step(conn, step, dialect))
    except StopIteration as done:
        return done.value


def _run_step(conn: sqlite3.Connection, step: Step | CommitEarly, dialect: Dialect) -> Rows | None:
    if isinstance(step, CommitEarly):
        if conn.in_transaction:
            conn.commit()
        return None
    compiled = compiled_for(step.statement, dialect)  # type: ignore[arg-type]
    if isinstance(step.values, Mapping):
        sql, params = compiled.render(step.values)
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if step.rows else None
    if step.rows:  # RETURNING from several rows: one statement each
        rows: Rows = []
        for values in step.values:
            rows.extend(conn.execute(*compiled.render(values)).fetchall())
        return rows
    conn.executemany(compiled.sql, [compiled.parameters(v) for v in step.values])
    return None
