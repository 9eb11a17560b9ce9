"""Short write transactions on SQLite in one hand-off to its thread, past SQLAlchemy's
execution path: for the hottest writes only (an inbox delivery: two INSERTs and a commit).

Through a session, each statement and the commit is a hop to the connection's thread, and
SQLAlchemy's path around it (session, transaction, pool checkout, execution context, result,
events) cost ~0.7 ms of an inbox delivery's ~1.0 ms of CPU (docs/benchmarks.md). Here:
- `CompiledWrite` compiles a Core statement once per dialect and turns named values into its
  positional parameters with the statement's own bind processors (JSON, `UTCDateTime`…), so
  the rows are exactly what the same statement run through a session would write;
- `write_in_one_hop` checks a connection out of the engine's pool, takes the engine's write
  turn (`kith.sqlite_driver`), and runs a function on SQLite's thread that executes the
  statements; the transaction is committed there, or rolled back if the function raises.

Errors are sqlite3's own (`sqlite3.IntegrityError`…), not SQLAlchemy's."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import weakref
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.expression import ClauseElement
from sqlalchemy.util.concurrency import greenlet_spawn

from kith.sqlite_driver import OneHopConnection, OneHopDBAPI

T = TypeVar("T")


class CompiledWrite:
    """A statement compiled for one dialect with positional parameters: SQLite's (qmark;
    an expanding bind, `IN (…)` of a list, becomes as many `?` as its list has values, per
    call) or asyncpg's (`$1`, for `kith.db_plans` on PostgreSQL; there a bound list is one
    array, `db.one_of`, and a statement that `expands` is left to SQLAlchemy)."""

    __slots__ = ("sql", "_slots", "_parts", "_by_lengths", "_results")

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        if not compiled.positional or compiled.positiontup is None:
            raise ValueError("CompiledWrite is for positional parameters")
        self.sql = compiled.string
        positions = list(compiled.positiontup)
        bind_of = {name: compiled.binds[name] for name in positions}
        fixed: dict[str, Any] = {}  # the values of fixed lists' items, by position
        if dialect.paramstyle != "qmark" and "__[POSTCOMPILE_" in self.sql:
            self.sql, positions, fixed = _expand_fixed_lists(compiled, bind_of)
        # Per position: (value's name, fixed value, processor, expanding); a name repeated in
        # the SQL (INSERT … SELECT … WHERE) fills each of its positions.
        self._slots: list[tuple[str, Any, Callable[[Any], Any] | None, bool]] = []
        for name in positions:
            bind = bind_of[name]
            value = None if bind.required else fixed.get(name, bind.effective_value)  # a literal
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)  # as executed
            expanding = bind.expanding and name not in fixed
            self._slots.append((name if bind.required else "", value, process, expanding))
        # The SQL between expanding binds' markers (`__[POSTCOMPILE_name]`), in order.
        self._parts = _POSTCOMPILE.split(self.sql)[::2] if "__[POSTCOMPILE_" in self.sql else []
        self._by_lengths: dict[tuple[int, ...], str] = {}
        # A SELECT's (or RETURNING's) columns: each one's result processor, as SQLAlchemy's
        # own results apply them (SQLite reports no column types: None, as there).
        processors = [
            column.type._cached_result_processor(dialect, None)
            for column in compiled._result_columns
        ]
        self._results = [(i, p) for i, p in enumerate(processors) if p is not None]

    @property
    def expands(self) -> bool:
        """Has it an expanding bind (rendered here in SQLite's `?` only)?"""
        return bool(self._parts)

    def rows(self, raw: list[Any]) -> list[Any]:
        """The driver's rows of this statement as a statement run through SQLAlchemy would
        give them: each value through its column type's result processor."""
        processors = self._results
        if not processors:
            return raw
        out = []
        for row in raw:
            values = list(row)
            for i, process in processors:
                values[i] = process(values[i])
            out.append(values)
        return out

    def render(self, values: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]]:
        """The SQL and positional parameters for `values` (by bind name); KeyError if one is
        missing."""
        out: list[Any] = []
        lengths: list[int] = []
        for name, fixed, process, expanding in self._slots:
            value = values[name] if name else fixed
            if expanding:
                items = list(value)
                lengths.append(len(items))
                out.extend(items if process is None else [process(v) for v in items])
            else:
                out.append(value if process is None else process(value))
        if not lengths:
            return self.sql, tuple(out)
        key = tuple(lengths)
        sql = self._by_lengths.get(key)
        if sql is None:
            marks = [", ".join("?" * n) for n in lengths]
            sql = self._parts[0] + "".join(
                m + part for m, part in zip(marks, self._parts[1:], strict=True)
            )
            if len(self._by_lengths) < 64:
                self._by_lengths[key] = sql
        return sql, tuple(out)

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional parameters for `values` (by bind name); KeyError if one is missing.
        For statements without expanding binds (see `render`)."""
        return self.render(values)[1]


_POSTCOMPILE = re.compile(r"__\[POSTCOMPILE_(\w+)\]")


def _expand_fixed_lists(
    compiled: SQLCompiler, bind_of: dict[str, BindParameter[Any]]
) -> tuple[str, list[str], dict[str, Any]]:
    """For numbered parameters (asyncpg's `$1`): the statement with its fixed lists (an `IN`
    of the policy's states…) expanded once, as SQLAlchemy expands them at each execution, its
    positions, and the lists' items by position (`bind_of` learns each item's bind). A bound
    list (a required expanding bind) is left as it is: the statement still `expands`."""
    if any(bind.required and bind.expanding for bind in bind_of.values()):
        return compiled.string, list(bind_of), {}
    required = {name: None for name, bind in bind_of.items() if bind.required}
    expanded = compiled._process_parameters_for_postcompile(compiled.construct_params(required))
    items: dict[str, Any] = {}
    for original, names in (expanded.parameter_expansion or {}).items():
        for name in names:
            bind_of[name] = bind_of[original]
            items[name] = expanded.parameters[name]
    return expanded.statement, list(expanded.positiontup or ()), items


_COMPILED: weakref.WeakKeyDictionary[Dialect, dict[int, tuple[ClauseElement, CompiledWrite]]] = (
    weakref.WeakKeyDictionary()
)


def compiled_write(statement: ClauseElement, engine: AsyncEngine) -> CompiledWrite:
    """`statement` compiled for this engine's dialect, once (the statement must live as long
    as the process: module-level constants)."""
    return compiled_for(statement, engine.sync_engine.dialect)


def compiled_for(statement: ClauseElement, dialect: Dialect) -> CompiledWrite:
    """`compiled_write` by dialect. May run on SQLite's threads (`kith.db_plans`): two of them
    compiling the same statement at once store equal results, which is harmless. The entry
    holds the statement itself, so its id cannot be reused by another while cached."""
    by_statement = _COMPILED.get(dialect)
    if by_statement is None:
        by_statement = _COMPILED.setdefault(dialect, {})
    found = by_statement.get(id(statement))
    if found is None or found[0] is not statement:
        found = by_statement[id(statement)] = (statement, CompiledWrite(statement, dialect))
    return found[1]


def is_one_hop(engine: AsyncEngine) -> bool:
    """Does this engine run on `kith.sqlite_driver` (so `write_in_one_hop` works)?"""
    return isinstance(engine.sync_engine.dialect.loaded_dbapi, OneHopDBAPI)


def _transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """On SQLite's thread: `work`, then commit; roll back if it raises."""
    try:
        result = work(conn)
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    if conn.in_transaction:
        conn.commit()
    return result


