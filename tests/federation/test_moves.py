"""Account migration (Move). In: a remote account that moved takes its local followers along
only when the new account, fetched from its own server, lists the old one in `alsoKnownAs`.
Out: a local person names aliases, or moves to a new account, from the settings page."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.config import Settings
from kith.federation import keys
from kith.graph.models import Follow, FollowRequest
from kith.notifications.models import Notification
from kith.runtime import Runtime
from tests.federation.helpers import as2, fetch
from tests.federation.inbound import count, deliver, local, loopback
from tests.federation.local_http import local_server
from tests.federation.peer import Peer
from tests.federation.remote_inbox import (
    RemoteInbox,
    learn_keys,
    remote_inbox,
    remote_person,
    run_jobs,
)
from tests.world import browser, person, running_app

pytestmark = pytest.mark.usefixtures("rt")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return loopback(settings)


@pytest.fixture
async def peer() -> AsyncIterator[tuple[Peer, RemoteInbox]]:
    """A peer serving old `alice`, her new account `alice2` and `mallory`, with an inbox that
    records what we send it."""
    async with local_server("127.0.0.1") as server:
        p = Peer(server)
        p.add_actor("alice", key=0)
        p.add_actor("mallory", key=1)
        inbox = RemoteInbox(server)
        for path in ("/inbox", "/users/alice/inbox", "/users/alice2/inbox"):
            server.routes[path] = inbox.route
        yield p, inbox


async def followed_alice(settings: Settings, rt: Runtime, peer: Peer, db: AsyncSession) -> Account:
    """Local bo follows remote alice; returns bo."""
    bo = await person(db, "bo")
    await deliver(settings, rt, peer, peer.activity("alice", "Like", f"{local('bo')}/statuses/1"))
    alice = await db.scalar(select(Account).where(Account.uri == peer.actor_uri("alice")))
    assert alice is not None
    db.add(Follow(follower_id=bo.id, followee_id=alice.id))
    await db.commit()
    return bo


async def follows(db: AsyncSession, follower: Account, uri: str) -> str:
    target = await db.scalar(
        select(Account).where(Account.uri == uri).execution_options(populate_existing=True)
    )
    if target is None:
        return "unknown"
    if await count(db, Follow, Follow.follower_id == follower.id, Follow.followee_id == target.id):
        return "following"
    if await count(
        db,
        FollowRequest,
        FollowRequest.follower_id == follower.id,
        FollowRequest.followee_id == target.id,
    ):
        return "requested"
    return "no"


async def test_move__to_an_account_that_lists_the_old_one__moves_local_followers(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: tuple[Peer, RemoteInbox]
) -> None:
    p, inbox = peer
    bo = await followed_alice(settings, rt, p, db)
    # Given alice's new account lists her old one
    p.add_actor("alice2", key=2, alsoKnownAs=[p.actor_uri("alice")])
    # When alice announces her move
    move = p.activity("alice", "Move", p.actor_uri("alice"), target=p.actor_uri("alice2"))
    outcome = await deliver(settings, rt, p, move)
    # Then bo follows (asks to follow) alice2 and no longer alice, and is told
    assert outcome == "moved 1 follower(s)"
    assert await follows(db, bo, p.actor_uri("alice2")) == "requested"
    assert await follows(db, bo, p.actor_uri("alice")) == "no"
    assert await count(
        db, Notification, Notification.account_id == bo.id, Notification.type == "move"
    )
    # And the Follow (to alice2) and the Undo (to alice) went out
    await run_jobs(rt)
    sent = {
        (a["type"], a["object"] if a["type"] == "Follow" else a["object"]["object"])
        for a in inbox.activities()
    }
    assert ("Follow", p.actor_uri("alice2")) in sent
    assert ("Undo", p.actor_uri("alice")) in sent
    # And a repeated delivery changes nothing more
    again = await deliver(settings, rt, p, {**move, "id": move["id"] + "-again"})
    assert again == "moved 0 follower(s)"


async def test_attack__move_to_an_account_that_does_not_list_the_old_one__is_refused(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: tuple[Peer, RemoteInbox]
) -> None:
    p, _ = peer
    bo = await followed_alice(settings, rt, p, db)
    # Given mallory's account does not list alice (though the Move embeds a copy that does)
    move = p.activity(
        "alice",
        "Move",
        p.actor_uri("alice"),
        target={"id": p.actor_uri("mallory"), "alsoKnownAs": [p.actor_uri("alice")]},
    )
    # When alice "moves" to mallory
    outcome = await deliver(settings, rt, p, move)
    # Then nothing happens to bo
    assert outcome.startswith("refused") and "alsoKnownAs" in outcome
    assert await follows(db, bo, p.actor_uri("alice")) == "following"
    assert await follows(db, bo, p.actor_uri("mallory")) == "no"
    assert not await count(db, Notification, Notification.type == "move")


async def test_attack__moving_someone_else__is_refused(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: tuple[Peer, RemoteInbox]
) -> None:
    p, _ = peer
    bo = await followed_alice(settings, rt, p, db)
    p.add_actor("mallory2", key=3, alsoKnownAs=[p.actor_uri("alice")])
    # When mallory sends a Move of alice
    move = p.activity("mallory", "Move", p.actor_uri("alice"), target=p.actor_uri("mallory2"))
    outcome = await deliver(settings, rt, p, move)
    # Then it is refused
    assert outcome == "refused: an actor can only move itself"
    assert await follows(db, bo, p.actor_uri("alice")) == "following"


# --- local people moving ---------------------------------------------------------------------


async def test_local_move__from_the_settings_page__moves_followers_and_sends_move(
    db: AsyncSession, settings: Settings, rt: Runtime
) -> None:
    async with remote_inbox() as inbox:
        # Given ana, followed by local bo and remote rem, and her new account zed
        ana = await person(db, "ana")
        zed = await person(db, "zed")
        bo = await person(db, "bo")
        rem = await remote_person(db, inbox, "rem")
        db.add_all(
            [
                Follow(follower_id=bo.id, followee_id=ana.id),
                Follow(follower_id=rem.id, followee_id=ana.id),
            ]
        )
        await db.commit()
        async with browser(settings) as b:
            # When zed lists ana as an alias
            await b.sign_in("zed")
            r = await b.post("/settings/migration/aliases", {"aliases": "@ana"})
            assert r.status_code == 303, r.text
        async with browser(settings) as b:
            await b.sign_in("ana")
            # And ana tries to move with a wrong password, then to bo (who doesn't list her)
            wrong = await b.post("/settings/migration/move", {"target": "@zed", "password": "nope"})
            unlisted = await b.post(
                "/settings/migration/move", {"target": "@bo", "password": "correct horse battery"}
            )
            assert wrong.status_code == 422 and unlisted.status_code == 422
            assert "alias" in unlisted.text
            # And then moves to zed
            moved = await b.post(
                "/settings/migration/move", {"target": "@zed", "password": "correct horse battery"}
            )
            assert moved.status_code == 303, moved.text
        # Then bo follows zed, no longer ana, and is told
        assert await count(db, Follow, Follow.follower_id == bo.id, Follow.followee_id == zed.id)
        assert not await count(
            db, Follow, Follow.follower_id == bo.id, Follow.followee_id == ana.id
        )
        assert await count(
            db, Notification, Notification.account_id == bo.id, Notification.type == "move"
        )
        # And rem's server gets a Move naming zed, signed by ana
        await keys.local_key(db, ana)
        await learn_keys(db, inbox)
        await run_jobs(rt)
        (move,) = inbox.activities("Move")
        assert move["object"] == local("ana") and move["target"] == local("zed")
        assert all(d.verified for d in inbox.received)
        # And the actor documents say so
        async with running_app(settings) as client:
            ana_doc = as2(await fetch(client, "/users/ana"))
            zed_doc = as2(await fetch(client, "/users/zed"))
        assert ana_doc["movedTo"] == local("zed")
        assert zed_doc["alsoKnownAs"] == [local("ana")]
