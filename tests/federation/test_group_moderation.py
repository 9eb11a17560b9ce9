"""Moderation federates (FEP-1b12): what a community's Group sends to its remote members'
servers when a moderator removes or restores a post, locks or pins a thread, bans or
unbans someone, or edits the card — in the shapes Lemmy and Mastodon read — and what it
passes on when a remote author deletes their post. A private community tells members'
servers alone, never Public. Forgeries: test_group_moderation_forgeries.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.communities import moderation
from kith.communities import service as communities
from kith.communities.models import (
    Community,
    CommunityBan,
    CommunityPost,
    MembershipModel,
    ModerationLogEntry,
)
from kith.communities.service import CommunityChanges, CommunityInput
from kith.config import Settings
from kith.federation import keys
from kith.posts.models import Post
from kith.runtime import Runtime
from tests.federation.helpers import BASE, PUBLIC, as2, fetch
from tests.federation.inbound import count, deliver, loopback, two_actor_peer
from tests.federation.remote_inbox import (
    RemoteInbox,
    learn_keys,
    remote_inbox,
    remote_person,
    run_jobs,
)
from tests.world import person, post, running_app

pytestmark = pytest.mark.usefixtures("rt")

GROUP = f"{BASE}/c/gardeners"
FOLLOWERS = f"{GROUP}/followers"
FEATURED = f"{GROUP}/featured"
ANN = f"{BASE}/users/ann"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return loopback(settings)


@dataclass
class World:
    """ann owns `gardeners`; bea, on the member server, is its remote member."""

    ann: Account
    community: Community
    bea: Account
    members: RemoteInbox


async def found(
    db: AsyncSession, membership: MembershipModel = MembershipModel.OPEN, **fields: Any
) -> tuple[Account, Community]:
    ann = await person(db, "ann")
    data = CommunityInput(name="Gardeners", membership=membership, **fields)
    return ann, await communities.create_community(db, ann.id, "gardeners", data)


async def join(db: AsyncSession, account: Account, community: Community) -> None:
    if community.membership == MembershipModel.OPEN:
        await communities.join(db, account.id, community)
        return
    _, code = await communities.create_invite(db, community.owner_id or 0, community)
    await communities.join(db, account.id, community, invite_code=code)


async def world_with(
    db: AsyncSession, members: RemoteInbox, membership: MembershipModel, **fields: Any
) -> World:
    ann, community = await found(db, membership, **fields)
    bea = await remote_person(db, members, "bea")
    await join(db, bea, community)
    await keys.community_key(db, community)
    await learn_keys(db, members)
    return World(ann, community, bea, members)


@pytest.fixture
async def world(db: AsyncSession) -> AsyncIterator[World]:
    async with remote_inbox("127.0.0.2") as members:
        yield await world_with(db, members, MembershipModel.OPEN)


async def last_entry(db: AsyncSession) -> ModerationLogEntry:
    entry = await db.scalar(select(ModerationLogEntry).order_by(ModerationLogEntry.id.desc()))
    assert entry is not None
    return entry


async def delivered(rt: Runtime, inbox: RemoteInbox, since: int = 0) -> list[dict[str, Any]]:
    """What the server received after its first `since` deliveries, each signed by the
    Group (checked with its key)."""
    await run_jobs(rt)
    got = inbox.received[since:]
    assert all(d.verified and d.key_id == f"{GROUP}#main-key" for d in got), got
    return [d.activity for d in got]


def by_type(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Deliveries keyed by type, or `Announce(Inner)` for an Announce of an activity."""
    out: dict[str, dict[str, Any]] = {}
    for doc in docs:
        inner = doc.get("object")
        kind = doc["type"]
        if kind in ("Announce", "Undo") and isinstance(inner, dict):
            kind = f"{kind}({inner['type']})"
        out[kind] = doc
    return out


def note_id(thread: Post) -> str:
    return f"{ANN}/statuses/{thread.id}"


# --- posts --------------------------------------------------------------------------------