async def write_in_one_hop(engine: AsyncEngine, work: Callable[[sqlite3.Connection], T]) -> T:
    """Run `work(connection)` — plain sqlite3 calls with `CompiledWrite` parameters — as one
    write transaction on a pooled connection's thread, with the engine's write turn, and
    commit it (rolled back if `work` raises, the exception passed on). `work` must not
    commit, block on anything but SQLite, or touch the event loop."""
    fairy = await greenlet_spawn(engine.sync_engine.raw_connection)
    try:
        connection = fairy.dbapi_connection
        assert isinstance(connection, OneHopConnection)
        return await connection.run_writing(_transaction, work)
    finally:
        await greenlet_spawn(fairy.close)


# --- group commit ---------------------------------------------------------------------------


def _group(works: list[Callable[[sqlite3.Connection], Any]], conn: sqlite3.Connection) -> list:
    """On SQLite's thread: each work in its own savepoint (one that raises is undone alone,
    its exception kept for its caller), all in one transaction."""
    if not conn.in_transaction:
        conn.execute("BEGIN")  # so that releasing a savepoint commits nothing yet
    outcomes: list[tuple[bool, Any]] = []
    for work in works:
        conn.execute("SAVEPOINT kith_group_item")
        try:
            outcomes.append((True, work(conn)))
        except Exception as exc:
            conn.execute("ROLLBACK TO kith_group_item")
            outcomes.append((False, exc))
        conn.execute("RELEASE kith_group_item")
    return outcomes


