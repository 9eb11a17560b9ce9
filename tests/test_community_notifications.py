"""Micro-communities tell people through their notifications: moderators hear of join requests
(local or through federation) and of posts waiting for approval; a person hears what a
moderator did to their request, to them or to their post; mentions inside a community keep
to its gate. Policy (blocks, mutes, never oneself) applies; the web page links the community;
the Mastodon API shows these only to a client that asks for them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.communities import moderation
from kith.communities import service as communities
from kith.communities.models import Community, MembershipModel, Role
from kith.config import Settings
from kith.graph import service as graph
from kith.mastodon_api.streaming import StreamSession
from kith.notifications.models import Notification
from kith.runtime import Runtime
from tests.mastodon_api.conftest import bearer, token_for
from tests.test_community_posts import found, member, write
from tests.world import browser, person, running_app, viewer


async def told(db: AsyncSession, who: Account) -> list[tuple[str, str, int | None]]:
    """(type, actor's username, community id) of who's notifications, oldest first."""
    rows = await db.execute(
        select(Notification.type, Account.username, Notification.community_id)
        .join(Account, Account.id == Notification.from_account_id)
        .where(Notification.account_id == who.id)
        .order_by(Notification.id)
        .execution_options(populate_existing=True)
    )
    return [(t, u, c) for t, u, c in rows.all()]


async def with_moderator(
    db: AsyncSession, owner: Account, mod: Account, handle: str, model: MembershipModel
) -> Community:
    c = await found(db, owner, handle, model)
    await member(db, c, mod, owner)
    await moderation.set_role(db, owner.id, c, mod.id, Role.MODERATOR)
    return c


# --- join requests ---------------------------------------------------------------------------


async def test_join_request__owner_and_moderators_hear_of_it_members_and_others_do_not(
    db: AsyncSession,
) -> None:
    # Given a community that needs approval, with an owner, a moderator and a member, and a
    # second community moderated by someone else
    ann, mo, mem, bob, other = [await person(db, n) for n in ("ann", "mo", "mem", "bob", "oz")]
    c = await with_moderator(db, ann, mo, "knitters", MembershipModel.APPROVAL)
    await member(db, c, mem, ann)
    await found(db, other, "bakers", MembershipModel.APPROVAL)
    # When bob asks to join
    await communities.join(db, bob.id, c)
    # Then its owner and moderator are told, with the community; the member and the other
    # community's owner are not
    assert await told(db, ann) == [("community.join_request", "bob", c.id)]
    assert await told(db, mo) == [("community.join_request", "bob", c.id)]
    assert await told(db, mem) == []
    assert await told(db, other) == []
    # And asking again (still pending) does not tell them twice
    await communities.join(db, bob.id, c)
    assert len(await told(db, ann)) == 1


async def test_join__open_and_invited_joins_tell_nobody(db: AsyncSession) -> None:
    ann, bob, cy = await person(db, "ann"), await person(db, "bob"), await person(db, "cy")
    open_c = await found(db, ann, "open_one")
    private = await found(db, ann, "hidden", MembershipModel.PRIVATE)
    await communities.join(db, bob.id, open_c)
    await member(db, private, cy, ann)  # an invite code: approval given in advance
    assert await told(db, ann) == []


async def test_join_request__a_remote_persons_follow_tells_the_moderators(
    db: AsyncSession,
) -> None:
    # Given a private community and a remote person (as the Group's inbox handler joins them)
    ann = await person(db, "ann")
    c = await found(db, ann, "hidden", MembershipModel.PRIVATE, join_question="Why?")
    far = Account(
        username="alice",
        username_key="alice",
        domain="remote.test",
        uri="https://remote.test/users/alice",
    )
    db.add(far)
    await db.commit()
    # When her Follow arrives (it cannot carry an answer)
    await communities.join(db, far.id, c, from_follow=True)
    # Then the owner is told
    assert await told(db, ann) == [("community.join_request", "alice", c.id)]
    # And when the owner lets her in, nobody is notified here (she reads her own server)
    await moderation.approve(db, ann.id, c, far.id)
    assert await told(db, far) == []


async def test_join_request__blocked_and_muted_requesters_do_not_notify(db: AsyncSession) -> None:
    ann, mo = await person(db, "ann"), await person(db, "mo")
    bob, cy = await person(db, "bob"), await person(db, "cy")
    c = await with_moderator(db, ann, mo, "knitters", MembershipModel.APPROVAL)
    # Given ann blocks bob, and mo mutes cy with notifications hidden
    await graph.block(db, ann.id, bob.id)
    await graph.mute(db, mo.id, cy.id, notifications_too=True)
    # When both ask to join
    await communities.join(db, bob.id, c)
    await communities.join(db, cy.id, c)
    # Then ann hears only of cy, mo only of bob
    assert await told(db, ann) == [("community.join_request", "cy", c.id)]
    assert await told(db, mo) == [("community.join_request", "bob", c.id)]


async def test_request_decisions__the_person_hears_approval_and_rejection(
    db: AsyncSession,
) -> None:
    ann, mo, bob, cy = [await person(db, n) for n in ("ann", "mo", "bob", "cy")]
    c = await with_moderator(db, ann, mo, "knitters", MembershipModel.APPROVAL)
    await communities.join(db, bob.id, c)
    await communities.join(db, cy.id, c)
    await moderation.approve(db, mo.id, c, bob.id)
    await moderation.reject(db, mo.id, c, cy.id, reason="not yet")
    assert await told(db, bob) == [("community.request_approved", "mo", c.id)]
    assert await told(db, cy) == [("community.request_rejected", "mo", c.id)]


async def test_ban__the_banned_person_hears_of_it_unless_they_block_the_moderator(
    db: AsyncSession,
) -> None:
    ann, mo, bob, cy = [await person(db, n) for n in ("ann", "mo", "bob", "cy")]
    c = await with_moderator(db, ann, mo, "knitters", MembershipModel.OPEN)
    for who in (bob, cy):
        await communities.join(db, who.id, c)
    await graph.block(db, cy.id, mo.id)
    await moderation.ban(db, mo.id, c, bob.id, reason="spam")
    await moderation.ban(db, mo.id, c, cy.id, reason="spam")
    assert await told(db, bob) == [("community.banned", "mo", c.id)]
    assert await told(db, cy) == []


# --- posts -----------------------------------------------------------------------------------


async def test_waiting_post__moderators_hear_of_it_but_not_of_their_own(db: AsyncSession) -> None:
    ann, mo, bob = await person(db, "ann"), await person(db, "mo"), await person(db, "bob")
    c = await with_moderator(db, ann, mo, "knitters", MembershipModel.OPEN)
    c.post_approval = True
    await db.commit()
    await communities.join(db, bob.id, c)
    # When a member starts a thread, it waits; a moderator's own thread does not
    waiting = await write(db, bob, "My first scarf", c)
    await write(db, mo, "Welcome, everyone", c)
    # Then the owner and the moderator are told of bob's, with the post; the author is not
    for mod in (ann, mo):
        assert await told(db, mod) == [("community.post_pending", "bob", c.id)]
        assert (
            await db.scalar(select(Notification.post_id).where(Notification.account_id == mod.id))
            == waiting.id
        )
    assert await told(db, bob) == []


async def test_post_moderation__the_author_hears_each_decision(db: AsyncSession) -> None:
    ann, mo, bob = await person(db, "ann"), await person(db, "mo"), await person(db, "bob")
    c = await with_moderator(db, ann, mo, "knitters", MembershipModel.OPEN)
    await communities.join(db, bob.id, c)
    c.post_approval = True
    await db.commit()
    queued = await write(db, bob, "Pattern swap?", c)
    turned_down = await write(db, bob, "Buy my yarn", c)
    await moderation.approve_post(db, mo.id, c, queued.id)
    await moderation.reject_post(db, mo.id, c, turned_down.id, reason="ads")
    await moderation.remove_post(db, ann.id, c, queued.id, reason="off topic")
    await moderation.restore_post(db, ann.id, c, queued.id)
    assert [t for t, _, _ in await told(db, bob)] == [
        "community.post_approved",
        "community.post_rejected",
        "community.post_removed",
        "community.post_restored",
    ]
    # Pins and locks tell nobody; a moderator removing their own post is not told of it
    await moderation.pin_thread(db, mo.id, c, queued.id)
    own = await write(db, mo, "Oops", c)
    await moderation.remove_post(db, mo.id, c, own.id)
    assert len(await told(db, bob)) == 4
    assert not [t for t, _, _ in await told(db, mo) if t.startswith("community.post_removed")]


async def test_mention_in_a_private_community__a_non_member_is_not_notified(
    db: AsyncSession,
) -> None:
    ann, mem, out = await person(db, "ann"), await person(db, "mem"), await person(db, "out")
    c = await found(db, ann, "hidden", MembershipModel.PRIVATE)
    await member(db, c, mem, ann)
    await write(db, ann, "Hello @mem and @out", c)
    assert [t for t, _, _ in await told(db, mem)] == ["mention"]
    assert await told(db, out) == []


# --- surfaces --------------------------------------------------------------------------------


async def test_web_page__links_the_community_and_its_requests(
    db: AsyncSession, settings: Settings
) -> None:
    ann, bob = await person(db, "ann"), await person(db, "bob")
    c = await found(db, ann, "knitters", MembershipModel.APPROVAL)
    await communities.join(db, bob.id, c)
    async with browser(settings) as b:
        await b.sign_in("ann")
        page = (await b.get("/notifications?type=communities")).text
    assert 'asked to join <a href="/c/knitters">!knitters</a>' in page
    assert 'href="/c/knitters/requests"' in page


async def test_api__community_notifications_only_when_asked_for_by_name(
    db: AsyncSession, settings: Settings
) -> None:
    ann, bob, cy = await person(db, "ann"), await person(db, "bob"), await person(db, "cy")
    c = await found(db, ann, "knitters", MembershipModel.APPROVAL)
    await graph.follow(db, cy.id, ann.id)
    await communities.join(db, bob.id, c)
    headers = bearer(await token_for(db, ann))
    async with running_app(settings) as api:
        # A Mastodon client that asks for everything gets only Mastodon's types
        plain = (await api.get("/api/v1/notifications", headers=headers)).json()
        excluded = await api.get(
            "/api/v1/notifications", params={"exclude_types[]": "mention"}, headers=headers
        )
        grouped = (await api.get("/api/v2/notifications", headers=headers)).json()
        unread = (await api.get("/api/v1/notifications/unread_count", headers=headers)).json()
        unread_asked = await api.get(
            "/api/v1/notifications/unread_count",
            params={"types[]": "community.join_request"},
            headers=headers,
        )
        # A client that names the type gets it, with the community
        asked: httpx.Response = await api.get(
            "/api/v1/notifications",
            params={"types[]": "community.join_request"},
            headers=headers,
        )
    assert [n["type"] for n in plain] == ["follow"]
    assert unread == {"count": 1} and unread_asked.json() == {"count": 1}
    assert [n["type"] for n in excluded.json()] == ["follow"]
    assert [g["type"] for g in grouped["notification_groups"]] == ["follow"]
    (item,) = asked.json()
    assert item["type"] == "community.join_request"
    assert item["account"]["username"] == "bob"
    assert item["community"]["handle"] == "knitters"
    assert item["community"]["url"].endswith("/c/knitters")


async def test_withdrawn_request__its_notifications_go(db: AsyncSession) -> None:
    ann, bob = await person(db, "ann"), await person(db, "bob")
    c = await found(db, ann, "knitters", MembershipModel.APPROVAL)
    other = await found(db, ann, "bakers", MembershipModel.APPROVAL)
    await communities.join(db, bob.id, c)
    await communities.join(db, bob.id, other)
    # When bob takes back one of his two requests
    await communities.leave(db, bob.id, c)
    # Then only that one's notification goes
    assert await told(db, ann) == [("community.join_request", "bob", other.id)]


async def test_streaming__each_notification_is_published_after_commit(
    db: AsyncSession, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    ann, mo, bob = await person(db, "ann"), await person(db, "mo"), await person(db, "bob")
    c = await with_moderator(db, ann, mo, "knitters", MembershipModel.APPROVAL)
    sent: list[tuple[str, str]] = []

    async def record(channel: str, event: dict[str, Any]) -> None:
        sent.append((channel, event["type"]))

    monkeypatch.setattr(rt.bus, "publish", record)
    await communities.join(db, bob.id, c)
    await moderation.approve(db, mo.id, c, bob.id)
    await moderation.ban(db, mo.id, c, bob.id, reason="spam")
    assert sent == [
        (f"user:{ann.id}", "notification"),
        (f"user:{mo.id}", "notification"),
        (f"user:{bob.id}", "notification"),
        (f"user:{bob.id}", "notification"),
    ]


async def test_api_stream__community_notifications_are_not_streamed(
    db: AsyncSession, rt: Runtime
) -> None:
    # Given ann's user stream, and a follow and a join request for her
    ann, bob = await person(db, "ann"), await person(db, "bob")
    c = await found(db, ann, "knitters", MembershipModel.APPROVAL)
    await graph.follow(db, bob.id, ann.id)
    await communities.join(db, bob.id, c)
    session = StreamSession(rt, viewer(ann))
    session.subscribe("user", None)
    rows = await db.execute(
        select(Notification.id, Notification.type).where(Notification.account_id == ann.id)
    )
    # When each notification's event reaches the stream
    sent = {
        kind: await session.outgoing({"type": "notification", "id": nid})
        for nid, kind in rows.all()
    }
    # Then the follow is sent and the community one is not (no client asked for it)
    assert len(sent["follow"]) == 1
    assert sent["community.join_request"] == []


async def test_web_page__links_the_queue_for_moderators_and_the_log_for_authors(
    db: AsyncSession, settings: Settings
) -> None:
    ann, bob = await person(db, "ann"), await person(db, "bob")
    c = await found(db, ann, "bakers", MembershipModel.OPEN, post_approval=True)
    await communities.join(db, bob.id, c)
    waiting = await write(db, bob, "Rye or spelt?", c)
    await moderation.remove_post(db, ann.id, c, waiting.id, reason="Asked weekly")
    async with browser(settings) as b:
        await b.sign_in("ann")
        moderator_page = (await b.get("/notifications")).text
    async with browser(settings) as b:
        await b.sign_in("bob")
        author_page = (await b.get("/notifications?type=communities")).text
    assert 'href="/c/bakers/queue"' in moderator_page
    assert 'removed your post from <a href="/c/bakers">!bakers</a>' in author_page
    assert 'href="/c/bakers/log"' in author_page and "Rye or spelt?" in author_page
