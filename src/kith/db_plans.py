"""A run of statements in the session's transaction, written once and run the cheapest way
each database allows.

A *plan* is a generator that yields `Step`s (a Core statement and its values) and receives
each step's rows (or None). `run_plan(db, plan)` runs it in the session's transaction (left
open: the caller commits or rolls back):
- on SQLite (`kith.sqlite_driver`), the whole plan runs on the connection's thread in one
  hand-off, with the write turn, each statement compiled once (`sqlite_writes.CompiledWrite`):
  no SQLAlchemy execution path, no hop per statement. Through a session, a statement cost
  0.3-0.7 ms of CPU (a new post ran ten); here it costs what SQLite does;
- elsewhere (PostgreSQL), step by step through the session's connection.

So a plan must be plain computation between its steps: it may run on another thread, and must
not touch the session, the event loop or anything not thread-safe (`new_id` is). Rows are as
the driver returns them (on SQLite no result processing): read plain integers and strings.
Errors are the driver's (`sqlite3.IntegrityError`…) on SQLite, SQLAlchemy's elsewhere; either
way nothing of the transaction is kept once the caller rolls back."""

from __future__ import annotations

import sqlite3
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Table, bindparam
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.expression import BindParameter, Executable

from kith.sqlite_driver import OneHopConnection
from kith.sqlite_writes import compiled_for, is_one_hop

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
    await db.flush()  # what the session holds goes first, as a statement would autoflush it
    conn = await db.connection()
    if is_one_hop(conn.engine):
        raw = await conn.get_raw_connection()
        adapter = raw.dbapi_connection
        assert isinstance(adapter, OneHopConnection)
        dialect = conn.dialect
        return await adapter.run_writing(_run_on_thread, plan, dialect)
    try:
        step = next(plan)
        while True:
            if isinstance(step, CommitEarly):
                step = plan.send(None)
                continue
            result = await conn.execute(step.statement, step.values)
            step = plan.send(list(result.all()) if step.rows else None)
    except StopIteration as done:
        return done.value


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
