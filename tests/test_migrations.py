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
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Connection

from kith import policy
from kith.accounts.models import Account
from kith.config import Settings
from kith.db import make_engine
from kith.graph import service as graph
from kith.migrate import alembic_config, upgrade
from kith.models import Base
from kith.posts import service as posts
from kith.posts.models import Like
from kith.runtime import Runtime
from kith.timelines import feeds
from kith.timelines.models import HomeEntry
from tests.conftest import BACKEND, _create_pg_database, _drop_pg_database
from tests.world import person, post

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


@pytest.mark.skipif(BACKEND != "sqlite", reason="0008 rebuilds SQLite's tables only")
async def test_integer_keys__rebuild_keeps_rows_keys_indexes_and_triggers(
    empty_url: str, settings: Settings
) -> None:
    # Given a community written at 0007 (ids declared BIGINT)
    await asyncio.to_thread(upgrade, empty_url, "0007")
    settings = settings.model_copy(update={"database_url": empty_url})
    rt = Runtime.from_settings(settings)
    async with rt.sessions() as db:
        ana, bo = await person(db, "ana"), await person(db, "bo")
        await graph.follow(db, bo.id, ana.id)
        first = await post(db, ana, "hello #kith @bo")
        await posts.like(db, policy.Viewer(bo.id), first.id)
        await feeds.build(db, bo.id)
    await rt.close()
    before = await _run(empty_url, _snapshot)

    # When it is upgraded
    await asyncio.to_thread(upgrade, empty_url)

    # Then every row, index (by its text) and trigger is there, the keys are the rowids,
    # and no row refers to a missing one
    after = await _run(empty_url, _snapshot)
    assert after["rows"] == before["rows"] and after["rows"]["posts"] == 1
    assert after["indexes"] == before["indexes"] and after["triggers"] == before["triggers"]
    assert after["problems"] == []
    assert "\n\tid INTEGER NOT NULL," in after["ddl"]["posts"]
    assert "\n\taccount_id INTEGER NOT NULL," in after["ddl"]["account_stats"]
    assert "\n\taccount_id BIGINT NOT NULL," in after["ddl"]["posts"]  # not a key: as it was
    assert "\n\tfollower_id BIGINT NOT NULL," in after["ddl"]["follows"]  # two-column key
    # And the triggers and foreign keys work on the rebuilt tables
    rt = Runtime.from_settings(settings)
    async with rt.sessions() as db:
        bo_id = (await db.scalars(select(Account.id).where(Account.username == "bo"))).one()
        ana_id = (await db.scalars(select(Account.id).where(Account.username == "ana"))).one()
        ana = await db.get(Account, ana_id)
        assert ana is not None
        later = await post(db, ana, "after the rebuild")
        entries = select(HomeEntry.post_id).where(HomeEntry.account_id == bo_id)
        assert later.id in set((await db.scalars(entries)).all())  # the feed trigger
        await posts.delete_post(db, policy.Viewer(ana_id), first.id)
        assert await db.scalar(select(func.count()).select_from(Like)) == 0  # ON DELETE
    await rt.close()

    # And down again: BIGINT keys, the same rows
    await asyncio.to_thread(command.downgrade, alembic_config(empty_url), "0007")
    down = await _run(empty_url, _snapshot)
    assert "\n\tid BIGINT NOT NULL," in down["ddl"]["posts"] and down["problems"] == []
    assert down["triggers"] == before["triggers"] and down["rows"]["posts"] == 1


def _snapshot(conn: Connection) -> dict[str, Any]:
    """Row counts, index and trigger texts, table declarations and foreign key problems."""
    master = conn.exec_driver_sql("SELECT type, name, tbl_name, sql FROM sqlite_master").all()
    tables = [n for t, n, _, sql in master if t == "table" and sql.startswith("CREATE TABLE")]
    return {
        "rows": {
            t: conn.exec_driver_sql(f'SELECT count(*) FROM "{t}"').scalar()  # noqa: S608
            for t in tables
        },
        "indexes": sorted(sql for t, _, _, sql in master if t == "index" and sql),
        "triggers": sorted(sql for t, _, _, sql in master if t == "trigger"),
        "ddl": {n: sql for t, n, _, sql in master if t == "table"},
        "problems": conn.exec_driver_sql("PRAGMA foreign_key_check").all(),
    }
