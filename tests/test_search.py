"""Search service: full-text posts (FTS5 / PostgreSQL), accounts, hashtags, and what never leaks."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy import text as sql

from kith.accounts.models import Account, User, UserState
from kith.db import make_engine, make_sessionmaker, utcnow
from kith.graph import service as graph
from kith.graph.models import Mute
from kith.migrate import upgrade
from kith.moderation import service as moderation
from kith.posts import service as posts
from kith.posts.models import Post, Visibility
from kith.posts.service import PostInput
from kith.search import service as search
from tests.conftest import BACKEND, _create_pg_database, _drop_pg_database
from tests.world import person, post, viewer


async def found(db, who, q: str) -> list[int]:  # type: ignore[no-untyped-def]
    return [p.id for p in await search.search_posts(db, who, q)]


# --- finding posts ------------------------------------------------------------------------


async def test_search_posts__finds_words_of_text_and_content_warning_case_insensitively(db) -> None:  # type: ignore[no-untyped-def]
    # Given a public post with a content warning and some Markdown
    alice = await person(db, "alice")
    p = await post(db, alice, "Our **Allotment** harvest #gardening", spoiler_text="Marrows")
    # When anyone searches for words of the text, the tag or the warning, in any case
    # Then the post is found
    assert await found(db, viewer(None), "allotment") == [p.id]
    assert await found(db, viewer(None), "HARVEST allotment") == [p.id]
    assert await found(db, viewer(None), "gardening") == [p.id]
    assert await found(db, viewer(None), "marrows") == [p.id]
    # and markup never counts as text
    assert await found(db, viewer(None), "strong") == []


async def test_search_posts__every_term_must_match_and_quotes_make_a_phrase(db) -> None:  # type: ignore[no-untyped-def]
    alice = await person(db, "alice")
    a = await post(db, alice, "red apples and green pears")
    b = await post(db, alice, "green apples")
    assert set(await found(db, viewer(None), "green apples")) == {a.id, b.id}
    assert await found(db, viewer(None), '"green apples"') == [b.id]
    assert await found(db, viewer(None), "apples plums") == []


async def test_search_posts__newest_first_and_pages_with_max_id(db) -> None:  # type: ignore[no-untyped-def]
    alice = await person(db, "alice")
    ids = [(await post(db, alice, f"tomato number {i}")).id for i in range(3)]
    first = await search.search_posts(db, viewer(None), "tomato", limit=2)
    assert [p.id for p in first] == [ids[2], ids[1]]
    rest = await search.search_posts(db, viewer(None), "tomato", limit=2, max_id=first[-1].id)
    assert [p.id for p in rest] == [ids[0]]


async def test_edit_post__search_finds_the_new_words_only(db) -> None:  # type: ignore[no-untyped-def]
    alice = await person(db, "alice")
    p = await post(db, alice, "courgettes everywhere")
    # When alice edits the post
    await posts.edit_post(db, viewer(alice), p.id, PostInput(source="pumpkins everywhere"))
    # Then the old word no longer finds it, the new one does
    assert await found(db, viewer(None), "courgettes") == []
    assert await found(db, viewer(None), "pumpkins") == [p.id]


async def test_delete_post__leaves_nothing_in_the_index(db) -> None:  # type: ignore[no-untyped-def]
    alice = await person(db, "alice")
    p = await post(db, alice, "secret compost recipe")
    await posts.delete_post(db, viewer(alice), p.id)
    assert await found(db, viewer(alice), "compost") == []
    if db.get_bind().dialect.name == "sqlite":
        # Real deletion: the words are gone from the FTS table too, not just unreachable.
        left = await db.scalar(
            sql("SELECT count(*) FROM posts_fts WHERE rowid = :id"), {"id": p.id}
        )
        assert left == 0


async def test_boost__is_not_a_search_result_of_its_own(db) -> None:  # type: ignore[no-untyped-def]
    alice, bob = await person(db, "alice"), await person(db, "bob")
    p = await post(db, alice, "seed swap on saturday")
    await posts.boost(db, viewer(bob), p.id)
    assert await found(db, viewer(bob), "seed swap") == [p.id]


# --- what search never shows --------------------------------------------------------------


async def test_search_posts__never_shows_others_unlisted_followers_only_or_direct_posts(db) -> None:  # type: ignore[no-untyped-def]
    # Given bob follows alice, and alice posts with every audience
    alice, bob, carol = (
        await person(db, "alice"),
        await person(db, "bob"),
        await person(db, "carol"),
    )
    await graph.follow(db, bob.id, alice.id)
    public = await post(db, alice, "beetroot public")
    await post(db, alice, "beetroot unlisted", visibility=Visibility.UNLISTED)
    await post(db, alice, "beetroot followers", visibility=Visibility.PRIVATE)
    await post(db, alice, "beetroot direct to @carol", visibility=Visibility.DIRECT)
    # Then bob (a follower), anonymous visitors and an outsider find only the public post
    for who in (viewer(bob), viewer(None), viewer(await person(db, "dave"))):
        assert await found(db, who, "beetroot") == [public.id]
    # while carol also finds the direct post that mentions her, and alice finds all her own
    assert len(await found(db, viewer(carol), "beetroot")) == 2
    assert len(await found(db, viewer(alice), "beetroot")) == 4


async def test_search_posts__admins_get_no_extra_reach(db) -> None:  # type: ignore[no-untyped-def]
    alice, boss = await person(db, "alice"), await person(db, "boss", admin=True)
    await post(db, alice, "turnip private", visibility=Visibility.PRIVATE)
    assert await found(db, viewer(boss, admin=True), "turnip") == []


async def test_search_posts__blocks_hide_posts_both_ways_and_mutes_hide_for_the_muter(db) -> None:  # type: ignore[no-untyped-def]
    alice, bob, carol = (
        await person(db, "alice"),
        await person(db, "bob"),
        await person(db, "carol"),
    )
    await post(db, alice, "leek soup")
    await graph.block(db, alice.id, bob.id)
    await graph.mute(db, carol.id, alice.id)
    assert await found(db, viewer(bob), "leek") == []  # blocked by the author
    assert await found(db, viewer(carol), "leek") == []  # muted the author
    assert len(await found(db, viewer(None), "leek")) == 1
    bobs = await post(db, bob, "leek tart")
    assert await found(db, viewer(alice), "leek") != [] and bobs.id not in await found(
        db, viewer(alice), "leek"
    )  # the blocker doesn't see the blocked either


async def test_search_posts__suspended_and_silenced_authors(db) -> None:  # type: ignore[no-untyped-def]
    alice, bob, fan = await person(db, "alice"), await person(db, "bob"), await person(db, "fan")
    await post(db, alice, "onion rings")
    b = await post(db, bob, "onion bhaji")
    await graph.follow(db, fan.id, bob.id)
    await moderation.suspend(db, alice)
    await moderation.silence(db, bob)
    assert await found(db, viewer(None), "onion") == []  # suspended gone, silenced unlisted
    assert await found(db, viewer(fan), "onion") == [b.id]  # followers still find the silenced


HOSTILE_QUERIES = [
    '"',
    '""',
    '"unbalanced',
    "*",
    "kale*",
    "NEAR(kale chard, 2)",
    "kale NEAR chard",
    "kale OR chard",
    "kale AND NOT chard",
    "-kale",
    "^kale",
    "body:kale",
    "{body}: kale",
    "(kale",
    "kale)",
    "((((",
    "'; DROP TABLE posts; --",
    "kale\x00chard",
    "\x00",
    "kale\u202echard",
    "x" * 5000,
    " ".join(["kale"] * 500),
    "!@#$%^&*()_+{}|:<>?",
    "🥬 kale",
]


async def test_search__query_syntax_is_never_interpreted(db) -> None:  # type: ignore[no-untyped-def]
    # Given a post that contains the operator words as plain text
    alice = await person(db, "alice")
    p = await post(db, alice, "kale and chard NEAR the body of water OR not")
    for q in HOSTILE_QUERIES:
        # When someone searches with FTS or websearch syntax
        results = await search.search(db, viewer(alice), q)
        # Then nothing fails, and whatever is found was found by its words
        assert all(r.id == p.id for r in results.posts), q
    # and the index still works
    assert await found(db, viewer(None), "kale") == [p.id]


async def test_search__operator_words_are_plain_words(db) -> None:  # type: ignore[no-untyped-def]
    alice = await person(db, "alice")
    p = await post(db, alice, "kale and chard NEAR the river")
    await post(db, alice, "just kale")
    assert await found(db, viewer(None), "NEAR") == [p.id]
    assert await found(db, viewer(None), "kale OR spinach") == []  # OR is a word, not an operator
    assert await found(db, viewer(None), "(kale) (chard*)") == [
        p.id
    ]  # brackets and * are not syntax


def test_query_terms__words_and_phrases_without_operators() -> None:
    assert search.query_terms('green "red apples" -x ( *') == ["green", "red apples", "-x"]
    assert search.query_terms('"open') == ["open"]
    assert search.query_terms("a\x00b") == ["a", "b"]
    assert len(search.query_terms(" ".join(f"w{i}" for i in range(50)))) == search.MAX_TERMS


# --- accounts -----------------------------------------------------------------------------


async def test_search_accounts__by_handle_or_display_name_prefix_or_contains(db) -> None:  # type: ignore[no-untyped-def]
    rose = await person(db, "rosemary")
    rose.display_name = "Herb Gardener"
    primrose = await person(db, "primrose")
    await person(db, "basil")
    await db.commit()
    me = viewer(await person(db, "me"))
    names = [a.username for a in await search.search_accounts(db, me, "ROSE")]
    assert names == ["rosemary", "primrose"]  # handle prefix before contains
    assert [a.id for a in await search.search_accounts(db, me, "gardener")] == [rose.id]
    assert [a.id for a in await search.search_accounts(db, me, "@primrose")] == [primrose.id]
    assert [a.id for a in await search.search_accounts(db, me, "primrose@kith.test")] == [
        primrose.id
    ]
    assert await search.search_accounts(db, me, "%") == []  # LIKE wildcards are literal


async def test_search_accounts__undiscoverable_only_by_exact_handle(db) -> None:  # type: ignore[no-untyped-def]
    shy = await person(db, "shyviolet")
    shy.discoverable = False
    await db.commit()
    me = viewer(await person(db, "me"))
    assert await search.search_accounts(db, me, "shy") == []
    assert [a.id for a in await search.search_accounts(db, me, "shyviolet")] == [shy.id]
    assert [a.id for a in await search.search_accounts(db, viewer(shy), "shy")] == [shy.id]


async def test_search_accounts__never_suspended_pending_or_blocked(db) -> None:  # type: ignore[no-untyped-def]
    me = await person(db, "me")
    gone = await person(db, "weedy")
    await moderation.suspend(db, gone)
    waiting = await person(db, "weedling")
    pending = await db.scalar(select(User).where(User.account_id == waiting.id))
    assert pending is not None
    pending.state = UserState.PENDING
    blocker = await person(db, "weedkiller")
    await graph.block(db, blocker.id, me.id)
    await db.commit()
    assert await search.search_accounts(db, viewer(me), "weed") == []
    assert await search.search_accounts(db, viewer(me), "weedy") == []  # not even exactly


# --- hashtags -----------------------------------------------------------------------------


async def test_search_hashtags__prefix_and_only_tags_the_viewer_could_find(db) -> None:  # type: ignore[no-untyped-def]
    alice = await person(db, "alice")
    await post(db, alice, "#Gardening #gardenparty")
    await post(db, alice, "#gardensecret", visibility=Visibility.PRIVATE)
    names = [t.name for t in await search.search_hashtags(db, viewer(None), "#GARDEN")]
    assert names == ["gardening", "gardenparty"]
    mine = [t.name for t in await search.search_hashtags(db, viewer(alice), "garden")]
    assert "gardensecret" in mine
    assert await search.search_hashtags(db, viewer(None), "%") == []


async def test_search__empty_query_finds_nothing(db) -> None:  # type: ignore[no-untyped-def]
    alice = await person(db, "alice")
    await post(db, alice, "anything")
    results = await search.search(db, viewer(alice), "   ")
    assert (results.accounts, results.hashtags, results.posts) == ([], [], [])


async def test_mute_expired__posts_are_found_again(db) -> None:  # type: ignore[no-untyped-def]
    alice, bob = await person(db, "alice"), await person(db, "bob")
    p = await post(db, alice, "chilli harvest")
    await graph.mute(db, bob.id, alice.id, duration=60)
    assert await found(db, viewer(bob), "chilli") == []
    mute = await db.get(Mute, (bob.id, alice.id))
    assert mute is not None
    mute.expires_at = utcnow() - timedelta(seconds=1)
    await db.commit()
    assert await found(db, viewer(bob), "chilli") == [p.id]


# --- the migration ------------------------------------------------------------------------


async def test_migration_0002__indexes_posts_written_before_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Given a database at the first migration with a post already in it
    if BACKEND == "postgres":
        url, name = await _create_pg_database()
    else:
        url, name = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}", ""
    engine = make_engine(url)
    try:
        await asyncio.to_thread(upgrade, url, "0001")
        async with make_sessionmaker(engine)() as db:
            author = Account(username="old", username_key="old")
            db.add(author)
            await db.flush()
            db.add(Post(id=42, account_id=author.id, content_html="<p>heirloom beans</p>"))
            await db.commit()
        # When the search migration runs
        await asyncio.to_thread(upgrade, url)
        # Then the old post is found
        async with make_sessionmaker(engine)() as db:
            assert [p.id for p in await search.search_posts(db, viewer(None), "heirloom")] == [42]
    finally:
        await engine.dispose()
        if name:
            await _drop_pg_database(name)
