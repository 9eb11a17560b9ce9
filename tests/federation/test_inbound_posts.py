"""Remote posts arrive through the real inbox (signed by the scripted peer) and the inbox job:
stored only when they concern someone here, always sanitized, audience from to/cc, and every
attempt to take over, edit or delete someone else's post refused with nothing changed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.config import Settings
from kith.db import utcnow
from kith.federation.models import ActorKey, RemoteActor, Tombstone
from kith.graph.models import Follow
from kith.media.models import MediaAttachment
from kith.notifications.models import Notification
from kith.posts.models import Like, Mention, Post, PostEdit, Visibility
from kith.runtime import Runtime
from tests.federation.inbound import (
    PUBLIC,
    addressed,
    count,
    deliver,
    followers,
    local,
    loopback,
    two_actor_peer,
)
from tests.federation.local_http import json_document, respond
from tests.federation.peer import Peer
from tests.world import person, running_app
from tests.world import post as local_post

pytestmark = pytest.mark.usefixtures("rt")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return loopback(settings)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with two_actor_peer() as p:
        yield p


async def remote(db: AsyncSession, peer: Peer, name: str) -> Account:
    account = await db.scalar(
        select(Account)
        .where(Account.uri == peer.actor_uri(name))
        .execution_options(populate_existing=True)
    )
    assert account is not None
    return account


async def stored(db: AsyncSession, uri: str) -> Post | None:
    return await db.scalar(
        select(Post).where(Post.uri == uri).execution_options(populate_existing=True)
    )


async def bo_follows_alice(
    settings: Settings, rt: Runtime, peer: Peer, db: AsyncSession
) -> Account:
    """Local bo follows remote alice (alice becomes known by delivering something harmless)."""
    bo = await person(db, "bo")
    await deliver(settings, rt, peer, peer.activity("alice", "Like", f"{local('bo')}/statuses/1"))
    db.add(Follow(follower_id=bo.id, followee_id=(await remote(db, peer, "alice")).id))
    await db.commit()
    return bo


async def test_create__from_a_followed_account__is_stored_sanitized(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given bo follows alice
    bo = await bo_follows_alice(settings, rt, peer, db)
    # When alice posts publicly, with a script, a content warning, a hashtag and an image
    note = peer.note("alice", 'Hi <script>alert(1)</script><a href="javascript:x">x</a>')
    note.update(
        summary="spoilers",
        tag=[{"type": "Hashtag", "name": "#Gardening"}],
        attachment=[
            {
                "type": "Document",
                "mediaType": "image/png",
                "url": f"{peer.base}/media/1.png",
                "name": "a tomato",
            }
        ],
    )
    outcome = await deliver(settings, rt, peer, peer.activity("alice", "Create", note))
    # Then it is stored as hers, sanitized, with its warning, tag and attachment
    assert outcome == "stored"
    post = await stored(db, note["id"])
    assert post is not None and post.account_id == (await remote(db, peer, "alice")).id
    assert "script" not in post.content_html and "javascript" not in post.content_html
    assert post.spoiler_text == "spoilers" and post.sensitive
    assert post.visibility == Visibility.PUBLIC
    media = await db.scalar(select(MediaAttachment).where(MediaAttachment.post_id == post.id))
    assert media is not None and media.remote_url == f"{peer.base}/media/1.png"
    assert media.description == "a tomato" and media.file_path is None
    # And bo can see it
    assert await policy.can_see_post(db, policy.Viewer(bo.id), post)


@pytest.mark.parametrize(
    ("to", "cc", "expected"),
    [
        ([PUBLIC], [], Visibility.PUBLIC),
        (["as:Public"], [], Visibility.PUBLIC),
        (["Public"], [], Visibility.PUBLIC),
        (["FOLLOWERS"], [PUBLIC], Visibility.UNLISTED),
        (["FOLLOWERS"], [], Visibility.PRIVATE),
        ([local("bo")], [], Visibility.DIRECT),
    ],
)
async def test_create__audience_from_to_and_cc(
    db: AsyncSession,
    settings: Settings,
    rt: Runtime,
    peer: Peer,
    to: list[str],
    cc: list[str],
    expected: Visibility,
) -> None:
    await bo_follows_alice(settings, rt, peer, db)
    swap = {"FOLLOWERS": followers(peer, "alice")}
    note = addressed(peer.note("alice"), [swap.get(t, t) for t in to], [swap.get(c, c) for c in cc])
    assert await deliver(settings, rt, peer, peer.activity("alice", "Create", note)) == "stored"
    post = await stored(db, note["id"])
    assert post is not None and post.visibility == expected


async def test_followers_only_post__seen_only_by_local_followers(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    bo = await bo_follows_alice(settings, rt, peer, db)
    cy = await person(db, "cy")
    note = addressed(peer.note("alice", "for my followers"), [followers(peer, "alice")])
    await deliver(settings, rt, peer, peer.activity("alice", "Create", note))
    post = await stored(db, note["id"])
    assert post is not None
    assert await policy.can_see_post(db, policy.Viewer(bo.id), post)
    assert not await policy.can_see_post(db, policy.Viewer(cy.id), post)
    assert not await policy.can_see_post(db, policy.ANONYMOUS, post)


async def test_direct_mention__notifies_and_only_the_mentioned_see_it(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given bo and cy here, nobody following alice
    bo = await person(db, "bo")
    cy = await person(db, "cy")
    # When alice sends bo a direct message
    note = addressed(peer.note("alice", "psst @bo"), [local("bo")])
    note["tag"] = [{"type": "Mention", "href": local("bo"), "name": "@bo@kith.test"}]
    assert await deliver(settings, rt, peer, peer.activity("alice", "Create", note)) == "stored"
    # Then bo has it and a mention notification; cy sees nothing
    post = await stored(db, note["id"])
    assert post is not None and post.visibility == Visibility.DIRECT
    assert await count(db, Mention, Mention.post_id == post.id, Mention.account_id == bo.id) == 1
    assert await count(db, Notification, Notification.account_id == bo.id) == 1
    assert await policy.can_see_post(db, policy.Viewer(bo.id), post)
    assert not await policy.can_see_post(db, policy.Viewer(cy.id), post)


async def test_create__addressed_to_nobody_here_from_nobody_followed__dropped(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    await person(db, "bo")
    note = peer.note("alice", "buy cheap watches")
    outcome = await deliver(settings, rt, peer, peer.activity("alice", "Create", note))
    assert outcome.startswith("ignored: addressed to nobody here")
    assert await count(db, Post) == 0


async def test_duplicate_create__one_post(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    await bo_follows_alice(settings, rt, peer, db)
    note = peer.note("alice")
    await deliver(settings, rt, peer, peer.activity("alice", "Create", note))
    # The same note again, in a new activity, with its audience changed
    again = addressed(dict(note), [local("bo")])
    outcome = await deliver(settings, rt, peer, peer.activity("alice", "Create", again))
    assert outcome == "ignored: already stored"
    assert await count(db, Post) == 1
    post = await stored(db, note["id"])
    assert post is not None and post.visibility == Visibility.PUBLIC


async def test_attack__create_reusing_another_actors_post_uri(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given alice's post is stored
    bo = await bo_follows_alice(settings, rt, peer, db)
    note = peer.note("alice", "original")
    await deliver(settings, rt, peer, peer.activity("alice", "Create", note))
    # When mallory (same server) creates a note with the same id, attributed to herself
    forged = {**note, "attributedTo": peer.actor_uri("mallory"), "content": "forged"}
    forged = addressed(forged, [local("bo")])
    outcome = await deliver(settings, rt, peer, peer.activity("mallory", "Create", forged))
    # Then it is refused and alice's post is unchanged
    assert outcome.startswith("refused:")
    post = await stored(db, note["id"])
    assert post is not None and "original" in post.content_html
    assert post.account_id == (await remote(db, peer, "alice")).id
    assert await count(db, Mention, Mention.account_id == bo.id) == 0


async def test_attack__create_with_an_id_on_another_host(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    await bo_follows_alice(settings, rt, peer, db)
    note = peer.note("alice")
    note["id"] = "https://victim.example/users/bob/statuses/1"
    outcome = await deliver(settings, rt, peer, peer.activity("alice", "Create", note))
    assert outcome.startswith("refused:") and await count(db, Post) == 0


async def test_update__edits_with_history_and_keeps_the_audience(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    await bo_follows_alice(settings, rt, peer, db)
    note = addressed(peer.note("alice", "first"), [followers(peer, "alice")])
    await deliver(settings, rt, peer, peer.activity("alice", "Create", note))
    # When alice edits it, trying to make it public at the same time
    edited = addressed({**note, "content": "<p>second</p>"}, [PUBLIC])
    outcome = await deliver(settings, rt, peer, peer.activity("alice", "Update", edited))
    assert outcome == "updated"
    post = await stored(db, note["id"])
    assert post is not None and "second" in post.content_html and post.edited_at is not None
    assert post.visibility == Visibility.PRIVATE
    assert await count(db, PostEdit, PostEdit.post_id == post.id) == 2
    # And the same Update again changes nothing more
    await deliver(settings, rt, peer, peer.activity("alice", "Update", edited))
    assert await count(db, PostEdit, PostEdit.post_id == post.id) == 2


async def test_attack__update_of_another_actors_post(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    await bo_follows_alice(settings, rt, peer, db)
    note = peer.note("alice", "mine")
    await deliver(settings, rt, peer, peer.activity("alice", "Create", note))
    forged = {**note, "attributedTo": peer.actor_uri("mallory"), "content": "pwned"}
    outcome = await deliver(settings, rt, peer, peer.activity("mallory", "Update", forged))
    assert outcome.startswith("refused:")
    post = await stored(db, note["id"])
    assert post is not None and "mine" in post.content_html and post.edited_at is None


async def test_attack__delete_of_another_actors_post(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    await bo_follows_alice(settings, rt, peer, db)
    note = peer.note("alice", "mine")
    await deliver(settings, rt, peer, peer.activity("alice", "Create", note))
    outcome = await deliver(settings, rt, peer, peer.activity("mallory", "Delete", note["id"]))
    assert outcome.startswith("refused:")
    assert await stored(db, note["id"]) is not None


async def test_delete__removes_the_post(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    await bo_follows_alice(settings, rt, peer, db)
    note = peer.note("alice")
    await deliver(settings, rt, peer, peer.activity("alice", "Create", note))
    tombstone = {"id": note["id"], "type": "Tombstone"}
    outcome = await deliver(settings, rt, peer, peer.activity("alice", "Delete", tombstone))
    assert outcome == "deleted" and await count(db, Post) == 0


async def test_delete_before_create__late_create_is_ignored(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    await bo_follows_alice(settings, rt, peer, db)
    note = peer.note("alice")
    outcome = await deliver(settings, rt, peer, peer.activity("alice", "Delete", note["id"]))
    assert outcome == "tombstoned (not stored)"
    assert await count(db, Tombstone, Tombstone.uri == note["id"]) == 1
    late = await deliver(settings, rt, peer, peer.activity("alice", "Create", note))
    assert late.startswith("ignored: deleted") and await count(db, Post) == 0


async def test_reply__missing_parents_are_fetched_bounded(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given a thread of 8 notes on the peer, none stored here
    await bo_follows_alice(settings, rt, peer, db)
    chain = []
    parent = None
    for i in range(8):
        note = peer.note("alice", f"part {i}")
        if parent:
            note["inReplyTo"] = parent["id"]
        peer.server.routes[note["id"].removeprefix(peer.base)] = json_document(note)
        chain.append(note)
        parent = note
    # When the last one arrives
    await deliver(settings, rt, peer, peer.activity("alice", "Create", chain[-1]))
    # Then it and its 5 nearest ancestors are stored, linked
    last = await stored(db, chain[-1]["id"])
    assert last is not None and last.in_reply_to_id is not None
    assert await count(db, Post) == 6
    assert await stored(db, chain[1]["id"]) is None
    nearest = await stored(db, chain[-2]["id"])
    assert nearest is not None and last.in_reply_to_id == nearest.id


async def test_reply_to_a_local_post__stored_and_notifies(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    bo = await person(db, "bo")
    mine = await local_post(db, bo, "hello world")
    note = peer.note("alice", "hi bo")
    note["inReplyTo"] = f"{local('bo')}/statuses/{mine.id}"
    assert await deliver(settings, rt, peer, peer.activity("alice", "Create", note)) == "stored"
    reply = await stored(db, note["id"])
    assert reply is not None and reply.in_reply_to_id == mine.id
    await db.refresh(mine)
    assert mine.replies_count == 1
    assert await count(db, Notification, Notification.account_id == bo.id) == 1


async def test_like_and_undo__on_a_local_post(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    bo = await person(db, "bo")
    mine = await local_post(db, bo, "likeable")
    like = peer.activity("alice", "Like", f"{local('bo')}/statuses/{mine.id}")
    assert await deliver(settings, rt, peer, like) == "liked"
    assert await deliver(settings, rt, peer, {**like, "id": like["id"] + "b"}) == (
        "ignored: already liked"
    )
    assert await count(db, Like) == 1
    assert await count(db, Notification, Notification.account_id == bo.id) == 1
    undo = peer.activity("alice", "Undo", like["id"])
    assert await deliver(settings, rt, peer, undo) == "unliked"
    assert await count(db, Like) == 0
    assert await count(db, Notification, Notification.account_id == bo.id) == 0


async def test_announce_and_undo__of_a_local_post(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    bo = await person(db, "bo")
    mine = await local_post(db, bo, "boost me")
    announce = peer.activity("alice", "Announce", f"{local('bo')}/statuses/{mine.id}")
    announce["to"] = [PUBLIC]
    assert await deliver(settings, rt, peer, announce) == "boosted"
    boost = await stored(db, announce["id"])
    assert boost is not None and boost.reblog_of_id == mine.id
    assert await count(db, Notification, Notification.account_id == bo.id) == 1
    undo = peer.activity("alice", "Undo", {**announce, "@context": None})
    assert await deliver(settings, rt, peer, undo) == "unboosted"
    assert await stored(db, announce["id"]) is None


async def test_attack__announce_of_a_followers_only_post(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given bo's followers-only post, and alice (not a follower) who knows its URI
    bo = await person(db, "bo")
    mine = await local_post(db, bo, "friends only", visibility=Visibility.PRIVATE)
    announce = peer.activity("alice", "Announce", f"{local('bo')}/statuses/{mine.id}")
    announce["to"] = [PUBLIC]
    outcome = await deliver(settings, rt, peer, announce)
    assert outcome.startswith("refused:")
    assert await count(db, Post, Post.reblog_of_id.is_not(None)) == 0


async def test_attack__announce_of_a_remote_followers_only_post_is_not_fetched_into_view(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    await bo_follows_alice(settings, rt, peer, db)
    secret = addressed(peer.note("mallory", "secret"), [followers(peer, "mallory")])
    peer.server.routes[secret["id"].removeprefix(peer.base)] = json_document(secret)
    announce = addressed(peer.activity("alice", "Announce", secret["id"]), [PUBLIC])
    outcome = await deliver(settings, rt, peer, announce)
    assert outcome.startswith("refused:") and await count(db, Post) == 0


async def test_delete_person__removes_posts_and_follows(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    bo = await bo_follows_alice(settings, rt, peer, db)
    mine = await local_post(db, bo, "likeable")
    await deliver(settings, rt, peer, peer.activity("alice", "Create", peer.note("alice")))
    await deliver(
        settings, rt, peer, peer.activity("alice", "Like", f"{local('bo')}/statuses/{mine.id}")
    )
    outcome = await deliver(
        settings, rt, peer, peer.activity("alice", "Delete", peer.actor_uri("alice"))
    )
    assert outcome.startswith("actor deleted")
    alice = await remote(db, peer, "alice")
    assert await count(db, Post, Post.account_id == alice.id) == 0
    assert await count(db, Follow) == 0 and await count(db, Like) == 0
    await db.refresh(mine)
    assert mine.likes_count == 0
    # And her husk is marked deleted (hidden everywhere), her endpoints and key forgotten
    assert alice.deleted_at is not None and alice.suspended_at is not None
    assert not await policy.can_see_account(db, policy.Viewer(bo.id, True), alice)
    assert await count(db, RemoteActor, RemoteActor.account_id == alice.id) == 0
    # And whatever she sends afterwards changes nothing
    late = peer.activity("alice", "Like", f"{local('bo')}/statuses/{mine.id}")
    assert (await deliver(settings, rt, peer, late)).startswith("ignored")
    assert await count(db, Like) == 0


async def test_delete_person__whose_key_we_lost_and_whose_actor_is_gone__still_forgets_it(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given bo follows alice, but her key is not stored here any more, and her server now
    # answers 410 Gone for her actor (she was deleted there)
    await bo_follows_alice(settings, rt, peer, db)
    alice = await remote(db, peer, "alice")
    await db.execute(delete(ActorKey).where(ActorKey.account_id == alice.id))
    await db.commit()
    peer.server.routes["/users/alice"] = respond(410)
    # When her Delete arrives, signed with the key we can no longer fetch
    delete_person = peer.activity("alice", "Delete", peer.actor_uri("alice"))
    outcome = await deliver(settings, rt, peer, delete_person)
    # Then it is taken (202, so her server stops retrying), nothing is stored, and she is
    # forgotten here all the same
    assert outcome == ""
    alice = await remote(db, peer, "alice")
    assert alice.deleted_at is not None and await count(db, Follow) == 0
    # But a 410 for another actor's key says nothing about the sender
    peer.server.routes["/users/mallory"] = respond(410)
    forged = peer.activity("alice", "Delete", peer.actor_uri("alice"))
    async with running_app(settings) as client:
        headers, body = peer.sign(forged, signer="mallory")
        r = await client.post("/inbox", content=body, headers=headers)
    assert r.status_code == 401


async def test_update_person__suspended_by_its_server__hidden_until_lifted(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given bo follows alice and has her post; mallory was suspended here by a moderator
    bo = await bo_follows_alice(settings, rt, peer, db)
    await deliver(settings, rt, peer, peer.activity("alice", "Create", peer.note("alice")))
    await deliver(settings, rt, peer, peer.activity("mallory", "Like", f"{local('bo')}/x"))
    mallory = await remote(db, peer, "mallory")
    mallory.suspended_at = utcnow()
    await db.commit()
    (note,) = (await db.scalars(select(Post))).all()

    async def bo_sees_it() -> bool:
        fresh = await db.get(Post, note.id, populate_existing=True)
        return fresh is not None and await policy.can_see_post(db, policy.Viewer(bo.id), fresh)

    assert await bo_sees_it()
    # When alice's server says she is suspended (Update of her actor, as Mastodon sends it)
    doc = peer.add_actor("alice", key=0, suspended=True)
    outcome = await deliver(settings, rt, peer, peer.activity("alice", "Update", doc))
    # Then she and her post are hidden here, and bo still follows her (it can be lifted)
    assert outcome == "profile updated"
    assert (await remote(db, peer, "alice")).suspended_at is not None
    assert not await bo_sees_it()
    assert await count(db, Follow) == 1
    # When her server lifts the suspension
    doc = peer.add_actor("alice", key=0)
    await deliver(settings, rt, peer, peer.activity("alice", "Update", doc))
    # Then she is back, and bo sees her post again
    assert (await remote(db, peer, "alice")).suspended_at is None
    assert await bo_sees_it()
    # And a profile update from mallory does not lift the moderator's suspension
    doc = peer.add_actor("mallory", key=1)
    await deliver(settings, rt, peer, peer.activity("mallory", "Update", doc))
    assert (await remote(db, peer, "mallory")).suspended_at is not None


async def test_live__a_remote_post_and_a_remote_like_are_published_once_committed(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    """Work done in an inbox job is published after the worker's commit (runtime.after_commit):
    live timelines and streaming get the remote post, and bo's stream the like's notification."""
    bo = await bo_follows_alice(settings, rt, peer, db)
    mine = await local_post(db, bo, "tomatoes!")
    events: list[tuple[str, dict[str, object]]] = []
    ready = asyncio.Event()

    async def listen() -> None:
        async for ev in rt.bus.subscribe("posts", f"user:{bo.id}", ready=ready):
            events.append((str(ev.get("type")), ev))

    listener = asyncio.create_task(listen())
    await ready.wait()
    try:
        note = peer.note("alice", "Fresh from the garden")
        assert await deliver(settings, rt, peer, peer.activity("alice", "Create", note)) == "stored"
        like = peer.activity("alice", "Like", f"{local('bo')}/statuses/{mine.id}")
        await deliver(settings, rt, peer, like)
        await asyncio.sleep(0.05)
    finally:
        listener.cancel()
    theirs = await stored(db, note["id"])
    assert theirs is not None
    created = [ev for kind, ev in events if kind == "post.created"]
    assert [ev["post_id"] for ev in created] == [theirs.id]  # once, and only once committed
    assert [kind for kind, _ in events if kind == "notification"] == ["notification"]
