"""Posts sent to a community's Group (FEP-1b12): checked like local posts (member? banned?
waiting for approval?), stored in the community, and re-announced by the Group to its remote
members — an Announce of the Create (Lemmy) and of the post (Mastodon). Local posts into a
community are announced the same way; a private community's reach only its members' servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.communities import moderation
from kith.communities import service as communities
from kith.communities.models import Community, CommunityPost, MembershipModel
from kith.communities.service import CommunityInput
from kith.config import Settings
from kith.federation import keys
from kith.federation.delivery import DELIVER_JOB
from kith.federation.models import InboxItem, OutboundActivity
from kith.graph import service as graph
from kith.jobs.models import Job
from kith.posts.models import Post
from kith.runtime import Runtime
from tests.federation.helpers import BASE, PUBLIC
from tests.federation.inbound import count, deliver, loopback, two_actor_peer
from tests.federation.peer import Peer
from tests.federation.remote_inbox import learn_keys, remote_inbox, remote_person, run_jobs
from tests.world import person, post, running_app

pytestmark = pytest.mark.usefixtures("rt")

GROUP = f"{BASE}/c/gardeners"
FOLLOWERS = f"{GROUP}/followers"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return loopback(settings)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with two_actor_peer() as p:
        yield p


async def found(
    db: AsyncSession, membership: MembershipModel = MembershipModel.OPEN, **fields: Any
) -> tuple[Account, Community]:
    ann = await person(db, "ann")
    data = CommunityInput(name="Gardeners", membership=membership, **fields)
    return ann, await communities.create_community(db, ann.id, "gardeners", data)


async def announces(db: AsyncSession) -> list[OutboundActivity]:
    rows = await db.scalars(
        select(OutboundActivity)
        .order_by(OutboundActivity.id)
        .execution_options(populate_existing=True)
    )
    return [r for r in rows.all() if r.document.get("type") == "Announce"]


async def alice_joins(settings: Settings, rt: Runtime, peer: Peer, db: AsyncSession) -> Account:
    assert await deliver(settings, rt, peer, peer.activity("alice", "Follow", GROUP)) == "joined"
    account = await db.scalar(select(Account).where(Account.uri == peer.actor_uri("alice")))
    assert account is not None
    return account


def note_to_group(peer: Peer, name: str = "alice", text: str = "Roses!") -> dict[str, Any]:
    note = peer.note(name, text)
    note["cc"] = [GROUP]
    return note


async def test_create__by_a_remote_member_is_stored_in_the_community_and_announced(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given alice (on another server) joined an open community
    _, community = await found(db)
    await alice_joins(settings, rt, peer, db)
    # When her server delivers a post addressed to the Group
    note = note_to_group(peer)
    create = peer.activity("alice", "Create", note, to=[PUBLIC], cc=[GROUP])
    assert await deliver(settings, rt, peer, create) == "stored in a community"
    # Then it is a thread of the community
    stored = await db.scalar(select(Post).where(Post.uri == note["id"]))
    assert stored is not None
    row = await db.get(CommunityPost, (community.id, stored.id))
    assert row is not None and row.is_thread and row.state == "approved"
    # and the Group announces it to its remote members: the Create as received (with the
    # community as its audience), and the post itself
    lemmy, mastodon = await announces(db)
    for sent in (lemmy, mastodon):
        assert sent.community_id == community.id and sent.actor_account_id is None
        assert sent.document["actor"] == GROUP and sent.document["audience"] == GROUP
        assert sent.document["to"] == [PUBLIC] and sent.document["cc"] == [FOLLOWERS]
    inner = lemmy.document["object"]
    assert inner["id"] == create["id"] and inner["type"] == "Create"
    assert inner["audience"] == GROUP and inner["object"]["id"] == note["id"]
    assert mastodon.document["object"] == note["id"]
    # (delivered to her server's shared inbox, as the deliver step ran the jobs)
    posted = [r.target for r in peer.server.requests if r.method == "POST"]
    assert posted.count("/inbox") == 2


async def test_reply__by_a_member_joins_the_thread_and_a_locked_thread_refuses_it(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given ann's thread in the community, and alice a member on another server
    ann, community = await found(db)
    thread = await post(db, ann, "Which roses?", community_ids=[community.id])
    await alice_joins(settings, rt, peer, db)
    thread_id = f"{BASE}/users/ann/statuses/{thread.id}"
    # When alice replies, naming the Group
    reply = note_to_group(peer, text="Climbers!")
    reply["inReplyTo"] = thread_id
    outcome = await deliver(settings, rt, peer, peer.activity("alice", "Create", reply))
    # Then the reply joins the thread in the community, and is announced
    assert outcome == "stored in a community"
    stored = await db.scalar(select(Post).where(Post.uri == reply["id"]))
    assert stored is not None and stored.in_reply_to_id == thread.id
    row = await db.get(CommunityPost, (community.id, stored.id))
    assert row is not None and not row.is_thread
    assert any(a.document["object"] == reply["id"] for a in await announces(db))
    # When a moderator locks the thread, a further reply is refused
    await moderation.lock_thread(db, ann.id, community, thread.id)
    late = note_to_group(peer, text="Too late")
    late["inReplyTo"] = thread_id
    outcome = await deliver(settings, rt, peer, peer.activity("alice", "Create", late))
    assert outcome.startswith("refused") and "locked" in outcome
    assert await count(db, Post, Post.uri == late["id"]) == 0


async def test_create__by_a_banned_member_is_refused_and_nothing_is_stored(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    ann, community = await found(db)
    alice = await alice_joins(settings, rt, peer, db)
    await moderation.ban(db, ann.id, community, alice.id, reason="spam")
    note = note_to_group(peer)
    outcome = await deliver(settings, rt, peer, peer.activity("alice", "Create", note))
    assert outcome.startswith("refused") and "banned" in outcome
    assert await count(db, Post, Post.uri == note["id"]) == 0
    # (the Group announced the ban itself, and nothing else)
    assert [a.document["object"]["type"] for a in await announces(db)] == ["Block"]


async def test_create__by_a_non_member_of_an_approval_community_is_refused(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given alice has only asked to join
    await found(db, MembershipModel.APPROVAL)
    follow = peer.activity("alice", "Follow", GROUP)
    assert (await deliver(settings, rt, peer, follow)).startswith("requested")
    # When her server sends a post to the Group
    note = note_to_group(peer)
    outcome = await deliver(settings, rt, peer, peer.activity("alice", "Create", note))
    # Then it is refused (only members post), and nothing is kept or announced
    assert outcome.startswith("refused") and "Only members" in outcome
    assert await count(db, Post, Post.uri == note["id"]) == 0
    assert await count(db, CommunityPost) == 0 and await announces(db) == []


async def test_create__a_direct_message_to_the_group_is_refused(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    await found(db)
    await alice_joins(settings, rt, peer, db)
    note = note_to_group(peer)
    note["to"], note["cc"] = [GROUP], []
    outcome = await deliver(settings, rt, peer, peer.activity("alice", "Create", note))
    assert outcome.startswith("refused") and "public or unlisted" in outcome
    assert await count(db, Post, Post.uri == note["id"]) == 0


async def test_create__into_a_community_with_post_approval_waits_then_is_announced(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    ann, community = await found(db, post_approval=True)
    await alice_joins(settings, rt, peer, db)
    note = note_to_group(peer)
    outcome = await deliver(settings, rt, peer, peer.activity("alice", "Create", note))
    assert outcome == "stored: waiting for a moderator"
    assert await announces(db) == []
    stored = await db.scalar(select(Post).where(Post.uri == note["id"]))
    assert stored is not None and stored.community_gate == "moderators"
    # When a moderator approves it, the Group announces it
    await moderation.approve_post(db, ann.id, community, stored.id)
    sent = await announces(db)
    assert len(sent) == 2 and sent[1].document["object"] == note["id"]


async def test_local_post__into_a_community_is_announced_with_its_audience(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    ann, community = await found(db)
    await alice_joins(settings, rt, peer, db)
    mine = await post(db, ann, "Tulips", community_ids=[community.id])
    lemmy, mastodon = await announces(db)
    create = lemmy.document["object"]
    note_id = f"{BASE}/users/ann/statuses/{mine.id}"
    assert create["type"] == "Create" and create["actor"] == f"{BASE}/users/ann"
    assert create["audience"] == GROUP and create["object"]["audience"] == GROUP
    assert create["object"]["id"] == note_id and mastodon.document["object"] == note_id
    # a post in no community is not announced by any Group
    await post(db, ann, "Just me")
    assert len(await announces(db)) == 2


async def test_private_community__posts_reach_members_servers_only_and_say_so(
    db: AsyncSession, settings: Settings
) -> None:
    # Given a private community with a remote member on one server, and the author's remote
    # follower, not a member, on another
    async with remote_inbox("127.0.0.2") as member_server, remote_inbox("127.0.0.3") as other:
        ann, community = await found(db, MembershipModel.PRIVATE)
        bea = await remote_person(db, member_server, "bea")
        cal = await remote_person(db, other, "cal")
        invite, code = await communities.create_invite(db, ann.id, community)
        await communities.join(db, bea.id, community, invite_code=code)
        await graph.follow(db, cal.id, ann.id)
        # When ann posts in the community
        mine = await post(db, ann, "Members only", community_ids=[community.id])
        # Then only the member's server is sent anything, addressed to the members alone
        jobs = await db.scalars(select(Job.payload).where(Job.kind == DELIVER_JOB))
        assert {p["inbox"] for p in jobs.all()} == {member_server.shared_inbox}
        lemmy, mastodon = await announces(db)
        for sent in (lemmy, mastodon):
            assert sent.document["to"] == [FOLLOWERS] and sent.document["cc"] == []
        assert lemmy.document["object"]["object"]["to"] == [FOLLOWERS]
        # and the Group's deliveries carry its own signature, which the member's server checks
        await keys.community_key(db, community)
        await learn_keys(db, member_server)
        await run_jobs(rt=_runtime(db))
        group_deliveries = [d for d in member_server.received if d.activity["type"] == "Announce"]
        assert len(group_deliveries) == 2
        assert all(d.verified and d.key_id == f"{GROUP}#main-key" for d in group_deliveries)
        assert other.received == []
        assert mine.community_gate == "members"


def _runtime(db: AsyncSession) -> Runtime:
    from kith.runtime import runtime_of

    return runtime_of(db)


async def test_private_community__the_authors_create_to_a_member_is_for_members_only(
    db: AsyncSession, settings: Settings
) -> None:
    # Given a remote member of a private community who also follows the author
    async with remote_inbox("127.0.0.2") as member_server:
        ann, community = await found(db, MembershipModel.PRIVATE)
        bea = await remote_person(db, member_server, "bea")
        _, code = await communities.create_invite(db, ann.id, community)
        await communities.join(db, bea.id, community, invite_code=code)
        await graph.follow(db, bea.id, ann.id)
        # When ann posts in the community
        mine = await post(db, ann, "Members only", community_ids=[community.id])
    # Then her own Create (to her followers' servers) addresses the Group's followers alone
    (create,) = [
        r.document
        for r in await db.scalars(select(OutboundActivity))
        if r.document.get("type") == "Create"
    ]
    assert create["object"]["id"] == f"{BASE}/users/ann/statuses/{mine.id}"
    assert create["to"] == [FOLLOWERS] and create["cc"] == []
    assert create["object"]["to"] == [FOLLOWERS] and create["object"]["audience"] == GROUP


async def test_forged_announce__claiming_one_of_our_groups_is_refused_at_the_inbox(
    db: AsyncSession, settings: Settings, peer: Peer
) -> None:
    # Given a community here, and a server that pretends to be its Group
    await found(db)
    forged = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{GROUP}/announces/1",
        "type": "Announce",
        "actor": GROUP,
        "object": peer.note("alice", "Buy cheap pills"),
    }
    headers, body = peer.sign(forged, signer="alice")
    async with running_app(settings) as client:
        r = await client.post("/inbox", content=body, headers=headers)
    # Then it is refused before anything is stored
    assert 400 <= r.status_code < 500
    assert await count(db, InboxItem) == 0 and await count(db, Post) == 0


async def test_forged_announce__of_a_group_on_another_host_is_refused_by_the_origin_rule(
    db: AsyncSession, settings: Settings, rt: Runtime, peer: Peer
) -> None:
    # Given mallory's server claims an Announce whose id lives on another server
    await found(db)
    await alice_joins(settings, rt, peer, db)
    forged = peer.activity("mallory", "Announce", note_to_group(peer))
    forged["id"] = "https://lemmy.example/activities/announce/1"
    outcome = await deliver(settings, rt, peer, forged)
    assert outcome.startswith("refused")
    assert await count(db, Post) == 0


async def test_local_post__in_a_community_without_remote_members_sends_nothing(
    db: AsyncSession,
) -> None:
    ann, community = await found(db)
    bo = await person(db, "bo")
    await communities.join(db, bo.id, community)
    await post(db, bo, "Only locals here", community_ids=[community.id])
    assert await count(db, OutboundActivity) == 0
