"""Remote post retention: remote posts stored longer than `remote_post_days` ago that nobody
here interacted with are deleted (with their search entries); anything a local person liked,
boosted, replied to, bookmarked, voted in, was mentioned or notified by, or reported stays."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.config import Settings
from kith.db import id_for_time, utcnow
from kith.federation import retention
from kith.moderation.models import Report
from kith.notifications.models import Notification
from kith.posts.models import Bookmark, Like, Mention, Post
from kith.runtime import Runtime
from kith.search import service as search
from kith.search.service import search_posts as run_search
from tests.federation.local_http import LocalServer, local_server
from tests.federation.remote_world import remote_account, remote_post
from tests.world import person, viewer
from tests.world import post as local_post

pytestmark = pytest.mark.usefixtures("rt")


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    async with local_server("127.0.0.1") as s:
        yield s


def days_ago(n: int, k: int = 0) -> int:
    return id_for_time(utcnow() - timedelta(days=n)) + k


async def old_post(db: AsyncSession, author: Account, k: int, text: str = "") -> Post:
    post = await remote_post(
        db, author, text=f"<p>{text or f'old words {k}'}</p>", post_id=days_ago(40, k)
    )
    await search.index_post(db, post, new=True)
    await db.commit()
    return post


async def still_there(db: AsyncSession, post_id: int) -> bool:
    return (
        await db.scalar(
            select(Post.id).where(Post.id == post_id).execution_options(populate_existing=True)
        )
    ) is not None


async def test_old_untouched_remote_posts__are_deleted_with_their_index_entry(
    db: AsyncSession, server: LocalServer
) -> None:
    # Given an old remote post nobody here touched, and a recent one
    alice = await remote_account(db, server, "alice")
    old = await old_post(db, alice, 1, text="zucchini overflow")
    recent = await remote_post(db, alice, text="<p>zucchini today</p>")
    bo = await person(db, "bo")
    assert [p.id for p in await run_search(db, viewer(bo), "zucchini overflow")]
    # When the retention job runs
    assert await retention.prune_remote_posts(db) == 1
    await db.commit()
    # Then the old one is gone, from search too; the recent one stays
    assert not await still_there(db, old.id)
    assert await still_there(db, recent.id)
    assert not await run_search(db, viewer(bo), "zucchini overflow")


async def test_retention__keeps_what_someone_here_interacted_with(
    db: AsyncSession, server: LocalServer
) -> None:
    # Given old remote posts each touched in one way from here
    alice = await remote_account(db, server, "alice")
    bo = await person(db, "bo")
    liked, bookmarked, replied, boosted, mentioning, notified, reported, reply_to_local = [
        await old_post(db, alice, k) for k in range(8)
    ]
    untouched = await old_post(db, alice, 9)
    db.add(Like(account_id=bo.id, post_id=liked.id))
    db.add(Bookmark(account_id=bo.id, post_id=bookmarked.id))
    db.add(Mention(post_id=mentioning.id, account_id=bo.id))
    db.add(
        Notification(
            account_id=bo.id, type="favourite", from_account_id=alice.id, post_id=notified.id
        )
    )
    db.add(Report(reporter_id=bo.id, target_account_id=alice.id, post_ids=[reported.id]))
    await db.commit()
    await local_post(db, bo, "my answer", reply_to=replied)
    db.add(Post(account_id=bo.id, reblog_of_id=boosted.id, visibility="public"))
    mine = await local_post(db, bo, "a local post")
    reply_to_local.in_reply_to_id = mine.id
    await db.commit()
    # When the retention job runs
    await retention.prune_remote_posts(db)
    await db.commit()
    # Then only the untouched one went
    assert not await still_there(db, untouched.id)
    for kept in (
        liked,
        bookmarked,
        replied,
        boosted,
        mentioning,
        notified,
        reported,
        reply_to_local,
    ):
        assert await still_there(db, kept.id), kept.content_html


async def test_retention__a_thread_loses_leaves_before_its_trunk(
    db: AsyncSession, server: LocalServer
) -> None:
    alice = await remote_account(db, server, "alice")
    parent = await old_post(db, alice, 1)
    child = await remote_post(db, alice, post_id=days_ago(40, 2), in_reply_to_id=parent.id)
    await retention.prune_remote_posts(db)
    await db.commit()
    assert not await still_there(db, child.id) and await still_there(db, parent.id)
    await retention.prune_remote_posts(db)
    await db.commit()
    assert not await still_there(db, parent.id)


async def test_retention__zero_days_keeps_everything_and_local_posts_are_never_touched(
    db: AsyncSession, settings: Settings, server: LocalServer
) -> None:
    alice = await remote_account(db, server, "alice")
    old = await old_post(db, alice, 1)
    bo = await person(db, "bo")
    ancient = Post(id=days_ago(400), account_id=bo.id, visibility="public", content_html="x")
    db.add(ancient)
    await db.commit()
    forever = Runtime.from_settings(settings.model_copy(update={"remote_post_days": 0}))
    try:
        async with forever.sessions() as own:
            assert await retention.prune_remote_posts(own) == 0
    finally:
        await forever.close()
    await retention.prune_remote_posts(db)
    await db.commit()
    assert await still_there(db, ancient.id) and not await still_there(db, old.id)
