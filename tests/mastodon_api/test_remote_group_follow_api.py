"""Another server's community through the Mastodon API: its Group's account is a
`group: true` account, and following it joins the community (a Follow of the Group, pending
until its server answers), as the web's Join button does; unfollowing leaves. The other
server is the scripted peer, with its Group `baking`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.communities import remote_moderation
from kith.communities.models import Community, Membership, MemberState
from kith.config import Settings
from kith.federation import remote_groups
from kith.federation.models import OutboundActivity
from kith.federation.remote_accounts import fetch_account
from kith.graph.models import Follow, FollowRequest
from kith.runtime import Runtime
from tests.federation.inbound import count, deliver, loopback, two_actor_peer
from tests.federation.local_http import json_document
from tests.federation.peer import Peer
from tests.mastodon_api.conftest import bearer, token_for
from tests.world import person

pytestmark = pytest.mark.usefixtures("rt")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return loopback(settings)


@pytest.fixture
async def peer() -> AsyncIterator[Peer]:
    async with two_actor_peer() as p:
        for name, key in (("baking", 2), ("knitting", 3)):
            doc = p.add_actor(name, key=key, type="Group")
            p.server.routes[f"/users/{name}"] = json_document(doc | {"name": name.title()})
        yield p


async def _remote_community(db: AsyncSession, peer: Peer) -> Community:
    community = await remote_groups.find_or_resolve(db, peer.actor_uri("baking"))
    assert community is not None and community.actor_id is not None
    return community


async def _sent(db: AsyncSession, kind: str) -> list[dict[str, Any]]:
    rows = await db.scalars(select(OutboundActivity).order_by(OutboundActivity.id))
    return [r.document for r in rows if r.document.get("type") == kind]


async def _state(db: AsyncSession, community: Community, account_id: int) -> str | None:
    state = await db.scalar(
        select(Membership.state)
        .where(Membership.community_id == community.id, Membership.account_id == account_id)
        .execution_options(populate_existing=True)
    )
    return None if state is None else str(state)


async def test_follow__a_remote_communitys_group_joins_it_and_unfollow_leaves(
    db: AsyncSession, settings: Settings, rt: Runtime, api: httpx.AsyncClient, peer: Peer
) -> None:
    # Given bo, and the community baking on the peer, known here
    bo = await person(db, "bo")
    auth = bearer(await token_for(db, bo))
    community = await _remote_community(db, peer)
    group_id = str(community.actor_id)
    # Then apps see its Group's account as a group
    r = await api.get(f"/api/v1/accounts/{group_id}", headers=auth)
    assert r.status_code == 200 and r.json()["group"] is True
    # When bo follows it from an app
    r = await api.post(f"/api/v1/accounts/{group_id}/follow", headers=auth)
    # Then he asked to join the community: a Follow to the Group, waiting for its answer
    assert r.status_code == 200, r.text
    rel = r.json()
    assert rel["id"] == group_id
    assert (rel["following"], rel["requested"]) == (False, True)
    assert await _state(db, community, bo.id) == MemberState.PENDING
    follows = await _sent(db, "Follow")
    assert [f["object"] for f in follows] == [peer.actor_uri("baking")]
    # and it is no follow of the account (its posts come as the community's, not boosts)
    assert await count(db, Follow, Follow.follower_id == bo.id) == 0
    assert await count(db, FollowRequest, FollowRequest.follower_id == bo.id) == 0
    # When the Group accepts
    accept = peer.activity("baking", "Accept", follows[0])
    assert await deliver(settings, rt, peer, accept) == "joined the community"
    # Then the app sees him following it: a member
    r = await api.get("/api/v1/accounts/relationships", params={"id[]": group_id}, headers=auth)
    assert r.status_code == 200
    assert [(x["id"], x["following"], x["requested"]) for x in r.json()] == [
        (group_id, True, False)
    ]
    assert await _state(db, community, bo.id) == MemberState.ACTIVE
    # When he unfollows it
    r = await api.post(f"/api/v1/accounts/{group_id}/unfollow", headers=auth)
    # Then he left: the membership is gone and the Group gets the Undo of his Follow
    assert r.status_code == 200
    assert (r.json()["following"], r.json()["requested"]) == (False, False)
    assert await _state(db, community, bo.id) is None
    undo = await _sent(db, "Undo")
    assert undo and undo[-1]["object"]["type"] == "Follow"


async def test_follow__banned_by_the_remote_community__422_and_nothing_sent(
    db: AsyncSession, api: httpx.AsyncClient, peer: Peer
) -> None:
    # Given bo, whom baking's Group banned (as its Announce of a Block does)
    bo = await person(db, "bo")
    auth = bearer(await token_for(db, bo))
    community = await _remote_community(db, peer)
    await remote_moderation.ban(db, community, bo.id, until=None, moderator_id=None)
    await db.commit()
    # When he follows its Group from an app
    r = await api.post(f"/api/v1/accounts/{community.actor_id}/follow", headers=auth)
    # Then it is refused, saying why, and nothing is asked or sent
    assert r.status_code == 422
    assert f"banned from !baking@{peer.server.authority}" in r.text
    assert await _state(db, community, bo.id) is None
    assert await _sent(db, "Follow") == []


async def test_follow__a_group_known_as_no_community_is_an_ordinary_follow(
    db: AsyncSession, api: httpx.AsyncClient, peer: Peer
) -> None:
    # Given a Group account nobody here looked up as a community (no community row)
    bo = await person(db, "bo")
    auth = bearer(await token_for(db, bo))
    knitting = await fetch_account(db, peer.actor_uri("knitting"))
    await db.commit()
    # Then it is an account like any (not shown as a group), and following it follows it
    r = await api.get(f"/api/v1/accounts/{knitting.id}", headers=auth)
    assert r.status_code == 200 and r.json()["group"] is False
    r = await api.post(f"/api/v1/accounts/{knitting.id}/follow", headers=auth)
    assert r.status_code == 200
    follows = await count(db, Follow, Follow.follower_id == bo.id)
    requests = await count(db, FollowRequest, FollowRequest.follower_id == bo.id)
    assert follows + requests == 1
    assert await count(db, Membership, Membership.account_id == bo.id) == 0