class GroupInterrupted(Exception):
    """The group a write was in stopped before it knew its outcome (the loop is closing)."""


class GroupWriter:
    """Group commit for one engine's small, independent writes (an inbox delivery's two
    INSERTs): a write that arrives while a group is being written waits and goes into the
    next group, and a group is one hand-off to SQLite's thread, one write turn and one
    commit, however many writes it holds. Under 16 concurrent deliveries that divides the
    per-commit cost (WAL frames for the same few pages, the hand-offs) by the group's size;
    a lone write costs as `write_in_one_hop` does. Each write keeps its own outcome: it is in
    a savepoint of its own, so one that raises is undone alone.

    A group is written by a task of its own, not by one of its callers: a caller that is
    cancelled (its client went away) must not leave the others of its group without an
    outcome, nor pass its cancellation on to them."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._waiting: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._writing: asyncio.Task[None] | None = None

    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` (as for `write_in_one_hop`) in the next group; its result once that
        group is committed, or its exception (or the group's, if the commit failed)."""
        mine: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((work, mine))
        if self._writing is None:
            self._start_next_group()
        return cast(T, await mine)

    def _start_next_group(self) -> None:
        """Write what waits (writers cancelled meanwhile dropped), or stand idle."""
        group = [(w, f) for w, f in self._waiting if not f.done()]
        self._waiting = []
        loop = asyncio.get_running_loop()
        self._writing = loop.create_task(self._write(group)) if group else None

    async def _write(self, group: list[tuple[Callable[[sqlite3.Connection], Any], Any]]) -> None:
        try:
            outcomes = await write_in_one_hop(self.engine, partial(_group, [w for w, _ in group]))
        except Exception as exc:  # the transaction as a whole failed: nobody's write is kept
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
        except BaseException:  # this task was cancelled (the loop is closing): stop here
            stopped, self._waiting, self._writing = group + self._waiting, [], None
            for _, future in stopped:
                if not future.done():
                    future.set_exception(GroupInterrupted("the write was interrupted"))
            raise
        else:
            for (_, future), (ok, value) in zip(group, outcomes, strict=True):
                if future.done():  # its caller was cancelled meanwhile
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        self._start_next_group()


_GROUPS: weakref.WeakKeyDictionary[Any, dict[asyncio.AbstractEventLoop, GroupWriter]] = (
    weakref.WeakKeyDictionary()
)


def group_writer(engine: AsyncEngine) -> GroupWriter:
    """The engine's group writer for the running event loop."""
    by_loop = _GROUPS.get(engine.sync_engine)
    if by_loop is None:
        by_loop = _GROUPS[engine.sync_engine] = {}
    loop = asyncio.get_running_loop()
    writer = by_loop.get(loop)
    if writer is None:
        if len(by_loop) > 8:  # loops of tests that ended
            by_loop.clear()
        writer = by_loop[loop] = GroupWriter(engine)
    return writer
