"""Stories of posting: limits, polls, replies, likes, boosts, edits, deletes and pins."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.errors import Forbidden, NotFound, ValidationFailed
from kith.graph import service as graph
from kith.notifications.models import Notification
from kith.posts import service as posts
from kith.posts.models import Like, Pin, Poll, Post, PostEdit, Visibility
from kith.posts.service import MAX_PINS, PollInput, PostInput
from kith.runtime import Runtime
from tests.world import person, post, viewer


async def count(db: AsyncSession, model: Any, *where: Any) -> int:
    return int(await db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def notes(db: AsyncSession, **match: Any) -> list[Notification]:
    stmt = select(Notification).filter_by(**match)
    return list((await db.scalars(stmt)).all())


# --- writing ------------------------------------------------------------------------------


async def test_post_length__counts_each_link_as_23_characters(
    rt: Runtime, db: AsyncSession
) -> None:
    # Given an instance whose posts are at most 100 characters
    rt.settings.max_post_chars = 100
    alice = await person(db, "alice")
    link = "https://example.com/" + "a-very-long-path/" * 10  # 190 characters typed
    # When a post is 76 characters, a space and a long link (76 + 1 + 23 = 100)
    ok = await post(db, alice, "x" * 76 + " " + link)
    # Then it is accepted, however long the link
    assert link in ok.source
    # But one more character is refused, with the field named, and nothing is written
    with pytest.raises(ValidationFailed) as err:
        await post(db, alice, "x" * 77 + " " + link)
    assert err.value.field == "status" and "100" in err.value.message
    assert await count(db, Post) == 1


async def test_post_length__content_warning_counts_too(rt: Runtime, db: AsyncSession) -> None:
    rt.settings.max_post_chars = 100
    alice = await person(db, "alice")
    with pytest.raises(ValidationFailed):
        await post(db, alice, "x" * 90, spoiler_text="spoilers!!!")
    await post(db, alice, "x" * 89, spoiler_text="spoilers!!!")


@pytest.mark.parametrize("source", ["", "   ", "\n\t "])
async def test_empty_post__is_refused(db: AsyncSession, source: str) -> None:
    alice = await person(db, "alice")
    with pytest.raises(ValidationFailed) as err:
        await post(db, alice, source)
    assert err.value.field == "status"
    assert await count(db, Post) == 0


BAD_POLLS = {
    "one option": PollInput(["only"], 3600),
    "eleven options": PollInput([f"option {i}" for i in range(11)], 3600),
    "duplicate options": PollInput(["Tea", "coffee", "tea"], 3600),
    "an empty option": PollInput(["tea", "  "], 3600),
    "an option too long": PollInput(["tea", "c" * 101], 3600),
    "too short": PollInput(["tea", "coffee"], 299),
    "too long": PollInput(["tea", "coffee"], 30 * 24 * 3600 + 1),
    "negative": PollInput(["tea", "coffee"], -5),
}


@pytest.mark.parametrize("poll", BAD_POLLS.values(), ids=BAD_POLLS.keys())
async def test_bad_poll__is_refused_and_nothing_written(db: AsyncSession, poll: PollInput) -> None:
    alice = await person(db, "alice")
    with pytest.raises(ValidationFailed) as err:
        await post(db, alice, "Which?", poll=poll)
    assert err.value.field == "poll"
    assert await count(db, Post) == 0 and await count(db, Poll) == 0


async def test_poll__ten_options_and_thirty_days_are_fine(db: AsyncSession) -> None:
    alice = await person(db, "alice")
    p = await post(db, alice, "", poll=PollInput([f"o{i}" for i in range(10)], 30 * 24 * 3600))
    poll = await db.get(Poll, p.id)
    assert poll is not None and len(poll.options) == 10


async def test_reply__to_a_deleted_post__is_refused(db: AsyncSession) -> None:
    # Given a post that its author deleted
    alice, bob = await person(db, "alice"), await person(db, "bob")
    gone = await post(db, alice, "Soon gone")
    await posts.delete_post(db, viewer(alice), gone.id)
    # When bob replies to it, then it is refused and nothing is written
    with pytest.raises(ValidationFailed) as err:
        await posts.create_post(db, bob, PostInput("Too late", in_reply_to_id=gone.id))
    assert err.value.field == "in_reply_to_id"
    assert await count(db, Post) == 0


async def test_reply__to_a_post_one_cannot_see__is_refused(db: AsyncSession) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    secret = await post(db, alice, "Followers only", visibility=Visibility.PRIVATE)
    with pytest.raises(ValidationFailed):
        await posts.create_post(db, bob, PostInput("Peek", in_reply_to_id=secret.id))
    assert await count(db, Post) == 1


async def test_reply__counts_on_the_parent_and_notifies_its_author(db: AsyncSession) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    parent = await post(db, alice, "Question")
    reply = await post(db, bob, "Answer", reply_to=parent)
    await db.refresh(parent)
    assert parent.replies_count == 1 and reply.thread_root_id == parent.id
    assert [n.type for n in await notes(db, account_id=alice.id)] == ["reply"]
    # And deleting the reply takes the count back down
    await posts.delete_post(db, viewer(bob), reply.id)
    await db.refresh(parent)
    assert parent.replies_count == 0


# --- likes and boosts ---------------------------------------------------------------------


async def test_like__of_an_invisible_post__is_not_found_and_writes_nothing(
    db: AsyncSession,
) -> None:
    # Given a followers-only post and someone who doesn't follow its author
    alice, mallory = await person(db, "alice"), await person(db, "mallory")
    secret = await post(db, alice, "Only for my followers", visibility=Visibility.PRIVATE)
    # When they like it by id, then it "does not exist"
    with pytest.raises(NotFound):
        await posts.like(db, viewer(mallory), secret.id)
    # And no like, count or notification was written
    await db.refresh(secret)
    assert secret.likes_count == 0
    assert await count(db, Like) == 0
    assert await notes(db, account_id=alice.id) == []


async def test_like__twice_is_one_like_and_one_notification(db: AsyncSession) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    p = await post(db, alice, "Like me")
    await posts.like(db, viewer(bob), p.id)
    await posts.like(db, viewer(bob), p.id)
    await db.refresh(p)
    assert p.likes_count == 1 and await count(db, Like) == 1
    assert len(await notes(db, account_id=alice.id, type="favourite")) == 1
    # And unliking takes both back
    await posts.unlike(db, viewer(bob), p.id)
    await db.refresh(p)
    assert p.likes_count == 0 and await notes(db, account_id=alice.id) == []


@pytest.mark.parametrize("audience", [Visibility.PRIVATE, Visibility.DIRECT])
async def test_boost__of_followers_only_or_direct_post__is_refused(
    db: AsyncSession, audience: Visibility
) -> None:
    # Given a follower of alice, who is also mentioned (so sees even a direct post)
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await graph.follow(db, bob.id, alice.id)
    p = await post(db, alice, "For you, @bob", visibility=audience)
    # When bob boosts it, then it is refused: a boost would widen its audience
    with pytest.raises(ValidationFailed):
        await posts.boost(db, viewer(bob), p.id)
    # And the author can't either
    with pytest.raises(ValidationFailed):
        await posts.boost(db, viewer(alice), p.id)
    assert await count(db, Post, Post.reblog_of_id.is_not(None)) == 0


async def test_boost__twice_is_one_boost(db: AsyncSession) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    p = await post(db, alice, "Boost me")
    first = await posts.boost(db, viewer(bob), p.id)
    second = await posts.boost(db, viewer(bob), p.id)
    # Boosting the boost boosts nothing new either
    third = await posts.boost(db, viewer(bob), first.id)
    assert first.id == second.id == third.id
    await db.refresh(p)
    assert p.reblogs_count == 1
    assert len(await notes(db, account_id=alice.id, type="reblog")) == 1
    # And unboosting removes the boost, the count and the notification
    await posts.unboost(db, viewer(bob), p.id)
    await db.refresh(p)
    assert p.reblogs_count == 0 and await notes(db, account_id=alice.id) == []


async def test_boost__keeps_the_original_audience(db: AsyncSession) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    p = await post(db, alice, "Quietly", visibility=Visibility.UNLISTED)
    boost = await posts.boost(db, viewer(bob), p.id)
    assert boost.visibility == Visibility.UNLISTED


# --- edits --------------------------------------------------------------------------------


async def test_edit__keeps_history_and_notifies_boosters(db: AsyncSession) -> None:
    # Given alice's post, boosted by bob
    alice, bob = await person(db, "alice"), await person(db, "bob")
    p = await post(db, alice, "Frist post")
    await posts.boost(db, viewer(bob), p.id)
    # When alice fixes a typo
    await posts.edit_post(db, viewer(alice), p.id, PostInput("First post"))
    # Then the post shows the new text, and both versions are in its history, oldest first
    await db.refresh(p)
    assert p.source == "First post" and p.edited_at is not None
    history = await posts.edit_history(db, viewer(bob), p.id)
    assert [v.source for v in history] == ["Frist post", "First post"]
    # And bob, who boosted it, is told
    assert [n.type for n in await notes(db, account_id=bob.id)] == ["update"]


async def test_edit__a_second_edit_tells_boosters_again(db: AsyncSession) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    p = await post(db, alice, "v1")
    await posts.boost(db, viewer(bob), p.id)
    await posts.edit_post(db, viewer(alice), p.id, PostInput("v2"))
    (first,) = await notes(db, account_id=bob.id, type="update")
    await posts.edit_post(db, viewer(alice), p.id, PostInput("v3"))
    # Then bob has one "edited" notification, and it is a new one (it shows as unread)
    (latest,) = await notes(db, account_id=bob.id, type="update")
    assert latest.id > first.id
    assert [v.source for v in await posts.edit_history(db, viewer(alice), p.id)] == [
        "v1",
        "v2",
        "v3",
    ]


async def test_edit__by_someone_else__is_forbidden(db: AsyncSession) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    p = await post(db, alice, "Mine")
    with pytest.raises(Forbidden):
        await posts.edit_post(db, viewer(bob), p.id, PostInput("Yours now"))
    await db.refresh(p)
    assert p.source == "Mine" and await count(db, PostEdit) == 0


async def test_edit__of_a_direct_post__does_not_add_readers(db: AsyncSession) -> None:
    # Given a direct message to bob
    alice, bob, carol = [await person(db, n) for n in ("alice", "bob", "carol")]
    dm = await post(db, alice, "Just us, @bob", visibility=Visibility.DIRECT)
    # When alice edits it to mention carol too
    await posts.edit_post(db, viewer(alice), dm.id, PostInput("Just us, @bob and @carol"))
    # Then carol still can't open it
    assert not await policy.can_see_post(db, viewer(carol), dm)
    assert await policy.can_see_post(db, viewer(bob), dm)


async def test_edit__empty_text__is_refused_and_keeps_the_post(db: AsyncSession) -> None:
    alice = await person(db, "alice")
    p = await post(db, alice, "Keep me")
    with pytest.raises(ValidationFailed):
        await posts.edit_post(db, viewer(alice), p.id, PostInput("   "))
    await db.refresh(p)
    assert p.source == "Keep me" and p.edited_at is None


# --- deletes ------------------------------------------------------------------------------


async def test_delete__removes_boosts_likes_and_notifications(db: AsyncSession) -> None:
    # Given a post that was liked, boosted and replied to
    alice, bob, carol = [await person(db, n) for n in ("alice", "bob", "carol")]
    p = await post(db, alice, "Popular @carol")
    await posts.like(db, viewer(bob), p.id)
    await posts.boost(db, viewer(bob), p.id)
    await posts.bookmark(db, viewer(carol), p.id)
    reply = await post(db, carol, "Nice", reply_to=p)
    assert await notes(db, post_id=p.id)
    # When alice deletes it
    gone = await posts.delete_post(db, viewer(alice), p.id)
    assert gone.source == "Popular @carol"  # for delete-and-redraft
    # Then it is gone with its boosts, likes and the notifications about it
    assert await db.scalar(select(Post.id).where(Post.id == p.id)) is None
    assert await count(db, Post, Post.reblog_of_id == p.id) == 0
    assert await count(db, Like) == 0
    assert await notes(db, post_id=p.id) == []
    # And the reply stays, detached
    await db.refresh(reply)
    assert reply.in_reply_to_id is None
    with pytest.raises(NotFound):
        await posts.get_visible_post(db, viewer(bob), p.id)


async def test_delete__by_someone_else__is_forbidden(db: AsyncSession) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    p = await post(db, alice, "Mine")
    with pytest.raises(Forbidden):
        await posts.delete_post(db, viewer(bob), p.id)
    assert await count(db, Post) == 1


# --- pins ---------------------------------------------------------------------------------


async def test_pin__at_most_five(db: AsyncSession) -> None:
    alice = await person(db, "alice")
    mine = [await post(db, alice, f"Post {i}") for i in range(MAX_PINS + 1)]
    for p in mine[:MAX_PINS]:
        await posts.pin(db, viewer(alice), p.id)
    # Pinning a pinned post again is fine
    await posts.pin(db, viewer(alice), mine[0].id)
    with pytest.raises(ValidationFailed):
        await posts.pin(db, viewer(alice), mine[-1].id)
    assert await count(db, Pin) == MAX_PINS
    # After unpinning one, there is room again
    await posts.pin(db, viewer(alice), mine[0].id, on=False)
    await posts.pin(db, viewer(alice), mine[-1].id)
    assert await count(db, Pin) == MAX_PINS


async def test_pin__someone_elses_post_or_a_direct_one__is_refused(db: AsyncSession) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    theirs = await post(db, bob, "Bob's")
    dm = await post(db, alice, "@bob psst", visibility=Visibility.DIRECT)
    with pytest.raises(Forbidden):
        await posts.pin(db, viewer(alice), theirs.id)
    with pytest.raises(ValidationFailed):
        await posts.pin(db, viewer(alice), dm.id)
    assert await count(db, Pin) == 0


# --- polls --------------------------------------------------------------------------------


async def test_vote__once_in_a_single_choice_poll(db: AsyncSession) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    p = await post(db, alice, "Tea or coffee?", poll=PollInput(["tea", "coffee"], 3600))
    with pytest.raises(ValidationFailed):
        await posts.vote(db, viewer(bob), p.id, [0, 1])
    with pytest.raises(ValidationFailed):
        await posts.vote(db, viewer(bob), p.id, [2])
    with pytest.raises(ValidationFailed):
        await posts.vote(db, viewer(alice), p.id, [0])
    poll = await posts.vote(db, viewer(bob), p.id, [1])
    assert poll.votes_count == 1 and poll.voters_count == 1
    with pytest.raises(ValidationFailed):
        await posts.vote(db, viewer(bob), p.id, [0])
    assert await posts.poll_results(db, p.id) == [0, 1]
