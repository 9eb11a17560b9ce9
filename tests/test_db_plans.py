"""kith.db_plans: a run of statements in the session's transaction, one hand-off on SQLite and
step by step elsewhere, writing what the session would and keeping nothing on failure; and the
new post that `create_post` writes that way."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import (
    Integer,
    bindparam,
    column,
    event,
    func,
    insert,
    inspect,
    select,
    table,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy, sqlite_driver
from kith.accounts.models import Account, User, UserState
from kith.config import Settings
from kith.db import one_of
from kith.db_plans import (
    COMMIT_EARLY,
    Plan,
    Step,
    column_binds,
    loaded,
    loaded_rows,
    read,
    run_plan,
)
from kith.notifications.models import Notification
from kith.oauth import service as oauth
from kith.posts import service as posts
from kith.posts.models import Mention, Post, PostTag, Tag, Visibility
from kith.posts.service import PostInput
from kith.runtime import Runtime
from kith.search import service as search
from kith.sqlite_writes import CompiledWrite, compiled_for
from tests.conftest import BACKEND
from tests.world import person

WHEN = datetime(2026, 11, 26, 9, 30, 1, 123456, tzinfo=UTC)
_INSERT_TAG = insert(Tag).values(column_binds(Tag.__table__))  # type: ignore[arg-type]
_TAGS_NAMED = select(Tag.id).where(Tag.name.in_(bindparam("names", expanding=True)))
_ADD_NOTE = insert(Notification).values(column_binds(Notification.__table__))  # type: ignore[arg-type]


def _tags_plan(ids: list[int]) -> Plan[list[int]]:
    yield Step(_INSERT_TAG, [{"id": i, "name": f"t{i}", "display_name": f"T{i}"} for i in ids])
    found = yield Step(_TAGS_NAMED, {"names": [f"t{i}" for i in ids]}, rows=True)
    return sorted(row[0] for row in found or ())


async def test_a_plan_writes_in_the_sessions_transaction_and_returns_what_it_read(
    rt: Runtime, db: AsyncSession
) -> None:
    # When a plan inserts three tags and reads them back by name (an expanding IN)
    found = await run_plan(db, _tags_plan([11, 12, 13]))
    # Then it read them inside its transaction
    assert found == [11, 12, 13]
    # And nobody else sees them before the session commits
    async with rt.sessions() as other:
        assert await other.scalar(select(func.count()).select_from(Tag)) == 0
    await db.commit()
    async with rt.sessions() as other:
        assert await other.scalar(select(func.count()).select_from(Tag)) == 3


async def test_a_plan_that_fails_keeps_nothing_once_the_session_rolls_back(
    rt: Runtime, db: AsyncSession
) -> None:
    def failing() -> Plan[None]:
        yield Step(_INSERT_TAG, [{"id": 21, "name": "fine", "display_name": "fine"}])
        # the same name again: the unique index refuses it
        yield Step(_INSERT_TAG, [{"id": 22, "name": "fine", "display_name": "fine"}])

    # (the driver's error on SQLite, SQLAlchemy's elsewhere, as through the session)
    refused = sqlite3.IntegrityError if BACKEND == "sqlite" else IntegrityError
    with pytest.raises(refused, match="(?i)unique"):
        await run_plan(db, failing())
    await db.rollback()
    # The first statement's row is gone with the transaction, and the session goes on
    assert await db.scalar(select(func.count()).select_from(Tag)) == 0
    assert await run_plan(db, _tags_plan([23])) == [23]


async def test_a_plan_stores_exactly_what_the_session_would(rt: Runtime, db: AsyncSession) -> None:
    # Given two people, and one notification written by the ORM
    alice, bob = await person(db, "alice"), await person(db, "bob")
    db.add(Notification(id=1, account_id=alice.id, type="follow", from_account_id=bob.id))
    await db.flush()
    orm_row = dict(
        (await db.execute(select(Notification.__table__).where(Notification.id == 1)))
        .mappings()
        .one()
    )

    # When a plan writes the same notification under another id
    def plan() -> Plan[None]:
        values = {k: v for k, v in orm_row.items() if k != "id"}
        yield Step(_ADD_NOTE, [{**values, "id": 2}])

    await run_plan(db, plan())
    # Then both rows hold the same stored values (UTC times included), as text on SQLite
    raw = text(
        "SELECT account_id, type, from_account_id, post_id, report_id, community_id,"
        " CAST(created_at AS TEXT) FROM notifications ORDER BY id"
    )
    first, second = (await db.execute(raw)).all()
    assert first == second


async def test_a_plan_that_commits_early_frees_the_writer_at_once(
    rt: Runtime, db: AsyncSession
) -> None:
    def plan() -> Plan[None]:
        yield from _tags_plan([31])
        yield COMMIT_EARLY

    await run_plan(db, plan())
    async with rt.sessions() as other:
        seen = await other.scalar(select(func.count()).select_from(Tag))
        # On SQLite the plan committed in its own hand-off: another writer goes on at once
        # (no write turn is still held). Elsewhere the session's commit does it.
        if db.get_bind().dialect.name == "sqlite":
            assert seen == 1
            assert await run_plan(other, _tags_plan([32])) == [32]
            await other.commit()
        else:
            assert seen == 0
    await db.commit()  # nothing left to commit on SQLite, and no error
    async with rt.sessions() as other:
        assert await other.scalar(select(func.count()).select_from(Tag)) >= 1


def test_expanding_binds_become_as_many_parameters_as_values() -> None:
    rows = table("rows", column("id", Integer), column("kind"))
    statement = select(rows.c.id).where(
        rows.c.id.in_(bindparam("ids", expanding=True)),
        rows.c.kind.in_(["a", "b"]),  # a literal list: fixed values
        rows.c.id != bindparam("not_id"),
    )
    compiled = CompiledWrite(statement, sqlite.dialect())
    sql, params = compiled.render({"ids": [4, 5, 6], "not_id": 9})
    assert "IN (?, ?, ?)" in sql and "IN (?, ?)" in sql
    assert params == (4, 5, 6, "a", "b", 9)
    sql, params = compiled.render({"ids": [], "not_id": 9})
    assert "IN ()" in sql and params == ("a", "b", 9)


def test_for_numbered_parameters_fixed_lists_are_expanded_once_and_bound_lists_left() -> None:
    # Given a statement with a fixed list (of an enum), a value used twice and a literal
    rows = table("rows", column("id", Integer), column("kind"), column("owner", Integer))
    statement = select(rows.c.id).where(
        rows.c.kind.in_([Visibility.PUBLIC, Visibility.UNLISTED]),
        (rows.c.owner == bindparam("me", type_=Integer())) | (rows.c.id == bindparam("me")),
        rows.c.kind != "gone",
    )
    # When it is compiled for asyncpg's numbered parameters
    compiled = CompiledWrite(statement, postgresql.asyncpg.dialect())
    sql, params = compiled.render({"me": 7})
    # Then each list item is a parameter of its own, numbered after the others as
    # SQLAlchemy numbers them, and each number's value is at its place
    assert not compiled.expands and "POSTCOMPILE" not in sql
    assert "kind IN ($3, $4)" in sql and "kind != $2" in sql
    assert sql.count("$1::INTEGER") == 2
    assert params == (7, "gone", Visibility.PUBLIC, Visibility.UNLISTED)
    # And a statement with a bound list stays one SQLAlchemy expands at each execution
    bound = select(rows.c.id).where(
        rows.c.id.in_(bindparam("ids", expanding=True)), rows.c.kind.in_(["a"])
    )
    assert CompiledWrite(bound, postgresql.asyncpg.dialect()).expands


def test_a_compiled_statement_is_never_mistaken_for_a_later_one_at_the_same_address() -> None:
    dialect = sqlite.dialect()
    first = select(column("a")).select_from(table("one"))
    compiled = compiled_for(first, dialect)
    # While cached, the statement is held: its address cannot be reused by another
    del first
    gc.collect()
    second = select(column("b")).select_from(table("two"))
    assert "two" in compiled_for(second, dialect).sql
    assert "one" in compiled.sql


# --- the new post, written by a plan --------------------------------------------------------


async def test_a_new_post_is_held_by_the_session_as_if_flushed_with_every_row_written(
    rt: Runtime, db: AsyncSession
) -> None:
    # Given a poster and two people to mention
    alice = await person(db, "alice")
    await person(db, "bob")
    await person(db, "carol")
    # When alice posts with two mentions and two hashtags
    post = await posts.create_post(
        db, alice, PostInput(source="Morning @bob @carol #walks #river", spoiler_text="cw")
    )
    # Then the session holds the post as persistent and unchanged, nothing left to load
    state = inspect(post)
    assert state.persistent and not state.modified and not state.expired_attributes
    # And the row read back equals what the post object holds, column by column
    async with rt.sessions() as other:
        stored = await other.get(Post, post.id)
        assert stored is not None
        for col in Post.__table__.columns:
            if col.key != "render_rev":  # bumped by the mention and hashtag triggers
                assert getattr(stored, col.key) == getattr(post, col.key), col.key
        mentions = await other.scalars(select(Mention.account_id).where(Mention.post_id == post.id))
        assert len(list(mentions)) == 2
        tags = await other.scalars(select(PostTag.tag_id).where(PostTag.post_id == post.id))
        assert len(list(tags)) == 2
        notes = await other.scalars(select(Notification).where(Notification.post_id == post.id))
        assert sorted(n.type for n in notes) == ["mention", "mention"]
        rev = await other.scalar(select(Post.render_rev).where(Post.id == post.id))
        assert rev == 4  # two mentions and two hashtags, each bumping it once
    # And a later change to the held post is an ordinary UPDATE
    post.sensitive = False
    await db.commit()
    async with rt.sessions() as other:
        assert await other.scalar(select(Post.sensitive).where(Post.id == post.id)) is False


async def test_a_reply_counts_notifies_and_is_found_by_search(
    rt: Runtime, db: AsyncSession
) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    first = await posts.create_post(db, alice, PostInput(source="A question"))
    reply = await posts.create_post(
        db, bob, PostInput(source="An answer about lighthouses", in_reply_to_id=first.id)
    )
    async with rt.sessions() as other:
        assert await other.scalar(select(Post.replies_count).where(Post.id == first.id)) == 1
        kinds: Any = await other.scalars(
            select(Notification.type).where(Notification.account_id == alice.id)
        )
        assert list(kinds) == ["reply"]
    found = await search.search_posts(db, policy.ANONYMOUS, "lighthouses")
    assert [p.id for p in found] == [reply.id]


# --- read and loaded ---------------------------------------------------------------------------

_ACCOUNT_AND_STATE = (
    select(
        *Account.__table__.columns,
        User.state,
        User.is_admin,
        User.created_at,
        select(func.count()).select_from(Tag).scalar_subquery().label("tags"),
    )
    .join(User, User.account_id == Account.id)
    .where(Account.username_key.in_(bindparam("names", expanding=True)))
    .order_by(Account.id)
)


async def test_read_returns_what_the_session_would(rt: Runtime, db: AsyncSession) -> None:
    # Given two people (datetimes, booleans, JSON and an enum among the columns)
    await person(db, "alice", admin=True)
    await person(db, "bob")
    await db.commit()
    values = {"names": ["alice", "bob"]}
    # Then a read gives the rows a statement through the session gives, value for value
    expected = [tuple(r) for r in (await db.execute(_ACCOUNT_AND_STATE, values)).all()]
    got = [tuple(r) for r in await read(db, _ACCOUNT_AND_STATE, values)]
    assert got == expected
    assert [type(v) for v in got[0]] == [type(v) for v in expected[0]]
    assert got[0][-3] is True  # a boolean, not SQLite's 1


# The same, as the hot paths write it: a bound list is one array on PostgreSQL (`db.one_of`),
# and a fixed list (the policy's states) is expanded once, where asyncpg's numbered
# parameters need it (`CompiledWrite`).
_ACCOUNTS_NAMED = {
    dialect: select(*_ACCOUNT_AND_STATE.selected_columns)
    .join(User, User.account_id == Account.id)
    .where(
        one_of(Account.username_key, "names", dialect),
        User.state.in_([UserState.ACTIVE, UserState.PENDING]),
    )
    .order_by(Account.id)
    for dialect in ("sqlite", "postgresql")
}


async def test_read_of_a_bound_list_and_a_fixed_list_returns_what_the_session_would(
    rt: Runtime, db: AsyncSession
) -> None:
    # Given two people, and a statement with a bound list of names and a fixed list of states
    await person(db, "alice", admin=True)
    await person(db, "bob")
    await db.commit()
    statement = _ACCOUNTS_NAMED[db.get_bind().dialect.name]
    values = {"names": ["alice", "bob", "nobody"]}
    # Then a read gives the rows the same statement through the session gives, typed alike
    expected = [tuple(r) for r in (await db.execute(statement, values)).all()]
    got = [tuple(r) for r in await read(db, statement, values)]
    assert [r[1] for r in got] == ["alice", "bob"]
    assert got == expected
    assert [type(v) for v in got[0]] == [type(v) for v in expected[0]]


_CLOCK = select(func.now())
_TAG_LOCKED = select(Tag.id).where(Tag.id == bindparam("id")).with_for_update()
_BACKEND_PID = select(func.pg_backend_pid())


@pytest.mark.skipif(BACKEND != "postgres", reason="PostgreSQL's reads outside a transaction")
async def test_a_postgresql_session_reads_on_its_own_until_it_begins_a_transaction(
    rt: Runtime,
) -> None:
    # Given a session that has only read: each read is a transaction of its own (the
    # transaction's clock moves between them), and no BEGIN was sent
    async with rt.sessions() as fresh:
        first = (await read(fresh, _CLOCK, {}))[0][0]
        await asyncio.sleep(0.01)
        second = (await read(fresh, _CLOCK, {}))[0][0]
        assert second > first
        driver = (await (await fresh.connection()).get_raw_connection()).dbapi_connection
        assert driver._transaction is None
        # When it writes (flushed by the next read), its reads join its transaction
        fresh.add(Tag(id=51, name="t51", display_name="T51"))
        third = (await read(fresh, _CLOCK, {}))[0][0]
        await asyncio.sleep(0.01)
        assert (await read(fresh, _CLOCK, {}))[0][0] == third
        await fresh.rollback()
    # And a locking read (FOR UPDATE) begins the transaction, so its lock lasts until commit
    async with rt.sessions() as locking:
        await read(locking, _TAG_LOCKED, {"id": 1})
        driver = (await (await locking.connection()).get_raw_connection()).dbapi_connection
        assert driver._transaction is not None
    # And a session asking for a stricter isolation reads in its transaction from the start
    async with rt.sessions() as strict:
        await strict.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        first = (await read(strict, _CLOCK, {}))[0][0]
        await asyncio.sleep(0.01)
        assert (await read(strict, _CLOCK, {}))[0][0] == first


@pytest.mark.skipif(BACKEND != "postgres", reason="PostgreSQL's connections")
async def test_a_postgresql_connection_lost_during_a_read_is_not_handed_out_again(
    rt: Runtime,
) -> None:
    # Given a session's connection, ended by the server (an administrator, a restart)
    async with rt.sessions() as reader:
        ((pid,),) = await read(reader, _BACKEND_PID, {})
        async with rt.sessions() as admin:
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        # When the session reads again, it fails (with SQLAlchemy's error, as through the
        # session)
        with pytest.raises(StatementError):
            await read(reader, _BACKEND_PID, {})
    # Then the pool hands the next session a working connection, not that one
    async with rt.sessions() as after:
        ((new_pid,),) = await read(after, _BACKEND_PID, {})
        assert new_pid != pid


async def test_read_sees_what_the_session_holds_and_has_not_committed(
    rt: Runtime, db: AsyncSession
) -> None:
    # Given a tag written and another only added to the session (not flushed)
    await run_plan(db, _tags_plan([31]))
    db.add(Tag(id=32, name="t32", display_name="T32"))
    # Then a read in the session sees both (the session flushes first, as autoflush would)
    rows = await read(db, _TAGS_NAMED, {"names": ["t31", "t32"]})
    assert sorted(r[0] for r in rows) == [31, 32]
    # And after a rollback, neither, on a connection the next transaction checks out
    await db.rollback()
    assert await read(db, _TAGS_NAMED, {"names": ["t31", "t32"]}) == []


async def test_loaded_entities_are_as_the_session_loads_them(rt: Runtime, db: AsyncSession) -> None:
    # Given a person, read as rows of every column
    await person(db, "carol")
    await db.commit()
    db.expunge_all()
    statement = select(*Account.__table__.columns).where(Account.username_key == bindparam("n"))
    (row,) = await read(db, statement, {"n": "carol"})
    # When the row becomes an entity
    carol = loaded(db, Account, row)
    # Then it is persistent and unchanged, every attribute loaded
    state = inspect(carol)
    assert state.persistent and not state.modified and not state.expired_attributes
    async with rt.sessions() as other:
        fresh = await other.get(Account, carol.id)
        assert fresh is not None
        for key in Account.__table__.columns.keys():
            assert getattr(carol, key) == getattr(fresh, key), key
    # And the session gives the same object to a query, and a change to it is an UPDATE
    assert await db.get(Account, carol.id) is carol
    assert loaded_rows(db, Account, [row]) == [carol]
    carol.display_name = "Carol C."
    await db.commit()
    async with rt.sessions() as other:
        assert (await other.get(Account, carol.id)).display_name == "Carol C."  # type: ignore[union-attr]


async def test_a_token_is_judged_on_its_row_as_read_not_on_a_copy_the_session_holds(
    rt: Runtime, db: AsyncSession
) -> None:
    # Given a person's token, looked up once by this session (which now holds it)
    dana = await person(db, "dana")
    issued = await oauth.create_personal_token(db, dana, "script", "read write")
    await db.commit()
    info = await oauth.token_info(db, issued.access_token)
    assert info is not None and info.user is not None and info.user.account.id == dana.id
    # When another session revokes it
    async with rt.sessions() as other:
        await oauth.revoke_app_for(other, dana.id, info.app.id)
        await other.commit()
    # Then this session's next look-up refuses it, though it still holds the old token row
    assert await oauth.token_info(db, issued.access_token) is None
    assert await oauth.token_info_by_id(db, info.token.id) is None


@pytest.mark.skipif(BACKEND != "sqlite", reason="SQLite's shared reader")
async def test_a_session_that_began_nothing_reads_without_checking_out_a_connection(
    rt: Runtime, db: AsyncSession
) -> None:
    # Given two people, committed, and the pool's check-outs counted
    await person(db, "alice")
    await person(db, "bob")
    await db.commit()
    checkouts: list[int] = []

    def counted(*_: Any) -> None:
        checkouts.append(1)

    event.listen(rt.engine.sync_engine, "checkout", counted)
    try:
        async with rt.sessions() as fresh:
            # When a new session only reads
            rows = await read(fresh, _ACCOUNT_AND_STATE, {"names": ["alice", "bob"]})
            # Then it has the rows a statement through a session gives, and took no connection
            async with rt.sessions() as other:
                expected = await other.execute(_ACCOUNT_AND_STATE, {"names": ["alice", "bob"]})
                assert [tuple(r) for r in rows] == [tuple(r) for r in expected.all()]
            assert len(checkouts) == 1  # (the other session's)
            # And what another session commits meanwhile, its next read sees
            async with rt.sessions() as writer:
                await person(writer, "carol")
                await writer.commit()
            names = {"names": ["alice", "bob", "carol"]}
            assert len(await read(fresh, _ACCOUNT_AND_STATE, names)) == 3
            checkouts.clear()
            # While once it holds something unwritten, it reads in its own transaction
            fresh.add(Tag(id=41, name="t41", display_name="T41"))
            assert [r[0] for r in await read(fresh, _TAGS_NAMED, {"names": ["t41"]})] == [41]
            assert len(checkouts) == 1
            await fresh.rollback()
    finally:
        event.remove(rt.engine.sync_engine, "checkout", counted)


@pytest.mark.skipif(BACKEND != "sqlite", reason="SQLite's shared reader")
async def test_a_slow_read_of_the_shared_reader_is_read_the_usual_way(
    rt: Runtime, db: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a person, and no statement quick enough for the event loop's thread
    await person(db, "dave")
    await db.commit()
    monkeypatch.setattr(sqlite_driver, "INLINE_BUDGET_SECONDS", -1.0)
    dbapi = rt.engine.sync_engine.dialect.loaded_dbapi
    dbapi.slow_statements.clear()
    async with rt.sessions() as fresh:
        # When a new session reads
        rows = await read(fresh, _ACCOUNT_AND_STATE, {"names": ["dave"]})
        # Then the interrupted statement was read again on a pooled connection's thread
        assert [r[1] for r in rows] == ["dave"]
        assert dbapi.slow_statements  # (and its next runs go there at once)


@pytest.mark.skipif(BACKEND != "sqlite", reason="SQLite's shared reader")
async def test_the_shared_reader_closes_with_its_engine(settings: Settings) -> None:
    # Given a runtime whose sessions read through the engine's shared reader (the engine
    # learns the file's path from its first pooled connection, which the first read opens)
    runtime = Runtime.from_settings(settings)
    dbapi = runtime.engine.sync_engine.dialect.loaded_dbapi
    for _ in range(2):
        async with runtime.sessions() as fresh:
            await read(fresh, _TAGS_NAMED, {"names": ["none"]})
    reader = dbapi._reader
    assert reader is not None
    # When the runtime closes, so does the reader's connection
    await runtime.close()
    assert dbapi._reader is None
    with pytest.raises(sqlite3.ProgrammingError):
        reader._conn.execute("SELECT 1")
