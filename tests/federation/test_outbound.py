"""What local actions send, and to whom: each post reaches exactly its audience's servers
(a followers-only post never an inbox without a follower, a direct post only the mentioned
people's), interactions reach the one person concerned, and a purely local audience costs
no job. Deliveries go through the real job and a real HTTP server that verifies signatures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts import profile
from kith.accounts.models import Account, User
from kith.config import Settings
from kith.federation import keys, outbound
from kith.federation.models import OutboundActivity
from kith.graph import service as graph
from kith.graph.models import Follow
from kith.jobs.models import Job
from kith.moderation import service as moderation
from kith.posts import service as posts
from kith.posts.models import Mention, Post, Visibility
from kith.runtime import Runtime
from tests.federation.helpers import PUBLIC
from tests.federation.remote_inbox import (
    RemoteInbox,
    learn_keys,
    remote_inbox,
    remote_person,
    run_jobs,
)
from tests.world import person, post, viewer


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"federation_allow_private": True})


@dataclass
class World:
    ana: Account  # local author
    lu: Account  # local follower
    fan: Account  # remote follower on `follower_server`
    stranger: Account  # remote, follows nobody, on `other_server`
    follower_server: RemoteInbox
    other_server: RemoteInbox

    @property
    def servers(self) -> tuple[RemoteInbox, RemoteInbox]:
        return self.follower_server, self.other_server


def by_type(server: RemoteInbox, *kinds: str) -> list[dict[str, Any]]:
    """The activities a server received, one per type, in the order of `kinds` (deliveries
    are separate jobs: their order of arrival is not promised)."""
    found = {a["type"]: a for a in server.activities()}
    assert sorted(found) == sorted(kinds) and len(server.received) == len(kinds)
    return [found[k] for k in kinds]


@pytest.fixture
async def world(db: AsyncSession) -> AsyncIterator[World]:
    async with remote_inbox("127.0.0.1") as a, remote_inbox("127.0.0.2") as b:
        ana, lu = await person(db, "ana"), await person(db, "lu")
        fan = await remote_person(db, a, "fan")
        stranger = await remote_person(db, b, "stranger")
        db.add_all([Follow(follower_id=fan.id, followee_id=ana.id)])
        db.add_all([Follow(follower_id=lu.id, followee_id=ana.id)])
        await db.commit()
        await keys.local_key(db, ana)
        await keys.local_key(db, lu)
        await learn_keys(db, a, b)
        yield World(ana, lu, fan, stranger, a, b)


async def outbound_rows(db: AsyncSession) -> int:
    return int(await db.scalar(select(func.count()).select_from(OutboundActivity)) or 0)


async def mention(db: AsyncSession, p: Post, *accounts: Account) -> None:
    """Mention remote accounts in a post (the composer links local mentions only today)."""
    db.add_all(Mention(post_id=p.id, account_id=a.id) for a in accounts)
    await db.flush()


# --- posts and their audiences ------------------------------------------------------------


async def test_public_post__create_goes_to_followers_servers_only(
    db: AsyncSession, rt: Runtime, world: World
) -> None:
    # When ana posts publicly
    p = await post(db, world.ana, "Hello fediverse #kith")
    await run_jobs(rt)
    # Then her remote follower's server gets one verified Create of the Note, addressed as
    # Mastodon addresses a public post; the stranger's server gets nothing
    (create,) = world.follower_server.activities()
    assert create["type"] == "Create" and create["object"]["type"] == "Note"
    assert create["object"]["id"] == f"http://kith.test/users/ana/statuses/{p.id}"
    assert create["to"] == [PUBLIC]
    assert create["cc"] == ["http://kith.test/users/ana/followers"]
    assert all(d.verified for d in world.follower_server.received)
    assert world.other_server.received == []


async def test_followers_only_post__never_reaches_a_server_without_a_follower(
    db: AsyncSession, rt: Runtime, world: World
) -> None:
    p = await post(db, world.ana, "Just for you all", visibility=Visibility.PRIVATE)
    await run_jobs(rt)
    (create,) = world.follower_server.activities()
    assert create["to"] == ["http://kith.test/users/ana/followers"]
    assert PUBLIC not in create["to"] + create["cc"]
    assert world.other_server.received == []
    assert create["object"]["id"].endswith(f"/statuses/{p.id}")


async def test_followers_only_post__mentioned_remote_person_gets_it_too(
    db: AsyncSession, rt: Runtime, world: World
) -> None:
    p = await post(db, world.ana, "Hi", visibility=Visibility.PRIVATE)
    await run_jobs(rt)
    await mention(db, p, world.stranger)
    await outbound.post_edited(db, p)
    await db.commit()
    await run_jobs(rt)
    (update,) = world.other_server.activities()
    assert update["type"] == "Update"
    assert world.stranger.uri in update["object"]["cc"]


async def test_direct_post__only_the_mentioned_peoples_inboxes(
    db: AsyncSession, rt: Runtime, world: World
) -> None:
    # Given a direct post that mentions the stranger (not the follower)
    p = await post(db, world.ana, "psst", visibility=Visibility.DIRECT)
    assert await outbound_rows(db) == 0  # nobody remote mentioned: nothing queued
    await mention(db, p, world.stranger)
    # When its Create is sent
    await outbound.post_created(db, p)
    await db.commit()
    await run_jobs(rt)
    # Then only the stranger's server has it, addressed to the stranger alone
    assert world.follower_server.received == []
    (create,) = world.other_server.activities()
    assert create["to"] == [world.stranger.uri] and create["cc"] == []


async def test_local_only_audience__no_job_at_all(db: AsyncSession, world: World) -> None:
    # lu has only local followers (ana follows lu here)
    db.add(Follow(follower_id=world.ana.id, followee_id=world.lu.id))
    await db.commit()
    await post(db, world.lu, "Local news")
    await post(db, world.lu, "Quiet", visibility=Visibility.PRIVATE)
    assert await outbound_rows(db) == 0
    assert await db.scalar(select(func.count()).select_from(Job)) == 0


async def test_reply_to_a_remote_post__reaches_its_author(
    db: AsyncSession, rt: Runtime, world: World
) -> None:
    # Given a public remote post by the stranger
    theirs = Post(
        account_id=world.stranger.id,
        content_html="<p>hi</p>",
        uri=f"{world.other_server.base}/users/stranger/statuses/1",
    )
    db.add(theirs)
    await db.commit()
    # When ana replies publicly (without mentioning)
    await post(db, world.ana, "Nice", reply_to=theirs)
    await run_jobs(rt)
    (create,) = world.other_server.activities()
    assert create["object"]["inReplyTo"] == theirs.uri
    # A followers-only reply would not be theirs to see
    await post(db, world.ana, "Between us", visibility=Visibility.PRIVATE, reply_to=theirs)
    await run_jobs(rt)
    assert len(world.other_server.activities()) == 1


async def test_blocked_remote_follower__gets_nothing(
    db: AsyncSession, rt: Runtime, world: World
) -> None:
    p = await post(db, world.ana, "before")
    await run_jobs(rt)
    # a block both removes the follow and tells the follower's server
    await graph.block(db, world.ana.id, world.fan.id)
    await run_jobs(rt)
    by_type(world.follower_server, "Create", "Block")
    # re-adding a follow row by hand: the policy still refuses (block)
    db.add(Follow(follower_id=world.fan.id, followee_id=world.ana.id))
    await db.commit()
    assert await outbound.post_inboxes(db, p) == set()


async def test_edit_and_delete__update_then_tombstone_to_the_same_audience(
    db: AsyncSession, rt: Runtime, world: World
) -> None:
    p = await post(db, world.ana, "first")
    await posts.edit_post(db, viewer(world.ana), p.id, posts.PostInput(source="second"))
    await posts.delete_post(db, viewer(world.ana), p.id)
    await run_jobs(rt)
    create, update, delete = by_type(world.follower_server, "Create", "Update", "Delete")
    assert "second" in update["object"]["content"]
    assert delete["object"] == {
        "id": create["object"]["id"],
        "type": "Tombstone",
        "formerType": "Note",
        "deleted": delete["object"]["deleted"],
    }
    assert delete["to"] == [PUBLIC]
    assert world.other_server.received == []


# --- boosts and likes ---------------------------------------------------------------------


async def test_boost_and_unboost_of_a_remote_post(
    db: AsyncSession, rt: Runtime, world: World
) -> None:
    theirs = Post(
        account_id=world.stranger.id,
        content_html="<p>news</p>",
        uri=f"{world.other_server.base}/users/stranger/statuses/7",
    )
    db.add(theirs)
    await db.commit()
    boost = await posts.boost(db, viewer(world.ana), theirs.id)
    await posts.unboost(db, viewer(world.ana), theirs.id)
    await run_jobs(rt)
    # ana's follower's server and the original author's server both get Announce and Undo
    for server in world.servers:
        announce, undo = by_type(server, "Announce", "Undo")
        assert announce["object"] == theirs.uri
        assert announce["id"] == f"http://kith.test/users/ana/statuses/{boost.id}/activity"
        assert undo["type"] == "Undo" and undo["object"]["id"] == announce["id"]


async def test_like_and_unlike_of_a_remote_post__to_its_author_only(
    db: AsyncSession, rt: Runtime, world: World
) -> None:
    theirs = Post(
        account_id=world.stranger.id,
        content_html="<p>x</p>",
        uri=f"{world.other_server.base}/users/stranger/statuses/9",
    )
    db.add(theirs)
    await db.commit()
    await posts.like(db, viewer(world.ana), theirs.id)
    await posts.unlike(db, viewer(world.ana), theirs.id)
    await run_jobs(rt)
    like, undo = by_type(world.other_server, "Like", "Undo")
    assert like["object"] == theirs.uri
    assert undo["type"] == "Undo" and undo["object"]["id"] == like["id"]
    assert world.other_server.received[0].path == "/users/stranger/inbox"
    assert world.follower_server.received == []


async def test_like_of_a_local_post__sends_nothing(db: AsyncSession, world: World) -> None:
    p = await post(db, world.lu, "local", visibility=Visibility.PRIVATE)
    db.add(Follow(follower_id=world.ana.id, followee_id=world.lu.id))
    await db.commit()
    await posts.like(db, viewer(world.ana), p.id)
    assert await outbound_rows(db) == 0


# --- follows, answers, blocks, profiles ---------------------------------------------------


async def test_follow_and_unfollow_a_remote_account(
    db: AsyncSession, rt: Runtime, world: World
) -> None:
    assert await graph.follow(db, world.ana.id, world.stranger.id) == "requested"
    await graph.unfollow(db, world.ana.id, world.stranger.id)
    await graph.unfollow(db, world.ana.id, world.stranger.id)  # nothing left to undo
    await run_jobs(rt)
    follow, undo = by_type(world.other_server, "Follow", "Undo")
    assert follow["object"] == world.stranger.uri
    assert undo["type"] == "Undo" and undo["object"]["id"] == follow["id"]
    assert undo["object"]["object"] == world.stranger.uri
    assert world.other_server.received[0].path == "/users/stranger/inbox"


async def test_send_accept_and_reject__embed_the_follow_as_received(
    db: AsyncSession, rt: Runtime, world: World
) -> None:
    follow = {
        "id": f"{world.stranger.uri}#follows/1",
        "type": "Follow",
        "actor": world.stranger.uri,
        "object": "http://kith.test/users/ana",
    }
    await outbound.send_accept(db, world.ana, follow)
    await outbound.send_reject(db, world.ana, follow)
    await db.commit()
    await run_jobs(rt)
    accept, reject = by_type(world.other_server, "Accept", "Reject")
    for answer in (accept, reject):
        assert answer["actor"] == "http://kith.test/users/ana"
        assert answer["object"]["id"] == follow["id"]
        assert answer["object"]["actor"] == world.stranger.uri
    assert all(d.verified for d in world.other_server.received)


async def test_unblock__undoes_the_block(db: AsyncSession, rt: Runtime, world: World) -> None:
    await graph.block(db, world.ana.id, world.stranger.id)
    await graph.unblock(db, world.ana.id, world.stranger.id)
    await run_jobs(rt)
    block, undo = by_type(world.other_server, "Block", "Undo")
    assert undo["object"]["id"] == block["id"]


async def test_profile_update__update_person_to_remote_followers(
    db: AsyncSession, rt: Runtime, world: World
) -> None:
    data = profile.ProfileInput(display_name="Ana B", bio="hello")
    await profile.update_profile(db, world.ana, data)
    await run_jobs(rt)
    (update,) = world.follower_server.activities()
    assert update["type"] == "Update" and update["object"]["type"] == "Person"
    assert update["object"]["name"] == "Ana B"
    assert update["object"]["publicKey"]["id"] == "http://kith.test/users/ana#main-key"
    assert world.other_server.received == []


async def test_suspension_and_its_end__update_person_to_remote_followers(
    db: AsyncSession, rt: Runtime, world: World
) -> None:
    # Given ana, followed by fan on a remote server
    # When an admin suspends her (twice: the second changes nothing), then lifts it
    await moderation.suspend(db, world.ana)
    await moderation.suspend(db, world.ana)
    await run_jobs(rt)
    # Then fan's server is told once, with the stub that says she is suspended, signed by her
    (suspended,) = world.follower_server.activities()
    assert suspended["type"] == "Update" and suspended["object"]["suspended"] is True
    assert suspended["object"]["id"] == suspended["actor"] == "http://kith.test/users/ana"
    assert all(d.verified for d in world.follower_server.received)
    await moderation.unsuspend(db, world.ana)
    await run_jobs(rt)
    # And told again when it is lifted, without the flag; the other server hears nothing
    _, lifted = world.follower_server.activities()
    assert lifted["type"] == "Update" and "suspended" not in lifted["object"]
    assert world.other_server.received == []


async def test_account_deleted__delete_person_to_followers_and_followed_servers(
    db: AsyncSession, rt: Runtime, world: World
) -> None:
    # Given ana, followed by fan (one server) and following stranger (another)
    db.add(Follow(follower_id=world.ana.id, followee_id=world.stranger.id))
    await db.commit()
    # When her account goes: Delete(Person) queued, then her login and follows removed before
    # any delivery runs (the account row and its key stay)
    await outbound.account_deleted(db, world.ana)
    await db.execute(delete(User).where(User.account_id == world.ana.id))
    await db.execute(delete(Follow).where(Follow.follower_id == world.ana.id))
    await db.execute(delete(Follow).where(Follow.followee_id == world.ana.id))
    await db.commit()
    await run_jobs(rt)
    # Then both servers get one Delete whose object is her actor, signed with her key
    for server in world.servers:
        (deleted,) = server.activities()
        assert deleted["type"] == "Delete"
        assert deleted["object"] == deleted["actor"] == "http://kith.test/users/ana"
        assert [d.key_id for d in server.received] == ["http://kith.test/users/ana#main-key"]
        assert all(d.verified for d in server.received)


# --- reports ------------------------------------------------------------------------------


async def test_report_forwarded__flag_from_the_instance_actor_to_their_server_only(
    db: AsyncSession, rt: Runtime, world: World
) -> None:
    # Given a public post by stranger, on the other server
    theirs = Post(
        account_id=world.stranger.id,
        content_html="<p>spam</p>",
        uri=f"{world.stranger.uri}/posts/1",
        visibility=Visibility.PUBLIC,
    )
    db.add(theirs)
    await db.commit()
    await keys.instance_key(db)  # the servers know the instance actor's key, as they'd fetch it
    await learn_keys(db, *world.servers)
    # When lu reports stranger and that post, and asks to forward it
    report = await moderation.file_report(
        db, viewer(world.lu), account_id=world.stranger.id, post_ids=[theirs.id],
        comment="spam again", forward=True,
    )  # fmt: skip
    await run_jobs(rt)
    # Then stranger's server gets one Flag, from the instance actor (lu is not named), naming
    # the account and the post, with the comment; the follower's server gets nothing
    assert report.forwarded is True
    (flag,) = world.other_server.activities()
    assert flag["type"] == "Flag" and flag["actor"] == "http://kith.test/actor"
    assert flag["object"] == [world.stranger.uri, theirs.uri]
    assert flag["content"] == "spam again" and "/users/lu" not in str(flag)
    assert all(d.verified for d in world.other_server.received)
    assert world.follower_server.received == []


async def test_report_not_forwarded__or_of_a_local_account__sends_nothing(
    db: AsyncSession, rt: Runtime, world: World
) -> None:
    kept = await moderation.file_report(db, viewer(world.lu), account_id=world.stranger.id,
                                        post_ids=[])  # fmt: skip
    local = await moderation.file_report(
        db, viewer(world.lu), account_id=world.ana.id, post_ids=[], forward=True
    )
    await run_jobs(rt)
    assert (kept.forwarded, local.forwarded) == (False, False)
    assert world.other_server.received == [] and await outbound_rows(db) == 0
