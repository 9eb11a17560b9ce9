"""Communities through the Mastodon API: a community is a `group: true` account that apps
find (by id, lookup, search), follow to join, unfollow to leave, and read (its newest
threads as its statuses) — under the communities' own rules, private ones keeping their
content to members."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.communities import moderation
from kith.communities import service as communities
from kith.communities.models import Community, Membership, MembershipModel, MemberState
from kith.communities.service import CommunityInput
from kith.posts import service as posts
from kith.posts.models import Post
from kith.posts.service import PostInput
from tests.mastodon_api.conftest import bearer, token_for
from tests.world import person


async def found(
    db: AsyncSession,
    owner: Account,
    handle: str,
    membership: MembershipModel = MembershipModel.OPEN,
    **fields: Any,
) -> Community:
    data = CommunityInput(name=f"{handle.title()} club", membership=membership, **fields)
    return await communities.create_community(db, owner.id, handle, data)


async def thread(db: AsyncSession, author: Account, c: Community, text: str) -> Post:
    return await posts.create_post(db, author, PostInput(source=text, community_ids=[c.id]))


async def membership(db: AsyncSession, c: Community, who: Account) -> str | None:
    state = await db.scalar(
        select(Membership.state).where(
            Membership.community_id == c.id, Membership.account_id == who.id
        )
    )
    return None if state is None else str(state)


async def members(db: AsyncSession, c: Community) -> int:
    n = await db.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.community_id == c.id, Membership.state == MemberState.ACTIVE)
    )
    return int(n or 0)


@pytest.fixture
async def world(db: AsyncSession) -> dict[str, Any]:
    owner = await person(db, "olga")
    ana = await person(db, "ana")
    bikes = await found(
        db, owner, "Bikes", description="Fixing & riding.\n\nAll welcome", topics=["bikes"]
    )
    await communities.join(db, ana.id, bikes)
    return {
        "owner": owner,
        "ana": ana,
        "bikes": bikes,
        "owner_token": await token_for(db, owner),
        "ana_token": await token_for(db, ana),
    }


# --- the Account entity --------------------------------------------------------------------


async def test_get_account__a_community_is_a_group_account_with_its_card_and_counts(
    db: AsyncSession, api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    bikes, ana = world["bikes"], world["ana"]
    await thread(db, ana, bikes, "first thread")
    await thread(db, ana, bikes, "second thread")
    r = await api.get(f"/api/v1/accounts/{bikes.id}")
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["group"] is True and a["bot"] is False
    assert a["id"] == str(bikes.id)
    assert a["username"] == a["acct"] == "Bikes"
    assert a["display_name"] == "Bikes club"
    assert a["note"] == "<p>Fixing &amp; riding.</p><p>All welcome</p>"
    assert a["url"] == "http://kith.test/c/Bikes"
    assert a["avatar"] == "http://kith.test/static/avatar.png"
    assert a["header"] == "http://kith.test/static/header.png"
    assert a["locked"] is False
    assert a["followers_count"] == 2  # olga and ana
    assert a["statuses_count"] == 2
    assert a["following_count"] == 0
    assert a["last_status_at"] is not None


@pytest.mark.parametrize(
    "model", [MembershipModel.APPROVAL, MembershipModel.INVITE, MembershipModel.PRIVATE]
)
async def test_get_account__locked_unless_anyone_may_join(
    db: AsyncSession, api: httpx.AsyncClient, world: dict[str, Any], model: MembershipModel
) -> None:
    c = await found(db, world["owner"], "club", model)
    r = await api.get(f"/api/v1/accounts/{c.id}")
    assert r.status_code == 200 and r.json()["locked"] is True and r.json()["group"] is True


async def test_get_account__unknown_or_malformed_id_is_404_and_people_are_still_people(
    db: AsyncSession, api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    assert (await api.get("/api/v1/accounts/1234567")).status_code == 404
    assert (await api.get("/api/v1/accounts/not-an-id")).status_code == 404
    assert (await api.get("/api/v1/accounts/99999999999999999999")).status_code == 404
    r = await api.get(f"/api/v1/accounts/{world['ana'].id}")
    assert r.status_code == 200 and r.json()["group"] is False


@pytest.mark.parametrize("acct", ["bikes", "Bikes", "!bikes", "@bikes", "bikes@kith.test"])
async def test_lookup__finds_a_community_by_its_handle(
    api: httpx.AsyncClient, world: dict[str, Any], acct: str
) -> None:
    r = await api.get("/api/v1/accounts/lookup", params={"acct": acct})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == str(world["bikes"].id) and r.json()["group"] is True


async def test_lookup__another_servers_handle_or_an_unknown_one_is_404(
    api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    for acct in ["bikes@elsewhere.example", "!nothing", ""]:
        r = await api.get("/api/v1/accounts/lookup", params={"acct": acct})
        assert r.status_code == 404, acct


# --- search --------------------------------------------------------------------------------


async def test_search_v2__finds_communities_by_handle_and_name_private_ones_too(
    db: AsyncSession, api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    await found(db, world["owner"], "bikers_secret", MembershipModel.PRIVATE)
    await person(db, "bikelover")
    r = await api.get(
        "/api/v2/search",
        params={"q": "bike", "type": "accounts"},
        headers=bearer(world["ana_token"]),
    )
    assert r.status_code == 200
    found_ = [(a["acct"], a["group"]) for a in r.json()["accounts"]]
    assert ("bikelover", False) in found_
    assert ("Bikes", True) in found_ and ("bikers_secret", True) in found_
    # The exact handle first, before people
    r = await api.get("/api/v2/search", params={"q": "bikes"})
    assert r.json()["accounts"][0]["acct"] == "Bikes"
    # `!` names communities only; by display name too
    r = await api.get("/api/v2/search", params={"q": "!bike", "type": "accounts"})
    assert {a["acct"] for a in r.json()["accounts"]} == {"Bikes", "bikers_secret"}
    r = await api.get("/api/v2/search", params={"q": "Bikes club"})
    assert [a["acct"] for a in r.json()["accounts"]] == ["Bikes"]
    # Only statuses asked for: no communities
    r = await api.get("/api/v2/search", params={"q": "bikes", "type": "statuses"})
    assert r.json()["accounts"] == []


async def test_search_v1__finds_communities_and_needs_read_accounts(
    db: AsyncSession, api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    r = await api.get(
        "/api/v1/accounts/search", params={"q": "!bikes"}, headers=bearer(world["ana_token"])
    )
    assert r.status_code == 200
    assert [a["id"] for a in r.json()] == [str(world["bikes"].id)]
    assert (await api.get("/api/v1/accounts/search", params={"q": "bikes"})).status_code == 401
    other = await token_for(db, world["ana"], "read:statuses")
    r = await api.get("/api/v1/accounts/search", params={"q": "bikes"}, headers=bearer(other))
    assert r.status_code == 403


# --- follow, unfollow, relationships -------------------------------------------------------


async def test_follow__open_community_joins_at_once_and_unfollow_leaves(
    db: AsyncSession, api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    bikes = world["bikes"]
    sam = await person(db, "sam")
    token = await token_for(db, sam)
    r = await api.post(f"/api/v1/accounts/{bikes.id}/follow", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["following"] is True and r.json()["requested"] is False
    assert await membership(db, bikes, sam) == MemberState.ACTIVE
    r = await api.get(
        "/api/v1/accounts/relationships",
        params={"id[]": [str(bikes.id), str(world["ana"].id)]},
        headers=bearer(token),
    )
    assert [(x["id"], x["following"]) for x in r.json()] == [
        (str(bikes.id), True),
        (str(world["ana"].id), False),
    ]
    r = await api.post(f"/api/v1/accounts/{bikes.id}/unfollow", headers=bearer(token))
    assert r.status_code == 200 and r.json()["following"] is False
    assert await membership(db, bikes, sam) is None


@pytest.mark.parametrize("model", [MembershipModel.APPROVAL, MembershipModel.PRIVATE])
async def test_follow__approval_or_private_asks_and_waits(
    db: AsyncSession, api: httpx.AsyncClient, world: dict[str, Any], model: MembershipModel
) -> None:
    # A join question cannot be answered from an app: the request is made without an
    # answer, as a remote person's Follow of the Group is.
    c = await found(db, world["owner"], "club", model, join_question="Why?")
    token = world["ana_token"]
    r = await api.post(f"/api/v1/accounts/{c.id}/follow", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json()["following"] is False and r.json()["requested"] is True
    assert await membership(db, c, world["ana"]) == MemberState.PENDING
    r = await api.get(
        "/api/v1/accounts/relationships", params={"id[]": str(c.id)}, headers=bearer(token)
    )
    assert r.json()[0]["requested"] is True
    # Approved by a moderator: now following
    await moderation.approve(db, world["owner"].id, c, world["ana"].id)
    r = await api.get(
        "/api/v1/accounts/relationships", params={"id[]": str(c.id)}, headers=bearer(token)
    )
    assert r.json()[0]["following"] is True and r.json()[0]["requested"] is False


async def test_follow__invite_only_is_422_and_nothing_is_written(
    db: AsyncSession, api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    c = await found(db, world["owner"], "club", MembershipModel.INVITE)
    r = await api.post(f"/api/v1/accounts/{c.id}/follow", headers=bearer(world["ana_token"]))
    assert r.status_code == 422
    assert "invite-only" in r.json()["error"] and "!club" in r.json()["error"]
    assert await membership(db, c, world["ana"]) is None


async def test_follow__a_banned_person_is_422_and_stays_out(
    db: AsyncSession, api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    bikes, ana = world["bikes"], world["ana"]
    await moderation.ban(db, world["owner"].id, bikes, ana.id, reason="spam")
    r = await api.post(f"/api/v1/accounts/{bikes.id}/follow", headers=bearer(world["ana_token"]))
    assert r.status_code == 422 and "banned" in r.json()["error"]
    assert await membership(db, bikes, ana) is None


async def test_unfollow__the_owner_cannot_leave(
    db: AsyncSession, api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    bikes = world["bikes"]
    r = await api.post(
        f"/api/v1/accounts/{bikes.id}/unfollow", headers=bearer(world["owner_token"])
    )
    assert r.status_code == 422 and "hand it over" in r.json()["error"]
    assert await members(db, bikes) == 2


async def test_follow__needs_write_follows_and_an_unknown_id_is_404(
    db: AsyncSession, api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    bikes = world["bikes"]
    read_only = await token_for(db, world["ana"], "read")
    r = await api.post(f"/api/v1/accounts/{bikes.id}/follow", headers=bearer(read_only))
    assert r.status_code == 403
    r = await api.post("/api/v1/accounts/1234567/follow", headers=bearer(world["ana_token"]))
    assert r.status_code == 404
    assert (await api.post(f"/api/v1/accounts/{bikes.id}/follow")).status_code == 401


# --- statuses ------------------------------------------------------------------------------


async def test_statuses__newest_threads_paged_like_an_accounts(
    db: AsyncSession, api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    bikes, ana = world["bikes"], world["ana"]
    made = [await thread(db, ana, bikes, f"thread {i}") for i in range(5)]
    await posts.create_post(db, ana, PostInput(source="a reply", in_reply_to_id=made[0].id))
    await posts.create_post(db, ana, PostInput(source="not in the community"))
    r = await api.get(f"/api/v1/accounts/{bikes.id}/statuses", params={"limit": 3})
    assert r.status_code == 200
    assert [s["id"] for s in r.json()] == [str(p.id) for p in reversed(made[2:])]
    assert 'rel="next"' in r.headers["link"]
    r = await api.get(
        f"/api/v1/accounts/{bikes.id}/statuses", params={"limit": 3, "max_id": str(made[2].id)}
    )
    assert [s["id"] for s in r.json()] == [str(made[1].id), str(made[0].id)]
    r = await api.get(f"/api/v1/accounts/{bikes.id}/statuses", params={"min_id": str(made[3].id)})
    assert [s["id"] for s in r.json()] == [str(made[4].id)]
    # Pinned threads, as an app asks for them on a profile
    await moderation.pin_thread(db, world["owner"].id, bikes, made[1].id)
    r = await api.get(f"/api/v1/accounts/{bikes.id}/statuses", params={"pinned": "true"})
    assert [s["id"] for s in r.json()] == [str(made[1].id)]


async def test_statuses__a_private_community_shows_non_members_nothing(
    db: AsyncSession, api: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    owner = world["owner"]
    secret = await found(db, owner, "secret", MembershipModel.PRIVATE)
    p = await thread(db, owner, secret, "members only")
    path = f"/api/v1/accounts/{secret.id}/statuses"
    # A stranger (signed in or not) sees its card but no statuses, and no count of them
    for headers in ({}, bearer(world["ana_token"])):
        r = await api.get(path, headers=headers)
        assert r.status_code == 200 and r.json() == []
        card = (await api.get(f"/api/v1/accounts/{secret.id}", headers=headers)).json()
        assert card["statuses_count"] == 0 and card["last_status_at"] is None
        assert card["followers_count"] == 1
    for params in ({"pinned": "true"}, {"max_id": str(p.id + 1)}):
        assert (await api.get(path, params=params)).json() == []
    # A member sees them
    r = await api.get(path, headers=bearer(world["owner_token"]))
    assert [s["id"] for s in r.json()] == [str(p.id)]
    card = await api.get(f"/api/v1/accounts/{secret.id}", headers=bearer(world["owner_token"]))
    assert card.json()["statuses_count"] == 1
