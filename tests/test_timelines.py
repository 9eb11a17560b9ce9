"""Timelines: what Home, profiles and hashtags hold, and pagination that never skips or repeats
a post while new ones arrive between page loads."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.db import new_id, utcnow
from kith.graph import service as graph
from kith.graph.models import Follow
from kith.posts import service as posts
from kith.posts.models import Post, Visibility
from kith.runtime import Runtime
from kith.timelines import feeds
from kith.timelines import service as timelines
from kith.timelines.service import Page
from kith.timelines.shapes import ENTITIES, REFS, PostRef
from tests.world import person, post, viewer

Loader = Callable[..., Awaitable[Page]]


def ids(page: Page) -> list[int]:
    return [p.id for p in page.posts]


# --- what is in which timeline ------------------------------------------------------------


async def test_home__own_replies_show_and_strangers_conversations_do_not(db: AsyncSession) -> None:
    # Given bob follows alice, and neither follows carol
    alice, bob, carol = [await person(db, n) for n in ("alice", "bob", "carol")]
    await graph.follow(db, bob.id, alice.id)
    carols = await post(db, carol, "Carol's thoughts")
    # When alice replies to carol, and bob replies to carol too
    alice_to_carol = await post(db, alice, "Agreed", reply_to=carols)
    bob_to_carol = await post(db, bob, "Me too", reply_to=carols)
    alice_thread = await post(db, alice, "Thread 1/2")
    alice_self_reply = await post(db, alice, "Thread 2/2", reply_to=alice_thread)
    # Then bob's Home has his own reply and alice's self-thread, not her reply to a stranger
    home = ids(await timelines.home(db, viewer(bob), shape=ENTITIES))
    assert bob_to_carol.id in home
    assert alice_thread.id in home and alice_self_reply.id in home
    assert alice_to_carol.id not in home and carols.id not in home
    # And alice's Home has her own reply to carol
    assert alice_to_carol.id in ids(await timelines.home(db, viewer(alice), shape=ENTITIES))


async def test_home__boosts_hidden_when_the_follow_says_so(db: AsyncSession) -> None:
    alice, bob, carol = [await person(db, n) for n in ("alice", "bob", "carol")]
    await graph.follow(db, bob.id, alice.id)
    boost = await posts.boost(db, viewer(alice), (await post(db, carol, "Worth sharing")).id)
    # Given bob follows alice, her boosts are in his Home
    assert boost.id in ids(await timelines.home(db, viewer(bob), shape=ENTITIES))
    # When bob turns off alice's boosts (the follow's show_reblogs flag)
    follow = await db.get(Follow, (bob.id, alice.id))
    assert follow is not None
    follow.show_reblogs = False
    await db.commit()
    # Then they leave it
    assert boost.id not in ids(await timelines.home(db, viewer(bob), shape=ENTITIES))


async def test_profile__posts_tab_leaves_out_replies_to_others(db: AsyncSession) -> None:
    alice, carol = await person(db, "alice"), await person(db, "carol")
    top = await post(db, alice, "Top")
    self_reply = await post(db, alice, "More", reply_to=top)
    to_carol = await post(db, alice, "Hi Carol", reply_to=await post(db, carol, "Hi"))
    tab = ids(await timelines.profile(db, viewer(carol), alice))
    assert tab == [self_reply.id, top.id]
    everything = ids(await timelines.profile(db, viewer(carol), alice, tab="replies"))
    assert everything == [to_carol.id, self_reply.id, top.id]


async def test_hashtag__matches_any_case_and_lists_public_posts_only(db: AsyncSession) -> None:
    alice = await person(db, "alice")
    loud = await post(db, alice, "#Gardening today")
    await post(db, alice, "#gardening quietly", visibility=Visibility.UNLISTED)
    assert ids(await timelines.hashtag(db, viewer(None), "GARDENING", shape=ENTITIES)) == [loud.id]
    assert ids(await timelines.hashtag(db, viewer(None), "nosuchtag", shape=ENTITIES)) == []


async def test_shapes__refs_name_the_same_posts_as_entities_on_every_path(
    db: AsyncSession,
) -> None:
    """The client API reads timelines as refs, the web as entities: the same posts, in the
    same order, with the same author and boosted post, whichever statement a page takes."""
    me, friend, other = await person(db, "me"), await person(db, "friend"), await person(db, "o")
    await graph.follow(db, me.id, friend.id)
    written = [await post(db, friend, f"#shapes {i}") for i in range(5)]
    await post(db, other, "#shapes unlisted", visibility=Visibility.UNLISTED)
    await post(db, friend, "#shapes for followers", visibility=Visibility.PRIVATE)
    shared = await post(db, other, "#shapes boosted")
    await posts.boost(db, viewer(friend), shared.id)
    await post(db, friend, "a reply", reply_to=written[0])
    middle = written[2].id

    def refs_of(page: Page) -> list[PostRef]:
        return [PostRef(p.id, p.account_id, p.reblog_of_id) for p in page.posts]

    async def both(load: Loader, **kw: object) -> list[PostRef]:
        entities, refs = await load(shape=ENTITIES, **kw), await load(shape=REFS, **kw)
        assert all(isinstance(p, Post) for p in entities.posts)
        assert all(isinstance(p, PostRef) for p in refs.posts)
        assert refs_of(entities) == refs.posts
        assert (refs.older_max_id, refs.newer_min_id) == (
            entities.older_max_id,
            entities.newer_min_id,
        )
        return refs.posts

    async def home(**kw: object) -> Page:
        return await timelines.home(db, viewer(me), **kw)  # type: ignore[arg-type]

    async def public(**kw: object) -> Page:
        return await timelines.public(db, viewer(me), origin="local", **kw)  # type: ignore[arg-type]

    async def tag(**kw: object) -> Page:
        return await timelines.hashtag(db, viewer(me), "shapes", **kw)  # type: ignore[arg-type]

    # Home searched (no feed yet), then from the feed, then with a lower bound.
    searched = await both(home, limit=40)
    assert any(p.reblog_of_id is not None for p in searched) and len(searched) >= 7
    await feeds.build(db, me.id)
    assert await both(home, limit=40) == searched
    assert await both(home, limit=3) == searched[:3]
    assert await both(home, min_id=middle, limit=40) == [p for p in searched if p.id > middle]
    # Public: the statement built once per process, then the one with a lower bound.
    assert len(await both(public, limit=40)) >= 6
    assert await both(public, max_id=middle, limit=2)
    assert await both(public, min_id=middle, limit=40)
    # A hashtag.
    tagged = sorted([p.id for p in written] + [shared.id], reverse=True)
    assert [p.id for p in await both(tag, limit=40)] == tagged
    assert [p.id for p in await both(tag, min_id=middle, limit=2)] == tagged[-5:-3]


def test_limit__is_clamped() -> None:
    assert timelines.clamp_limit(None) == timelines.DEFAULT_LIMIT
    assert timelines.clamp_limit(0) == 1
    assert timelines.clamp_limit(10_000) == timelines.MAX_LIMIT


# --- pagination ---------------------------------------------------------------------------


async def test_pagination__new_posts_between_page_loads__nothing_skipped_or_repeated(
    db: AsyncSession,
) -> None:
    # Given bob follows alice, who has written 12 posts
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await graph.follow(db, bob.id, alice.id)
    older = [await post(db, alice, f"Post {i}") for i in range(12)]
    # When bob loads his Home, 5 at a time
    first = await timelines.home(db, viewer(bob), limit=5, shape=ENTITIES)
    assert ids(first) == [p.id for p in reversed(older)][:5]
    # And alice posts 3 more before he scrolls down
    newer = [await post(db, alice, f"New {i}") for i in range(3)]
    seen = ids(first)
    cursor = first.older_max_id
    while cursor is not None:
        page = await timelines.home(db, viewer(bob), max_id=cursor, limit=5, shape=ENTITIES)
        seen += ids(page)
        cursor = page.older_max_id
    # Then scrolling down showed every older post once, newest first, and no new one
    assert seen == [p.id for p in reversed(older)]
    # And asking for what is newer than the top of the first page gives the 3 new posts
    above = await timelines.home(
        db, viewer(bob), min_id=first.newer_min_id, limit=5, shape=ENTITIES
    )
    assert ids(above) == [p.id for p in reversed(newer)]
    # And nothing newer than those
    assert (
        ids(await timelines.home(db, viewer(bob), min_id=above.newer_min_id, shape=ENTITIES)) == []
    )


async def test_pagination__min_id_gives_the_page_just_above__since_id_the_newest(
    db: AsyncSession,
) -> None:
    # Given 10 posts and a cursor at the 3rd
    alice = await person(db, "alice")
    made = [(await post(db, alice, f"P{i}")).id for i in range(10)]
    cursor = made[2]
    # min_id: the 3 posts right after the cursor (so a client can walk forward without gaps)
    page = await timelines.local(db, viewer(None), min_id=cursor, limit=3)
    assert ids(page) == [made[5], made[4], made[3]]
    # since_id: the 3 newest posts after the cursor (Mastodon's "latest, with a gap")
    page = await timelines.local(db, viewer(None), since_id=cursor, limit=3)
    assert ids(page) == [made[9], made[8], made[7]]
    # max_id and min_id together: the posts strictly between
    page = await timelines.local(db, viewer(None), max_id=made[6], min_id=cursor, limit=40)
    assert ids(page) == [made[5], made[4], made[3]]


async def _fresh_author(db: AsyncSession) -> Account:
    """One author for all generated examples; their posts are cleared for each example."""
    account = await db.scalar(select(Account).where(Account.username_key == "walker"))
    if account is None:
        account = await person(db, "walker")
    await db.execute(delete(Post).where(Post.account_id == account.id))
    await db.commit()
    return account


async def _arrive(db: AsyncSession, author: Account) -> int:
    """A new public post, written directly (the property is about ids and cursors, and
    thousands of create_post calls would make the test slow)."""
    p = Post(
        id=new_id(),
        account_id=author.id,
        visibility=Visibility.PUBLIC,
        source="x",
        content_html="<p>x</p>",
        created_at=utcnow(),
    )
    db.add(p)
    await db.commit()
    return p.id


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    # At least one post at first load: an empty first page has no cursor to walk up from.
    initial=st.integers(min_value=1, max_value=12),
    limit=st.integers(min_value=1, max_value=5),
    steps=st.lists(st.sampled_from(["arrive", "older", "newer"]), max_size=30),
)
async def test_pagination__property__random_interleavings(
    rt: Runtime, initial: int, limit: int, steps: list[str]
) -> None:
    async with rt.sessions() as db:
        author = await _fresh_author(db)
        existing = [await _arrive(db, author) for _ in range(initial)]
        # A reader loads the first page of Local
        first = await timelines.local(db, viewer(None), limit=limit)
        down, down_cursor, down_done = ids(first), first.older_max_id, first.older_max_id is None
        up: list[int] = []
        up_cursor = first.newer_min_id
        arrived: list[int] = []

        async def walk_up() -> bool:
            nonlocal up_cursor
            page = await timelines.local(db, viewer(None), min_id=up_cursor, limit=limit)
            up.extend(reversed(ids(page)))
            if page.posts:
                up_cursor = page.newer_min_id
            return bool(page.posts)

        # While posts arrive, the reader scrolls down (max_id) and checks for new ones (min_id)
        for step in steps:
            if step == "arrive":
                arrived.append(await _arrive(db, author))
            elif step == "older" and not down_done:
                page = await timelines.local(db, viewer(None), max_id=down_cursor, limit=limit)
                down += ids(page)
                down_cursor = page.older_max_id
                down_done = down_cursor is None
            elif step == "newer":
                await walk_up()
        # In the end, scrolling to the bottom and up to the top…
        while not down_done:
            page = await timelines.local(db, viewer(None), max_id=down_cursor, limit=limit)
            down += ids(page)
            down_cursor = page.older_max_id
            down_done = down_cursor is None
        while await walk_up():
            pass
    # …showed each post that existed at the first load exactly once, newest first…
    assert down == sorted(existing, reverse=True)
    # …and each post that arrived later exactly once, oldest first
    assert up == arrived
