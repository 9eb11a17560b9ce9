"""Flairs per community: moderators define a few (name, colour from the palette, at most 20,
no two alike), an author picks one when posting from the community page, moderators change
a thread's flair, the feed filters by it and the thread's card shows it. Bad input is a
clear error with nothing written; other people's powers do not reach here; CSRF."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.communities import feeds, flairs
from kith.communities import service as communities
from kith.communities.models import (
    CommunityFlair,
    CommunityPost,
    ModAction,
    ModerationLogEntry,
)
from kith.config import Settings
from kith.errors import Forbidden, NotFound, ValidationFailed
from kith.posts import service as posts
from kith.posts.models import Post
from kith.posts.service import PostInput
from tests.test_communities_web import as_, count, found
from tests.test_community_posts import write
from tests.world import person, viewer


async def flair_of(db: AsyncSession, community_id: int, post_id: int) -> int | None:
    return await db.scalar(
        select(CommunityPost.flair_id).where(
            CommunityPost.community_id == community_id, CommunityPost.post_id == post_id
        )
    )


# --- defining flairs -----------------------------------------------------------------------


async def test_create_flair__moderators_define_them_and_it_is_logged(db: AsyncSession) -> None:
    # Given a community with an owner
    ann = await person(db, "ann")
    c = await found(db, ann, "gardeners")
    # When she adds two flairs
    q = await flairs.create_flair(db, ann.id, c, "  Question ", "blue")
    await flairs.create_flair(db, ann.id, c, "Harvest log", "green")
    # Then they are the community's, in order, trimmed, and the log says so
    listed = await flairs.flairs_of_community(db, c)
    assert [(f.name, f.colour) for f in listed] == [("Question", "blue"), ("Harvest log", "green")]
    assert (await flairs.find_flair(db, c, "QUESTION")) is not None and q.name_key == "question"
    details = (
        await db.scalars(
            select(ModerationLogEntry.detail).where(ModerationLogEntry.community_id == c.id)
        )
    ).all()
    assert "added the flair Question" in details


@pytest.mark.parametrize(
    ("name", "colour", "field"),
    [
        ("", "blue", "name"),
        ("x" * 31, "blue", "name"),
        ("Question", "chartreuse", "colour"),
        ("question", "red", "name"),  # a duplicate, whatever its case
    ],
)
async def test_create_flair__bad_input_refused_with_nothing_written(
    db: AsyncSession, name: str, colour: str, field: str
) -> None:
    ann = await person(db, "ann")
    c = await found(db, ann, "gardeners")
    await flairs.create_flair(db, ann.id, c, "Question", "blue")
    with pytest.raises(ValidationFailed) as err:
        await flairs.create_flair(db, ann.id, c, name, colour)
    assert err.value.field == field
    if name == "question":
        assert "already has a flair called question" in err.value.message
    assert await count(db, CommunityFlair) == 1


async def test_create_flair__at_most_twenty(db: AsyncSession) -> None:
    ann = await person(db, "ann")
    c = await found(db, ann, "gardeners")
    for i in range(flairs.MAX_FLAIRS):
        await flairs.create_flair(db, ann.id, c, f"Flair {i}", "grey")
    with pytest.raises(ValidationFailed, match="at most 20"):
        await flairs.create_flair(db, ann.id, c, "One more", "grey")
    assert await count(db, CommunityFlair) == flairs.MAX_FLAIRS


async def test_create_flair__a_member_or_another_communitys_moderator_cannot(
    db: AsyncSession,
) -> None:
    ann, bob, dee = await person(db, "ann"), await person(db, "bob"), await person(db, "dee")
    c = await found(db, ann, "gardeners")
    await found(db, dee, "chess")
    await communities.join(db, bob.id, c)
    for who in (bob, dee):
        with pytest.raises(Forbidden):
            await flairs.create_flair(db, who.id, c, "Mine", "red")
    flair = await flairs.create_flair(db, ann.id, c, "Question", "blue")
    with pytest.raises(Forbidden):
        await flairs.delete_flair(db, dee.id, c, flair.id)
    assert await count(db, CommunityFlair) == 1


# --- a thread's flair ----------------------------------------------------------------------


async def test_set_thread_flair__a_moderator_changes_it_and_it_is_logged(db: AsyncSession) -> None:
    ann, bob = await person(db, "ann"), await person(db, "bob")
    c = await found(db, ann, "gardeners")
    await communities.join(db, bob.id, c)
    q = await flairs.create_flair(db, ann.id, c, "Question", "blue")
    thread = await write(db, bob, "How deep do I sow beans?", c)
    await flairs.set_thread_flair(db, ann.id, c, thread.id, "question")
    assert await flair_of(db, c.id, thread.id) == q.id
    # Setting the same one again is refused; "" takes it off
    with pytest.raises(ValidationFailed, match="already has this flair"):
        await flairs.set_thread_flair(db, ann.id, c, thread.id, "Question")
    await flairs.set_thread_flair(db, ann.id, c, thread.id, "")
    assert await flair_of(db, c.id, thread.id) is None
    actions = (
        await db.scalars(
            select(ModerationLogEntry.action).where(ModerationLogEntry.target_post_id == thread.id)
        )
    ).all()
    assert actions == [ModAction.FLAIR, ModAction.FLAIR]


async def test_set_thread_flair__unknown_other_communitys_member_and_reply_refused(
    db: AsyncSession,
) -> None:
    ann, bob, dee = await person(db, "ann"), await person(db, "bob"), await person(db, "dee")
    c = await found(db, ann, "gardeners")
    chess = await found(db, dee, "chess")
    await communities.join(db, bob.id, c)
    await flairs.create_flair(db, ann.id, c, "Question", "blue")
    await flairs.create_flair(db, dee.id, chess, "Openings", "red")
    thread = await write(db, bob, "Beans?", c)
    reply = await write(db, ann, "Two fingers deep", reply_to=thread)
    with pytest.raises(ValidationFailed) as err:
        await flairs.set_thread_flair(db, ann.id, c, thread.id, "Nonsense")
    assert err.value.field == "flair"
    with pytest.raises(ValidationFailed):  # a flair of another community
        await flairs.set_thread_flair(db, ann.id, c, thread.id, "Openings")
    with pytest.raises(Forbidden):  # a member, and another community's moderator
        await flairs.set_thread_flair(db, bob.id, c, thread.id, "Question")
    with pytest.raises(Forbidden):
        await flairs.set_thread_flair(db, dee.id, c, thread.id, "Question")
    with pytest.raises(ValidationFailed, match="thread's first post"):
        await flairs.set_thread_flair(db, ann.id, c, reply.id, "Question")
    with pytest.raises(NotFound):  # a thread of another community
        other = await write(db, dee, "e4", chess)
        await flairs.set_thread_flair(db, ann.id, c, other.id, "Question")
    assert await flair_of(db, c.id, thread.id) is None
    assert await count(db, ModerationLogEntry, ModerationLogEntry.action == ModAction.FLAIR) == 0


async def test_new_thread__flair_written_with_the_post_and_a_foreign_one_writes_nothing(
    db: AsyncSession,
) -> None:
    # Given two communities, each with a flair
    ann, dee = await person(db, "ann"), await person(db, "dee")
    c = await found(db, ann, "gardeners")
    chess = await found(db, dee, "chess")
    question = await flairs.create_flair(db, ann.id, c, "Question", "blue")
    openings = await flairs.create_flair(db, dee.id, chess, "Openings", "red")
    # When ann starts a thread with her community's flair, it is on the thread at once
    data = PostInput(source="Beans?", community_ids=[c.id], community_flairs={c.id: question.id})
    thread = await posts.create_post(db, ann, data)
    assert await flair_of(db, c.id, thread.id) == question.id
    # But another community's flair, or a flair for a community the post is not in, is
    # refused before anything is written
    before = await count(db, Post)
    for wrong in ({c.id: openings.id}, {chess.id: openings.id}):
        bad = PostInput(source="Peas?", community_ids=[c.id], community_flairs=wrong)
        with pytest.raises(ValidationFailed) as err:
            await posts.create_post(db, ann, bad)
        assert err.value.field == "flair"
    assert await count(db, Post) == before


async def test_feed__filtered_by_flair_in_every_order(db: AsyncSession) -> None:
    ann, bob = await person(db, "ann"), await person(db, "bob")
    c = await found(db, ann, "gardeners")
    await communities.join(db, bob.id, c)
    q = await flairs.create_flair(db, ann.id, c, "Question", "blue")
    asked = await write(db, bob, "Beans?", c)
    await write(db, bob, "Look at my tomatoes", c)
    await flairs.set_thread_flair(db, ann.id, c, asked.id, "Question")
    for sort in ("new", "active", "top"):
        page = await feeds.community_feed(db, viewer(None), c, sort=sort, flair_id=q.id)
        assert [p.id for p in page.posts] == [asked.id], sort
        everything = await feeds.community_feed(db, viewer(None), c, sort=sort)
        assert len(everything.posts) == 2, sort


# --- the web -------------------------------------------------------------------------------


async def test_web__author_picks_a_flair_card_shows_it_and_the_feed_filters(
    db: AsyncSession, settings: Settings
) -> None:
    # Given a community with a flair, and bob a member
    ann, bob = await person(db, "ann"), await person(db, "bob")
    c = await found(db, ann, "gardeners")
    await communities.join(db, bob.id, c)
    await flairs.create_flair(db, ann.id, c, "Question", "blue")
    async with as_(settings, "bob") as b:
        page = (await b.get("/c/gardeners")).text
        assert 'name="flair"' in page and ">Question</option>" in page
        # When he posts one thread with the flair and one without
        r = await b.post("/c/gardeners/posts", {"status": "Beans how deep?", "flair": "Question"})
        assert "notice=posted" in r.headers["location"]
        await b.post("/c/gardeners/posts", {"status": "Tomato pics"})
        # Then the card wears it, and the filtered feed has that thread alone
        page = (await b.get("/c/gardeners")).text
        assert 'class="flair flair-blue" href="/c/gardeners?flair=Question"' in page
        filtered = (await b.get("/c/gardeners?flair=question")).text
        assert "Beans how deep?" in filtered and "Tomato pics" not in filtered
        unknown = (await b.get("/c/gardeners?flair=Nope")).text
        assert "no flair called that" in unknown and "Tomato pics" not in unknown
    thread = await db.scalar(select(Post).where(Post.content_html.contains("Beans")))
    assert thread is not None and await flair_of(db, c.id, thread.id) is not None


async def test_web__unknown_or_other_communitys_flair_refuses_the_post(
    db: AsyncSession, settings: Settings
) -> None:
    ann, bob, dee = await person(db, "ann"), await person(db, "bob"), await person(db, "dee")
    c = await found(db, ann, "gardeners")
    chess = await found(db, dee, "chess")
    await flairs.create_flair(db, dee.id, chess, "Openings", "red")
    await communities.join(db, bob.id, c)
    async with as_(settings, "bob") as b:
        for name in ("Nonsense", "Openings"):
            r = await b.post("/c/gardeners/posts", {"status": "Hello", "flair": name})
            assert r.status_code == 422 and "has no flair called that" in r.text
    assert await count(db, Post) == 0


async def test_web__moderators_page_defines_flairs_members_and_csrf_refused(
    db: AsyncSession, settings: Settings
) -> None:
    ann, bob = await person(db, "ann"), await person(db, "bob")
    c = await found(db, ann, "gardeners")
    await communities.join(db, bob.id, c)
    thread = await write(db, bob, "Beans?", c)
    async with as_(settings, "bob") as b:
        assert (await b.get("/c/gardeners/flairs")).status_code == 403
        r = await b.post("/c/gardeners/flairs", {"name": "Mine", "colour": "red"})
        assert r.status_code == 403
    async with as_(settings, "ann") as b:
        r = await b.post("/c/gardeners/flairs", {"name": "Question", "colour": "blue"})
        assert r.status_code == 303
        r = await b.post("/c/gardeners/flairs", {"name": "QUESTION", "colour": "red"})
        assert r.status_code == 422 and "already has a flair called QUESTION" in r.text
        r = await b.post("/c/gardeners/flairs", {"name": "x" * 31, "colour": "red"})
        assert r.status_code == 422
        r = await b.post(f"/c/gardeners/threads/{thread.id}/flair", {"flair": "Question"})
        assert r.status_code == 303
        b.csrf = "0" * 64
        r = await b.post("/c/gardeners/flairs", {"name": "Sneaky", "colour": "red"})
        assert r.status_code == 403
    async with as_(settings, "bob") as b:
        r = await b.post(f"/c/gardeners/threads/{thread.id}/flair", {"flair": ""})
        assert r.status_code == 403
    assert await count(db, CommunityFlair) == 1
    assert await flair_of(db, c.id, thread.id) is not None
