"""Migrations: an empty database upgrades to head, the result matches the models exactly, and
the history goes down and up again — on the database this run tests (SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from kith.db import make_engine
from kith.migrate import alembic_config, upgrade
from kith.models import Base
from tests.conftest import BACKEND, _create_pg_database, _drop_pg_database

# Full-text search lives outside the models on purpose (it differs per database: an FTS5
# virtual table and its shadow tables on SQLite, a tsvector column and GIN index on
# PostgreSQL), created by hand-written migration 0002.
SEARCH_NAMES = ("posts_fts", "search_document", "ix_posts_search_document")


@pytest.fixture
async def empty_url(tmp_path: Path) -> AsyncIterator[str]:
    """A brand-new, empty database of the kind this run tests."""
    if BACKEND == "postgres":
        url, name = await _create_pg_database()
        yield url
        await _drop_pg_database(name)
    else:
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"


def _mentions_search(diff: Any) -> bool:
    return any(name in repr(diff) for name in SEARCH_NAMES)


async def _run(url: str, fn: Any) -> Any:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def _model_diff(conn: Connection) -> list[Any]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return [d for d in compare_metadata(ctx, Base.metadata) if not _mentions_search(d)]


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def test_history__has_one_head() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1


async def test_empty_database__upgraded_to_head__matches_the_models(empty_url: str) -> None:
    # Given an empty database, when it is upgraded to head
    await asyncio.to_thread(upgrade, empty_url)
    # Then every table of the models exists
    tables = await _run(empty_url, _tables)
    assert {t.name for t in Base.metadata.sorted_tables} <= tables
    # And autogenerate finds nothing to change (models and migrations agree)
    assert await _run(empty_url, _model_diff) == []


async def test_history__goes_down_to_nothing_and_up_again(empty_url: str) -> None:
    # Given a database at head
    await asyncio.to_thread(upgrade, empty_url)
    # When it is downgraded all the way
    await asyncio.to_thread(command.downgrade, alembic_config(empty_url), "base")
    # Then no table of ours is left (only Alembic's bookkeeping)
    left = {t for t in await _run(empty_url, _tables) if not t.startswith("sqlite_")}
    assert left <= {"alembic_version"}
    # And upgrading again gives the same schema as the models
    await asyncio.to_thread(upgrade, empty_url)
    assert await _run(empty_url, _model_diff) == []