async def test_remove_post__the_group_announces_the_moderators_delete_and_takes_back_its_boost(
    db: AsyncSession, rt: Runtime, world: World
) -> None:
    # Given a thread the Group announced to bea's server
    thread = await post(db, world.ann, "Buy my seeds", community_ids=[world.community.id])
    before = len(await delivered(rt, world.members))
    # When ann removes it with a reason
    await moderation.remove_post(db, world.ann.id, world.community, thread.id, reason="ads")
    entry = await last_entry(db)
    # Then the member server gets the Group's Announce of ann's Delete (Lemmy: a removal,
    # `summary` the reason), and the Group's Undo of its boost (Mastodon)
    got = by_type(await delivered(rt, world.members, before))
    assert set(got) == {"Announce(Delete)", "Undo(Announce)"}
    log_id = f"{GROUP}/log/{entry.id}"
    announce = got["Announce(Delete)"]
    assert "@context" in announce
    assert {k: v for k, v in announce.items() if k != "@context"} == {
        "id": f"{log_id}/announce",
        "type": "Announce",
        "actor": GROUP,
        "to": [PUBLIC],
        "cc": [FOLLOWERS],
        "audience": GROUP,
        "object": {
            "id": log_id,
            "type": "Delete",
            "actor": ANN,
            "object": note_id(thread),
            "to": [PUBLIC],
            "cc": [GROUP],
            "audience": GROUP,
            "summary": "ads",
        },
    }
    undo = got["Undo(Announce)"]
    assert {k: v for k, v in undo.items() if k != "@context"} == {
        "id": f"{log_id}/unannounce",
        "type": "Undo",
        "actor": GROUP,
        "to": [PUBLIC],
        "cc": [FOLLOWERS],
        "object": {
            "id": f"{GROUP}/announces/{thread.id}/object",
            "type": "Announce",
            "actor": GROUP,
            "object": note_id(thread),
        },
    }


async def test_restore_post__sends_the_undo_of_the_removal_and_announces_the_post_again(
    db: AsyncSession, rt: Runtime, world: World
) -> None:
    thread = await post(db, world.ann, "Seeds", community_ids=[world.community.id])
    await moderation.remove_post(db, world.ann.id, world.community, thread.id)
    before = len(await delivered(rt, world.members))
    # When ann restores it
    await moderation.restore_post(db, world.ann.id, world.community, thread.id)
    entry = await last_entry(db)
    got = await delivered(rt, world.members, before)
    # Then the Group announces ann's Undo of a Delete, then the post again (both shapes)
    undo = by_type(got)["Announce(Undo)"]
    log_id = f"{GROUP}/log/{entry.id}"
    assert undo["id"] == f"{log_id}/announce" and undo["to"] == [PUBLIC]
    assert undo["object"] == {
        "id": log_id,
        "type": "Undo",
        "actor": ANN,
        "object": {
            "id": f"{log_id}/undone",
            "type": "Delete",
            "actor": ANN,
            "object": note_id(thread),
            "to": [PUBLIC],
            "cc": [GROUP],
            "audience": GROUP,
            "summary": "",
        },
        "to": [PUBLIC],
        "cc": [GROUP],
        "audience": GROUP,
    }
    again = [d["object"] for d in got if d["type"] == "Announce" and d is not undo]
    assert again[-1] == note_id(thread) and again[0]["type"] == "Create"


async def test_remove_post__of_a_post_never_announced_sends_nothing(
    db: AsyncSession, rt: Runtime
) -> None:
    async with remote_inbox("127.0.0.2") as members:
        w = await world_with(db, members, MembershipModel.OPEN, post_approval=True)
        bo = await person(db, "bo")
        await communities.join(db, bo.id, w.community)
        waiting = await post(db, bo, "Mine", community_ids=[w.community.id])
        await moderation.remove_post(db, w.ann.id, w.community, waiting.id, reason="no")
        assert await delivered(rt, members) == []


async def test_lock_and_unlock__the_group_announces_lock_and_undo_lock(
    db: AsyncSession, rt: Runtime, world: World
) -> None:
    thread = await post(db, world.ann, "Roses", community_ids=[world.community.id])
    before = len(await delivered(rt, world.members))
    await moderation.lock_thread(db, world.ann.id, world.community, thread.id, reason="heated")
    lock_entry = await last_entry(db)
    await moderation.lock_thread(db, world.ann.id, world.community, thread.id, locked=False)
    unlock_entry = await last_entry(db)
    got = by_type(await delivered(rt, world.members, before))
    assert got["Announce(Lock)"]["object"] == {
        "id": f"{GROUP}/log/{lock_entry.id}",
        "type": "Lock",
        "actor": ANN,
        "object": note_id(thread),
        "to": [PUBLIC],
        "cc": [GROUP],
        "audience": GROUP,
        "summary": "heated",
    }
    undo = got["Announce(Undo)"]["object"]
    assert undo["id"] == f"{GROUP}/log/{unlock_entry.id}" and undo["actor"] == ANN
    assert undo["object"]["type"] == "Lock" and undo["object"]["object"] == note_id(thread)


