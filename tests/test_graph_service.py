"""Stories of the social graph: follows, locked accounts, removing followers, blocks, mutes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts import service as accounts
from kith.db import utcnow
from kith.errors import NotFound, ValidationFailed
from kith.graph import service as graph
from kith.graph.models import Follow, FollowRequest, Mute
from kith.jobs.cleanup import cleanup
from kith.notifications import service as notifications
from kith.notifications.models import Notification
from kith.posts import service as posts
from kith.posts.models import Visibility
from kith.timelines import service as timelines
from kith.timelines.shapes import ENTITIES
from tests.world import person, post, viewer


async def count(db: AsyncSession, model: Any, *where: Any) -> int:
    return int(await db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def note_types(db: AsyncSession, account_id: int) -> list[str]:
    rows = await db.scalars(select(Notification.type).where(Notification.account_id == account_id))
    return sorted(rows.all())


async def home_ids(db: AsyncSession, account: Any) -> set[int]:
    return {
        p.id for p in (await timelines.home(db, viewer(account), limit=40, shape=ENTITIES)).posts
    }


# --- follows ------------------------------------------------------------------------------


async def test_follow__then_unfollow(db: AsyncSession) -> None:
    # Given bob follows alice
    alice, bob = await person(db, "alice"), await person(db, "bob")
    assert await graph.follow(db, bob.id, alice.id) == "following"
    # Then alice is told and her posts reach bob's Home
    assert await note_types(db, alice.id) == ["follow"]
    p = await post(db, alice, "Hello followers")
    assert p.id in await home_ids(db, bob)
    rel = await graph.relationship(db, bob.id, alice.id)
    assert rel.following and not rel.followed_by
    # Following again changes nothing
    assert await graph.follow(db, bob.id, alice.id) == "following"
    assert await count(db, Follow) == 1 and await note_types(db, alice.id) == ["follow"]
    # When bob unfollows, the follow, the notification and the posts in Home go
    await graph.unfollow(db, bob.id, alice.id)
    assert await count(db, Follow) == 0
    assert await note_types(db, alice.id) == []
    assert p.id not in await home_ids(db, bob)


async def test_follow__oneself_or_a_missing_account__is_refused(db: AsyncSession) -> None:
    alice = await person(db, "alice")
    with pytest.raises(ValidationFailed):
        await graph.follow(db, alice.id, alice.id)
    with pytest.raises(NotFound):
        await graph.follow(db, alice.id, 424242)
    assert await count(db, Follow) == 0


async def test_follow_request__locked_account_waits_for_approval(db: AsyncSession) -> None:
    # Given alice, whose account is locked
    alice = await person(db, "alice", locked=True)
    bob = await person(db, "bob")
    secret = await post(db, alice, "For followers", visibility=Visibility.PRIVATE)
    # When bob asks to follow her
    assert await graph.follow(db, bob.id, alice.id) == "requested"
    assert await graph.follow(db, bob.id, alice.id) == "requested"  # asking twice is once
    # Then he doesn't follow yet, and she has one request and one notification
    assert await count(db, Follow) == 0
    assert [a.id for a in await graph.follow_requests(db, alice.id)] == [bob.id]
    assert await note_types(db, alice.id) == ["follow_request"]
    assert (await graph.relationship(db, bob.id, alice.id)).requested
    assert secret.id not in await home_ids(db, bob)
    # When she approves
    await graph.answer_request(db, alice.id, bob.id, accept=True)
    # Then he follows her and sees her followers-only posts; the request is gone
    assert await count(db, Follow, Follow.follower_id == bob.id) == 1
    assert await graph.follow_requests(db, alice.id) == []
    assert await note_types(db, alice.id) == ["follow"]
    assert secret.id in await home_ids(db, bob)


async def test_follow_request__rejected__leaves_no_follow(db: AsyncSession) -> None:
    alice = await person(db, "alice", locked=True)
    bob = await person(db, "bob")
    await graph.follow(db, bob.id, alice.id)
    await graph.answer_request(db, alice.id, bob.id, accept=False)
    assert await count(db, Follow) == 0 and await count(db, FollowRequest) == 0
    assert await note_types(db, alice.id) == []
    assert not (await graph.relationship(db, bob.id, alice.id)).requested
    # And answering it again finds nothing
    with pytest.raises(NotFound):
        await graph.answer_request(db, alice.id, bob.id, accept=True)


async def test_follow_request__withdrawn_by_unfollowing(db: AsyncSession) -> None:
    alice = await person(db, "alice", locked=True)
    bob = await person(db, "bob")
    await graph.follow(db, bob.id, alice.id)
    await graph.unfollow(db, bob.id, alice.id)
    assert await graph.follow_requests(db, alice.id) == []
    assert await note_types(db, alice.id) == []


async def test_remove_follower__stops_them_following(db: AsyncSession) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await graph.follow(db, bob.id, alice.id)
    secret = await post(db, alice, "Followers only", visibility=Visibility.PRIVATE)
    await graph.remove_follower(db, alice.id, bob.id)
    assert await count(db, Follow) == 0
    assert secret.id not in await home_ids(db, bob)
    # And he may follow again (it is not a block)
    assert await graph.follow(db, bob.id, alice.id) == "following"


# --- blocks -------------------------------------------------------------------------------


async def test_block__removes_follows_and_requests_both_ways(db: AsyncSession) -> None:
    # Given alice and bob follow each other
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await graph.follow(db, bob.id, alice.id)
    await graph.follow(db, alice.id, bob.id)
    # When alice blocks bob
    await graph.block(db, alice.id, bob.id)
    # Then neither follows the other
    assert await count(db, Follow) == 0
    rel = await graph.relationship(db, alice.id, bob.id)
    assert rel.blocking and not rel.following and not rel.followed_by
    assert (await graph.relationship(db, bob.id, alice.id)).blocked_by
    # And neither can follow the other again
    for a, b in ((bob, alice), (alice, bob)):
        with pytest.raises(ValidationFailed):
            await graph.follow(db, a.id, b.id)
    assert await count(db, Follow) == 0
    # Until alice unblocks
    await graph.unblock(db, alice.id, bob.id)
    assert await graph.follow(db, bob.id, alice.id) == "following"


async def test_block__removes_pending_follow_requests(db: AsyncSession) -> None:
    carol = await person(db, "carol", locked=True)
    bob = await person(db, "bob")
    await graph.follow(db, bob.id, carol.id)
    await graph.block(db, carol.id, bob.id)
    assert await count(db, FollowRequest) == 0


async def test_block__hides_earlier_notifications(db: AsyncSession) -> None:
    # Given bob followed alice (a notification she has)
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await graph.follow(db, bob.id, alice.id)
    assert len(await notifications.list_notifications(db, viewer(alice))) == 1
    # When alice blocks him, then his notifications are no longer listed
    await graph.block(db, alice.id, bob.id)
    assert await notifications.list_notifications(db, viewer(alice)) == []


# --- mutes --------------------------------------------------------------------------------


async def test_mute__for_a_while__then_posts_come_back(db: AsyncSession) -> None:
    # Given bob follows alice and mutes her for an hour
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await graph.follow(db, bob.id, alice.id)
    p = await post(db, alice, "Chatty")
    await graph.mute(db, bob.id, alice.id, duration=3600)
    # Then her posts leave his Home, though he still follows her
    assert p.id not in await home_ids(db, bob)
    rel = await graph.relationship(db, bob.id, alice.id)
    assert rel.muting and rel.following
    # When the hour is over
    await db.execute(update(Mute).values(expires_at=utcnow() - timedelta(seconds=1)))
    await db.commit()
    # Then her posts are back, and the relationship says so
    assert p.id in await home_ids(db, bob)
    assert not (await graph.relationship(db, bob.id, alice.id)).muting
    # And the clean-up job forgets the expired mute
    await cleanup(db, {})
    await db.commit()
    assert await count(db, Mute) == 0


@pytest.mark.parametrize("duration", [0, -1, 365 * 24 * 3600 + 1])
async def test_mute__with_a_bad_duration__is_refused(db: AsyncSession, duration: int) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    with pytest.raises(ValidationFailed) as err:
        await graph.mute(db, bob.id, alice.id, duration=duration)
    assert err.value.field == "duration"
    assert await count(db, Mute) == 0


async def test_mute__notifications_toggle(db: AsyncSession) -> None:
    # Given bob mutes alice but keeps her notifications
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await graph.mute(db, bob.id, alice.id, notifications_too=False)
    assert not (await graph.relationship(db, bob.id, alice.id)).muting_notifications
    # When she mentions him, then he is notified
    await post(db, alice, "Hey @bob")
    assert await note_types(db, bob.id) == ["mention"]
    assert len(await notifications.list_notifications(db, viewer(bob))) == 1
    # When he mutes her notifications too (muting again updates the mute)
    await graph.mute(db, bob.id, alice.id, notifications_too=True)
    assert (await graph.relationship(db, bob.id, alice.id)).muting_notifications
    assert await count(db, Mute) == 1
    # Then the earlier one is hidden, and a new mention isn't delivered
    assert await notifications.list_notifications(db, viewer(bob)) == []
    await post(db, alice, "Hey again @bob")
    assert await note_types(db, bob.id) == ["mention"]
    # And after unmuting, the earlier notification shows again
    await graph.unmute(db, bob.id, alice.id)
    assert len(await notifications.list_notifications(db, viewer(bob))) == 1


async def test_mute__post_still_opens_by_link(db: AsyncSession) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    p = await post(db, alice, "Muted but reachable")
    await graph.mute(db, bob.id, alice.id)
    assert (await posts.get_visible_post(db, viewer(bob), p.id)).id == p.id


async def test_remove_follower__hides_notifications_about_posts_they_no_longer_see(
    db: AsyncSession,
) -> None:
    # Given alice replied to bob's post for her followers only, while bob followed her
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await graph.follow(db, bob.id, alice.id)
    bobs = await post(db, bob, "What do you think?")
    await post(db, alice, "Followers-only answer", visibility=Visibility.PRIVATE, reply_to=bobs)
    user = await accounts.user_for_account(db, bob.id)
    assert user is not None
    assert await notifications.unread_count(db, user) == 1
    # When alice removes bob from her followers
    await graph.remove_follower(db, alice.id, bob.id)
    # Then the reply's notification is neither listed nor counted as unread
    assert await notifications.list_notifications(db, viewer(bob)) == []
    assert await notifications.unread_count(db, user) == 0
