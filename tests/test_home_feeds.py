"""Home feeds kept on write (timelines.feeds, migration 0005) must give exactly the Home that
searching gives, before and after every kind of change, and fall through to searching below
their floor."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.db import id_for_time, utcnow
from kith.graph import service as graph
from kith.posts import service as posts
from kith.posts.models import Post, Tag, Visibility
from kith.runtime import wait_for_background
from kith.timelines import feeds
from kith.timelines import service as timelines
from kith.timelines.models import HomeEntry, HomeFeed, TagFollow
from kith.timelines.shapes import ENTITIES
from tests.world import person, post

TOP = 2**63 - 1


async def searched(db: AsyncSession, who: Account, n: int = 40) -> list[int]:
    rows = await timelines._searched_home(db, policy.Viewer(who.id), top=TOP, n=n, shape=ENTITIES)
    return [p.id for p in rows]


async def from_feed(db: AsyncSession, who: Account, n: int = 40) -> list[int]:
    floor = await db.scalar(select(HomeFeed.floor_id).where(HomeFeed.account_id == who.id))
    assert floor is not None, "no feed"
    rows, _ = await feeds.read(db, policy.Viewer(who.id), ceiling=TOP, n=n, shape=ENTITIES)
    return [p.id for p in rows]


async def home_ids(db: AsyncSession, who: Account, **kw: int) -> list[int]:
    page = await timelines.home(db, policy.Viewer(who.id), **kw, shape=ENTITIES)
    return [p.id for p in page.posts]


async def test_feed__equals_the_searched_home__through_every_kind_of_change(
    db: AsyncSession,
) -> None:
    me, friend, quiet = await person(db, "me"), await person(db, "friend"), await person(db, "q")
    stranger, loud = await person(db, "stranger"), await person(db, "loud")
    await graph.follow(db, me.id, friend.id)
    await graph.follow(db, me.id, quiet.id)
    await graph.follow(db, me.id, loud.id)
    before = [
        await post(db, friend, "hello"),
        await post(db, friend, "for followers", visibility=Visibility.PRIVATE),
        await post(db, stranger, "not followed"),
        await post(db, quiet, "reply to a stranger", reply_to=await post(db, stranger, "hm")),
        await post(db, me, "mine #cats"),
    ]
    await posts.boost(db, policy.Viewer(loud.id), before[2].id)
    await feeds.build(db, me.id)
    assert await from_feed(db, me) == await searched(db, me)
    assert len(await searched(db, me)) >= 4

    # Posts, boosts and replies made after the feed exists.
    await post(db, friend, "later")
    await post(db, stranger, "@me hi, direct", visibility=Visibility.DIRECT)
    await posts.boost(db, policy.Viewer(friend.id), before[0].id)
    await post(db, quiet, "@friend a reply", reply_to=before[0])
    # A hashtag followed after the posts that carry it, and a post that carries it later.
    tag = await db.scalar(select(Tag).where(Tag.name == "cats"))
    assert tag is not None
    db.add(TagFollow(account_id=me.id, tag_id=tag.id))
    await db.commit()
    await post(db, stranger, "more #cats")
    await post(db, stranger, "#cats for followers", visibility=Visibility.PRIVATE)
    assert await from_feed(db, me) == await searched(db, me)

    # A new follow brings the followee's earlier posts; ending it, blocking, muting and
    # boosts turned off take effect at once without touching the feed.
    await graph.follow(db, me.id, stranger.id)
    assert before[2].id in await from_feed(db, me)
    assert await from_feed(db, me) == await searched(db, me)
    await graph.unfollow(db, me.id, stranger.id)
    await graph.block(db, me.id, quiet.id)
    await graph.mute(db, me.id, friend.id)
    await db.execute(update_show_reblogs(me.id, loud.id))
    await db.commit()
    assert await from_feed(db, me) == await searched(db, me)
    await posts.delete_post(db, policy.Viewer(friend.id), before[0].id)
    assert await from_feed(db, me) == await searched(db, me)
    # Short pages too (the limit applies after the policy).
    assert await from_feed(db, me, 2) == await searched(db, me, 2)


async def test_followed_tags__the_same_posts_join_home_in_every_shape(db: AsyncSession) -> None:
    """A followed hashtag adds its publicly listed posts to Home, and only those: from the
    feed, searched in a window (SQLite's list and PostgreSQL's OR, whichever the database),
    searched without one, probed one post at a time and for the live audience."""
    me, friend, stranger = await person(db, "me"), await person(db, "friend"), await person(db, "s")
    quiet = await person(db, "quiet")
    await db.execute(update(Account).where(Account.id == quiet.id).values(silenced_at=utcnow()))
    await graph.follow(db, me.id, friend.id)
    await post(db, me, "starting #cats")
    tag = await db.scalar(select(Tag).where(Tag.name == "cats"))
    assert tag is not None
    db.add(TagFollow(account_id=me.id, tag_id=tag.id))
    await db.commit()
    expected = [
        await post(db, friend, "followed, no tag"),
        await post(db, friend, "followed, #cats for followers", visibility=Visibility.PRIVATE),
        await post(db, stranger, "public #cats"),
    ]
    left_out = [
        await post(db, stranger, "unlisted #cats", visibility=Visibility.UNLISTED),
        await post(db, stranger, "for followers #cats", visibility=Visibility.PRIVATE),
        await post(db, stranger, "another tag #dogs"),
        await post(db, quiet, "silenced #cats"),
    ]
    boost = await posts.boost(db, policy.Viewer(stranger.id), expected[2].id)
    left_out.append(boost)  # a boost carries no hashtag of its own
    mine = (await home_ids(db, me, limit=40))[-1]  # my own post, in every shape too
    want = [p.id for p in reversed(expected)] + [mine]

    assert await searched(db, me) == want  # every window, the last one without bounds
    assert await searched(db, me, n=len(want)) == want  # the first window fills the page
    for listed in (True, False):
        stmt = timelines._prebuilt_home(True, False, listed=listed, shape=ENTITIES)
        params = {"viewer_id": me.id, "now": utcnow(), "floor": 0, "ceiling": TOP, "n": 40}
        assert [p.id for p in await ENTITIES.run(db, stmt, params)] == want, listed
    await feeds.build(db, me.id)
    assert await from_feed(db, me) == want
    for p in [*expected, *left_out]:
        assert await timelines.appears_in_home(db, policy.Viewer(me.id), p.id) == (p in expected)
        audience = await timelines.home_audience(db, p.id, [me.id])
        assert audience == ({me.id} if p in expected else set()), p.content_html


def update_show_reblogs(me: int, target: int):  # type: ignore[no-untyped-def]
    from kith.graph.models import Follow

    return (
        update(Follow)
        .where(Follow.follower_id == me, Follow.followee_id == target)
        .values(show_reblogs=False)
    )


async def test_home__reads_the_feed_then_searches_below_its_floor(db: AsyncSession) -> None:
    me, friend = await person(db, "me"), await person(db, "friend")
    await graph.follow(db, me.id, friend.id)
    made = [await post(db, friend, f"post {i}") for i in range(8)]
    assert await home_ids(db, me, limit=5) == [p.id for p in reversed(made)][:5]
    await wait_for_background()  # the first read asked for a feed
    assert await db.scalar(select(func.count()).select_from(HomeFeed)) == 1
    # Pretend the feed began in the middle: its entries stop at the floor.
    floor = made[3].id
    await db.execute(update(HomeFeed).where(HomeFeed.account_id == me.id).values(floor_id=floor))
    await db.commit()
    everything = [p.id for p in reversed(made)]
    assert await home_ids(db, me, limit=6) == everything[:6]  # 4 from the feed, 2 searched
    assert await home_ids(db, me, limit=40) == everything
    assert await home_ids(db, me, limit=3, max_id=made[2].id) == everything[-2:]


async def test_read__notes_a_stale_read_once(db: AsyncSession) -> None:
    me, friend = await person(db, "me"), await person(db, "friend")
    await graph.follow(db, me.id, friend.id)
    await post(db, friend, "hello")
    await feeds.build(db, me.id)
    long_ago = utcnow() - feeds.READ_STAMP_EVERY - timedelta(hours=1)
    await db.execute(update(HomeFeed).values(read_at=long_ago))
    await db.commit()

    async def read_at() -> object:
        db.expunge_all()
        return await db.scalar(select(HomeFeed.read_at).where(HomeFeed.account_id == me.id))

    assert len(await from_feed(db, me)) == 1
    await wait_for_background()
    stamped = await read_at()
    assert isinstance(stamped, type(long_ago)) and stamped > long_ago + feeds.READ_STAMP_EVERY
    await from_feed(db, me)  # read again the same day: not written again
    await wait_for_background()
    assert await read_at() == stamped


async def test_trim__drops_unread_feeds_and_old_entries(db: AsyncSession) -> None:
    me, other, friend = await person(db, "me"), await person(db, "other"), await person(db, "f")
    await graph.follow(db, me.id, friend.id)
    await graph.follow(db, other.id, friend.id)
    old = Post(
        id=id_for_time(utcnow() - timedelta(days=feeds.KEEP_DAYS + 1)),
        account_id=friend.id,
        content_html="<p>old</p>",
    )
    db.add(old)
    await db.commit()
    await post(db, friend, "new")
    for who in (me, other):
        await feeds.build(db, who.id)
        # Built from the last FEED_DAYS only; the old post is there for the test's sake.
        db.add(HomeEntry(account_id=who.id, post_id=old.id))
    await db.execute(
        update(HomeFeed)
        .where(HomeFeed.account_id == other.id)
        .values(read_at=utcnow() - timedelta(days=feeds.DROP_AFTER_DAYS + 1))
    )
    await db.execute(update(HomeFeed).values(floor_id=0))
    await db.commit()
    await feeds.trim(db, {})
    await db.commit()
    feeds_left = (await db.scalars(select(HomeFeed))).all()
    assert [f.account_id for f in feeds_left] == [me.id]
    assert feeds_left[0].floor_id > old.id
    entries = (await db.scalars(select(HomeEntry.post_id))).all()
    assert old.id not in entries and len(entries) == 1
    # The old post is still in Home: searched below the raised floor.
    assert old.id in await home_ids(db, me)


async def test_build__twice_at_once__makes_one_feed_quietly(db: AsyncSession, rt) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    me = await person(db, "me")
    await post(db, me, "hi")

    async def build() -> int | None:
        async with rt.sessions() as own:
            return await feeds.build(own, me.id)

    floors = await asyncio.gather(build(), build())
    assert any(f is not None for f in floors)
    assert await db.scalar(select(func.count()).select_from(HomeFeed)) == 1
    assert len(await from_feed(db, me)) == 1


async def test_read__a_feed_made_between_its_two_statements__is_read(  # type: ignore[no-untyped-def]
    db: AsyncSession, rt, monkeypatch
) -> None:
    """Each statement sees the latest commit: the first finds no entries, a background build
    commits, the second finds the feed. The page must come from the feed, not from a search
    below its floor (which would be empty)."""
    me, friend = await person(db, "me"), await person(db, "friend")
    await graph.follow(db, me.id, friend.id)
    made = await post(db, friend, "hello")
    real_floor_of = feeds.floor_of

    async def built_meanwhile(session: AsyncSession, account_id: int) -> int | None:
        async with rt.sessions() as other:
            await feeds.build(other, account_id)
        return await real_floor_of(session, account_id)

    monkeypatch.setattr(feeds, "floor_of", built_meanwhile)
    assert await home_ids(db, me) == [made.id]


async def test_build__a_follow_made_while_the_feed_is_built__is_in_it(  # type: ignore[no-untyped-def]
    db: AsyncSession, rt, monkeypatch
) -> None:
    """The feed's build holds the person's account row (PostgreSQL): a follow made meanwhile
    waits for it, and its trigger then fills the feed. Without that, an old post of the new
    followee was in neither (the build's read and the follow's trigger missed each other)."""
    import asyncio

    bob, alice = await person(db, "bob"), await person(db, "alice")
    old = await post(db, alice, "from two days ago")
    two_days_ago = id_for_time(utcnow() - timedelta(days=2))
    await db.execute(update(Post).where(Post.id == old.id).values(id=two_days_ago))
    await db.commit()
    candidates_read, go_on = asyncio.Event(), asyncio.Event()
    real = feeds._add_candidates  # noqa: SLF001

    async def slow_first_read(own: AsyncSession, account_id: int, floor: int) -> None:
        await real(own, account_id, floor)
        if not candidates_read.is_set():
            candidates_read.set()
            await go_on.wait()  # the build's transaction stays open here

    monkeypatch.setattr(feeds, "_add_candidates", slow_first_read)

    async def build() -> None:
        async with rt.sessions() as own:
            await feeds.build(own, bob.id)

    async def follow() -> None:
        await candidates_read.wait()
        async with rt.sessions() as own:
            await graph.follow(own, bob.id, alice.id)

    building, following = asyncio.create_task(build()), asyncio.create_task(follow())
    await candidates_read.wait()
    await asyncio.sleep(0.3)  # the follow runs now, or waits for the build
    go_on.set()
    await asyncio.gather(building, following)
    assert two_days_ago in await from_feed(db, bob)