async def test_pin_and_unpin__add_and_remove_in_featured_which_lists_the_pins(
    db: AsyncSession, settings: Settings, rt: Runtime, world: World
) -> None:
    thread = await post(db, world.ann, "Welcome", community_ids=[world.community.id])
    before = len(await delivered(rt, world.members))
    # When ann pins the thread
    await moderation.pin_thread(db, world.ann.id, world.community, thread.id)
    pin_entry = await last_entry(db)
    async with running_app(settings) as client:
        featured = as2(await fetch(client, "/c/gardeners/featured"))
    # Then the Group announces ann's Add to its featured collection, which lists it
    got = by_type(await delivered(rt, world.members, before))
    assert got["Announce(Add)"]["object"] == {
        "id": f"{GROUP}/log/{pin_entry.id}",
        "type": "Add",
        "actor": ANN,
        "object": note_id(thread),
        "target": FEATURED,
        "to": [PUBLIC],
        "cc": [GROUP],
        "audience": GROUP,
    }
    assert featured["orderedItems"] == [note_id(thread)]
    # When she unpins it: a Remove from featured, which no longer lists it
    before = len(world.members.received)
    await moderation.pin_thread(db, world.ann.id, world.community, thread.id, pinned=False)
    got = by_type(await delivered(rt, world.members, before))
    removed = got["Announce(Remove)"]["object"]
    assert removed["target"] == FEATURED and removed["object"] == note_id(thread)
    async with running_app(settings) as client:
        featured = as2(await fetch(client, "/c/gardeners/featured"))
    assert featured["orderedItems"] == [] and featured["totalItems"] == 0


# --- people -------------------------------------------------------------------------------


async def test_ban__is_announced_to_members_and_sent_to_the_banned_persons_server(
    db: AsyncSession, rt: Runtime, world: World
) -> None:
    # Given cal, on another server, is a member too
    async with remote_inbox("127.0.0.3") as cals_server:
        cal = await remote_person(db, cals_server, "cal")
        await join(db, cal, world.community)
        await learn_keys(db, cals_server)
        before = len(await delivered(rt, world.members))
        # When ann bans bea for a week with a reason
        await moderation.ban(
            db,
            world.ann.id,
            world.community,
            world.bea.id,
            duration=timedelta(days=7),
            reason="spam",
        )
        entry = await last_entry(db)
        ban = await db.get(CommunityBan, (world.community.id, world.bea.id))
        assert ban is not None and ban.until is not None
        # Then the members' servers get the Group's Announce of ann's Block of bea
        # (Lemmy's shape: `target` the Group, reason, end, data kept)
        (announce,) = await delivered(rt, cals_server)
        assert announce["id"] == f"{GROUP}/log/{entry.id}/announce"
        assert announce["actor"] == GROUP and announce["to"] == [PUBLIC]
        assert announce["object"] == {
            "id": f"{GROUP}/log/{entry.id}",
            "type": "Block",
            "actor": ANN,
            "object": world.bea.uri,
            "target": GROUP,
            "removeData": False,
            "summary": "spam",
            "expires": ban.until.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "to": [PUBLIC],
            "cc": [GROUP],
            "audience": GROUP,
        }
        # and bea's server gets it too (she is no longer a member), with the Group's Reject
        # of her Follow at her own inbox: she no longer follows the Group there
        got = world.members.received[before:]
        await run_jobs(rt)
        got = world.members.received[before:]
        kinds = sorted((d.path, d.activity["type"]) for d in got)
        assert kinds == [("/inbox", "Announce"), ("/users/bea/inbox", "Reject")]
        reject = next(d.activity for d in got if d.activity["type"] == "Reject")
        assert reject["actor"] == GROUP and reject["object"]["actor"] == world.bea.uri
        assert reject["object"]["object"] == GROUP
        # When ann lifts the ban: the Undo(Block), to both
        await moderation.unban(db, world.ann.id, world.community, world.bea.id)
        unban = await last_entry(db)
        for server, since in ((cals_server, 1), (world.members, before + 2)):
            (undo,) = await delivered(rt, server, since)
            assert undo["type"] == "Announce" and undo["object"]["type"] == "Undo"
            assert undo["object"]["id"] == f"{GROUP}/log/{unban.id}"
            assert undo["object"]["object"]["type"] == "Block"
            assert undo["object"]["object"]["object"] == world.bea.uri
            assert undo["object"]["object"]["target"] == GROUP


async def test_ban__of_a_local_person_for_good_is_announced_without_an_end(
    db: AsyncSession, rt: Runtime, world: World
) -> None:
    bo = await person(db, "bo")
    await communities.join(db, bo.id, world.community)
    before = len(await delivered(rt, world.members))
    await moderation.ban(db, world.ann.id, world.community, bo.id)
    (announce,) = await delivered(rt, world.members, before)
    block = announce["object"]
    assert block["type"] == "Block" and block["object"] == f"{BASE}/users/bo"
    assert "expires" not in block and block["summary"] == ""


# --- the card -----------------------------------------------------------------------------


async def test_card_edit__sends_the_groups_update_and_announces_the_moderators(
    db: AsyncSession, rt: Runtime, world: World
) -> None:
    before = len(await delivered(rt, world.members))
    # When ann renames the community and changes its description
    changes = CommunityChanges(name="Gardeners United", description="All things green")
    await communities.update_community(db, world.ann.id, world.community, changes)
    entry = await last_entry(db)
    got = await delivered(rt, world.members, before)
    # Then the Group updates itself (Mastodon refreshes the account from it) …
    own = next(d for d in got if d["type"] == "Update")
    assert own["id"] == f"{GROUP}/log/{entry.id}/group" and own["actor"] == GROUP
    assert own["to"] == [PUBLIC] and own["cc"] == [FOLLOWERS]
    group = own["object"]
    assert group["id"] == GROUP and group["type"] == "Group"
    assert group["name"] == "Gardeners United" and group["summary"] == "<p>All things green</p>"
    assert group["publicKey"]["id"] == f"{GROUP}#main-key" and "updated" in group
    # … and announces ann's Update of it (Lemmy)
    announce = next(d for d in got if d["type"] == "Announce")
    assert announce["object"]["type"] == "Update" and announce["object"]["actor"] == ANN
    assert announce["object"]["object"] == group
    # An edit the card does not show sends nothing
    before = len(world.members.received)
    await communities.update_community(
        db, world.ann.id, world.community, CommunityChanges(join_question="Why?")
    )
    assert await delivered(rt, world.members, before) == []


async def test_icon_change__in_a_community_whose_group_has_no_key_yet_sends_its_update(
    db: AsyncSession, rt: Runtime
) -> None:
    import io

    from PIL import Image

    from kith.communities import images
    from kith.federation.models import ActorKey

    # Given a remote member joined without the Group ever signing anything (no key made)
    async with remote_inbox("127.0.0.2") as members:
        ann, community = await found(db)
        bea = await remote_person(db, members, "bea")
        await join(db, bea, community)
        assert await count(db, ActorKey, ActorKey.community_id == community.id) == 0
        # When ann uploads an icon (the key is made on its own connection, mid-action)
        png = io.BytesIO()
        Image.new("RGB", (64, 64), "green").save(png, "PNG")
        await images.set_image(db, ann.id, community, "icon", png.getvalue())
        await learn_keys(db, members)
        got = await delivered(rt, members)
    # Then the Group's Update carries the new icon and the key that signed it
    update = next(d for d in got if d["type"] == "Update")
    assert update["object"]["icon"]["url"].endswith(".webp")
    assert update["object"]["publicKey"]["id"] == f"{GROUP}#main-key"
    assert community.icon_path is not None


# --- private communities ------------------------------------------------------------------


async def test_private_community__moderation_reaches_members_servers_only_never_public(
    db: AsyncSession, rt: Runtime
) -> None:
    # Given a private community with bea as a remote member, and cal (another server) who
    # follows ann but is no member
    from kith.graph import service as graph

    async with remote_inbox("127.0.0.2") as members, remote_inbox("127.0.0.3") as other:
        w = await world_with(db, members, MembershipModel.PRIVATE)
        cal = await remote_person(db, other, "cal")
        await graph.follow(db, cal.id, w.ann.id)
        thread = await post(db, w.ann, "Members only", community_ids=[w.community.id])
        before = len(await delivered(rt, members))
        # When ann pins, locks, removes the thread and edits the card
        await moderation.pin_thread(db, w.ann.id, w.community, thread.id)
        await moderation.lock_thread(db, w.ann.id, w.community, thread.id)
        await moderation.remove_post(db, w.ann.id, w.community, thread.id, reason="x")
        await communities.update_community(
            db, w.ann.id, w.community, CommunityChanges(name="Quiet Gardeners")
        )
        got = await delivered(rt, members, before)
        # Then each went to the members' server, addressed to the Group's followers
        kinds = sorted(by_type(got))
        assert kinds == [
            "Announce(Add)",
            "Announce(Delete)",
            "Announce(Lock)",
            "Announce(Update)",
            "Undo(Announce)",
            "Update",
        ]
        for doc in got:
            assert doc["to"] == [FOLLOWERS] and doc["cc"] == []
            assert PUBLIC not in json.dumps(doc) and "as:Public" not in json.dumps(doc)
        # and nothing at all to the follower who is not a member
        await run_jobs(rt)
        assert [d for d in other.received if d.activity["type"] != "Create"] == []


# --- a remote author deletes their post ---------------------------------------------------


async def test_delete__by_the_remote_author_removes_the_post_and_the_group_passes_it_on(
    db: AsyncSession, settings: Settings, rt: Runtime
) -> None:
    async with two_actor_peer() as peer, remote_inbox("127.0.0.2") as members:
        # Given alice (on the peer) posted into the community; bea is a member elsewhere
        await world_with(db, members, MembershipModel.OPEN)
        assert (
            await deliver(settings, rt, peer, peer.activity("alice", "Follow", GROUP)) == "joined"
        )
        note = peer.note("alice", "Tulips")
        note["cc"] = [GROUP]
        create = peer.activity("alice", "Create", note, to=[PUBLIC], cc=[GROUP])
        assert await deliver(settings, rt, peer, create) == "stored in a community"
        stored = await db.scalar(select(Post).where(Post.uri == note["id"]))
        assert stored is not None
        post_id = stored.id
        before = len(await delivered(rt, members))
        # When she deletes it
        delete = peer.activity("alice", "Delete", note["id"], to=[PUBLIC], cc=[GROUP])
        assert await deliver(settings, rt, peer, delete) == "deleted"
        # Then it is gone, from the community too
        assert await count(db, Post, Post.uri == note["id"]) == 0
        assert await count(db, CommunityPost, CommunityPost.post_id == post_id) == 0
        # and the Group passes her Delete on, as she sent it, and takes back its boost
        got = by_type(await delivered(rt, members, before))
        assert set(got) == {"Announce(Delete)", "Undo(Announce)"}
        announce = got["Announce(Delete)"]
        assert announce["id"] == f"{GROUP}/announces/{post_id}/delete"
        inner = announce["object"]
        assert inner["id"] == delete["id"] and inner["actor"] == delete["actor"]
        assert inner["object"] == note["id"] and inner["audience"] == GROUP
        assert got["Undo(Announce)"]["object"]["id"] == f"{GROUP}/announces/{post_id}/object"


async def test_delete__by_a_local_author_is_passed_on_by_the_group(
    db: AsyncSession, rt: Runtime, world: World
) -> None:
    from kith import policy
    from kith.posts import service as posts

    thread = await post(db, world.ann, "Oops", community_ids=[world.community.id])
    before = len(await delivered(rt, world.members))
    await posts.delete_post(db, policy.Viewer(world.ann.id), thread.id)
    got = by_type(await delivered(rt, world.members, before))
    inner = got["Announce(Delete)"]["object"]
    assert inner["actor"] == ANN and inner["audience"] == GROUP
    assert got["Undo(Announce)"]["object"]["object"] == note_id(thread)
