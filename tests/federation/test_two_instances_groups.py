"""Two real Kith instances and a community (FEP-1b12): bea on B finds the community on A by
its handle, joins it by following its Group, sees what is posted in it (announced by the
Group), and posts into it by mentioning it. Same machinery as test_two_instances.py: two
`kith serve` processes, real HTTP, each with its own database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from kith import policy
from kith.accounts.models import Account
from kith.accounts.service import find_local_account
from kith.communities import feeds, moderation
from kith.communities import service as communities
from kith.communities.models import CommunityBan, CommunityPost, Membership, MemberState
from kith.communities.service import CommunityInput
from kith.errors import ValidationFailed
from kith.federation import remote_groups
from kith.federation.models import InboxItem
from kith.migrate import upgrade
from kith.oauth import service as oauth
from kith.posts import service as posts
from kith.posts.models import Post, Visibility
from kith.posts.service import PostInput
from kith.runtime import Runtime
from tests.conftest import _drop_pg_database
from tests.federation.local_http import local_server, respond
from tests.federation.peer import Peer
from tests.federation.test_two_instances import (
    Instance,
    Pair,
    _database,
    eventually,
    free_port,
    ok,
    relationship,
    resolve,
)
from tests.world import person

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def third() -> AsyncIterator[Peer]:
    """A third server (the scripted peer, on 127.0.0.4), whose carl follows `gardens` on A:
    A allow-lists it beside B."""
    async with local_server("127.0.0.4") as server:
        peer = Peer(server)
        peer.add_actor("carl", key=4)
        server.routes["/inbox"] = respond(202)
        server.routes["/users/carl/inbox"] = respond(202)
        yield peer


@pytest.fixture(scope="module")
async def pair(tmp_path_factory: pytest.TempPathFactory, third: Peer) -> AsyncIterator[Pair]:
    """A (127.0.0.2) with ana, who founds the open community `gardens`; B (127.0.0.3)
    with bea."""
    root = tmp_path_factory.mktemp("two-instances-groups")
    made: list[str] = []
    instances = []
    for label, host in (("a", "127.0.0.2"), ("b", "127.0.0.3")):
        workdir = root / label
        workdir.mkdir()
        url, pg_name = await _database()
        if pg_name:
            made.append(pg_name)
        else:
            url = f"sqlite+aiosqlite:///{workdir / 'kith.db'}"
        await asyncio.to_thread(upgrade, url)
        instances.append(Instance(label, host, free_port(host), workdir, url))
    a, b = instances
    a.peer, b.peer = f"{b.domain},{third.server.authority}", a.domain
    try:
        for inst, name in ((a, "ana"), (b, "bea")):
            inst.rt = Runtime.from_settings(inst.settings())
            async with inst.rt.sessions() as db:
                account = await person(db, name)
                issued = await oauth.create_personal_token(
                    db, account, "two-instances", "read write follow"
                )
                inst.tokens[name] = issued.access_token
                if name == "ana":
                    await communities.create_community(
                        db, account.id, "gardens", CommunityInput(name="Gardens")
                    )
        await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
        yield Pair(a, b)
    finally:
        for inst in instances:
            inst.stop()
            if inst.rt is not None:
                await inst.rt.close()
        for name in made:
            await _drop_pg_database(name)


async def _reblog_with(client: httpx.AsyncClient, marker: str) -> dict[str, Any] | None:
    """The boost in the home timeline whose original's content has `marker`."""
    items = await ok(client.get("/api/v1/timelines/home", params={"limit": 40}))
    for item in items:
        if item.get("reblog") and marker in item["reblog"]["content"]:
            return dict(item)
    return None


async def test_a_remote_person_joins_sees_the_groups_posts_and_posts_into_it(pair: Pair) -> None:
    a, b = pair.a, pair.b
    assert a.rt is not None
    group_handle = f"@gardens@{a.domain}"
    async with b.api("bea") as bea:
        # Given bea on B finds the community by its handle (WebFinger, then the Group actor)
        group_at_b = await resolve(bea, group_handle)
        # When she follows its Group
        await ok(bea.post(f"/api/v1/accounts/{group_at_b}/follow"))

        # Then the Group accepts (signed with its own key, which B fetches and checks)
        async def following() -> bool:
            return bool((await relationship(bea, group_at_b))["following"])

        await eventually(following, "B learning that bea joined gardens")
        # and she is a member on A
        async with a.rt.sessions() as db:
            states = (
                await db.scalars(select(Membership.state).where(Membership.role == "member"))
            ).all()
        assert states == [MemberState.ACTIVE]

        # When ana posts in the community on A
        async with a.rt.sessions() as db:
            community = await communities.find_community(db, "gardens")
            author = await find_local_account(db, "ana")
            assert community is not None and author is not None
            await posts.create_post(
                db,
                author,
                PostInput(
                    source="group-post-tulips",
                    visibility=Visibility.PUBLIC,
                    community_ids=[community.id],
                ),
            )
        # Then the Group's Announce brings it to bea's home on B
        boost = await eventually(
            lambda: _reblog_with(bea, "group-post-tulips"), "the community's post in bea's home"
        )
        assert boost["account"]["acct"] == group_handle[1:]

        # When bea posts into the community by mentioning it
        await ok(
            bea.post(
                "/api/v1/statuses",
                json={"status": f"{group_handle} group-post-roses", "visibility": "public"},
            )
        )

        # Then A stores it as a thread of the community
        async def in_community() -> bool:
            assert a.rt is not None
            async with a.rt.sessions() as db:
                found = await db.scalar(
                    select(CommunityPost.state)
                    .join(Post, Post.id == CommunityPost.post_id)
                    .where(Post.content_html.contains("group-post-roses"))
                )
            return found == "approved"

        await eventually(in_community, "bea's post in the community on A")


async def test_a_post_removed_by_a_moderator_on_a_leaves_the_members_home_on_b(
    pair: Pair,
) -> None:
    a, b = pair.a, pair.b
    assert a.rt is not None
    group_handle = f"@gardens@{a.domain}"
    async with b.api("bea") as bea:
        # Given bea on B is in the community on A (following again changes nothing)
        group_at_b = await resolve(bea, group_handle)
        await ok(bea.post(f"/api/v1/accounts/{group_at_b}/follow"))

        async def following() -> bool:
            return bool((await relationship(bea, group_at_b))["following"])

        await eventually(following, "B learning that bea joined gardens")
        # and ana's post in it reached bea's home
        async with a.rt.sessions() as db:
            community = await communities.find_community(db, "gardens")
            author = await find_local_account(db, "ana")
            assert community is not None and author is not None
            mine = await posts.create_post(
                db,
                author,
                PostInput(
                    source="group-post-weeds",
                    visibility=Visibility.PUBLIC,
                    community_ids=[community.id],
                ),
            )
        await eventually(
            lambda: _home_item_with(bea, "group-post-weeds"), "the community's post in bea's home"
        )
        # When ana, its owner, removes it on A
        async with a.rt.sessions() as db:
            community = await communities.find_community(db, "gardens")
            assert community is not None
            await moderation.remove_post(db, author.id, community, mine.id, reason="weeds")

        # Then it leaves bea's home on B
        async def gone() -> bool:
            return await _home_item_with(bea, "group-post-weeds") is None

        await eventually(gone, "the removed post leaving bea's home on B")


async def _home_item_with(client: httpx.AsyncClient, marker: str) -> dict[str, Any] | None:
    """The home timeline item showing a post whose content has `marker` (a boost of it by
    the Group, or the post itself)."""
    items = await ok(client.get("/api/v1/timelines/home", params={"limit": 40}))
    for item in items:
        if marker in (item.get("reblog") or item)["content"]:
            return dict(item)
    return None


async def test_a_kith_person_joins_a_community_on_the_other_instance(pair: Pair) -> None:
    """cleo on B joins `gardens` on A as a community (not by following an account): A's
    posts in it reach her "My communities" on B as community posts, and her post into it
    from B lands in the community on A."""
    a, b = pair.a, pair.b
    assert a.rt is not None and b.rt is not None
    # Given cleo on B finds the community by its address and asks to join
    async with b.rt.sessions() as db:
        cleo = await person(db, "cleo")
        cleo_id = cleo.id
        remote = await remote_groups.find_or_resolve(db, f"!gardens@{a.domain}")
        assert remote is not None and remote.address == f"gardens@{a.domain}"
        remote_id = remote.id
        row = await communities.join(db, cleo_id, remote)
        assert row.state == MemberState.PENDING

    # Then the Group on A lets her in (an open community), and B learns it
    async def member_on_b() -> bool:
        assert b.rt is not None
        async with b.rt.sessions() as db:
            state = await db.scalar(
                select(Membership.state).where(
                    Membership.community_id == remote_id, Membership.account_id == cleo_id
                )
            )
        return state == MemberState.ACTIVE

    await eventually(member_on_b, "A's Group accepting cleo into gardens")

    # When ana posts in the community on A
    async with a.rt.sessions() as db:
        community = await communities.find_community(db, "gardens")
        ana = await find_local_account(db, "ana")
        assert community is not None and ana is not None
        await posts.create_post(
            db,
            ana,
            PostInput(
                source="group-post-dahlias",
                visibility=Visibility.PUBLIC,
                community_ids=[community.id],
            ),
        )

    # Then it is in cleo's "My communities" on B, by ana, not a boost by the Group
    async def in_my_communities() -> Post | None:
        assert b.rt is not None
        async with b.rt.sessions() as db:
            page = await feeds.my_communities(db, policy.Viewer(cleo_id))
            found = [p for p in page.posts if "group-post-dahlias" in p.content_html]
            return found[0] if found else None

    shown = await eventually(in_my_communities, "ana's post in cleo's communities on B")
    assert shown.reblog_of_id is None
    async with b.rt.sessions() as db:
        author = await db.get(Account, shown.account_id)
        assert author is not None and author.acct == f"ana@{a.domain}"

    # When cleo posts into the community from B
    async with b.rt.sessions() as db:
        me = await db.get(Account, cleo_id)
        assert me is not None
        await posts.create_post(
            db,
            me,
            PostInput(
                source="group-post-sunflowers",
                visibility=Visibility.PUBLIC,
                community_ids=[remote_id],
            ),
        )

    # Then A stores it as a thread of gardens
    async def thread_on_a() -> bool:
        assert a.rt is not None
        async with a.rt.sessions() as db:
            found = await db.scalar(
                select(CommunityPost.state)
                .join(Post, Post.id == CommunityPost.post_id)
                .where(Post.content_html.contains("group-post-sunflowers"))
            )
        return found == "approved"

    await eventually(thread_on_a, "cleo's post in gardens on A")


async def test_a_remote_person_joins_posts_is_reannounced_then_banned_and_refused(
    pair: Pair, third: Peer
) -> None:
    """dan on B joins `gardens` on A from an app (following its Group's account joins the
    community), posts into it, and A's Group passes the post on to every server following
    it — B and a third one. Then ana bans him on A: the ban reaches B, which refuses his
    post into it, and a post that reaches A anyway (a mention of the Group: B addresses
    no other server's community by mention) is refused by A, with nothing stored."""
    a, b = pair.a, pair.b
    assert a.rt is not None and b.rt is not None
    group_uri = f"{a.base_url}/c/gardens"

    # Given carl on the third server follows the Group on A (an open community: he is in)
    follow = third.activity("carl", "Follow", group_uri)
    headers, body = third.sign(follow, host=a.domain)
    async with httpx.AsyncClient(base_url=a.base_url, timeout=15) as client:
        r = await client.post("/inbox", content=body, headers=headers)
    assert r.status_code == 202, r.text

    async def carl_in() -> bool:
        assert a.rt is not None
        async with a.rt.sessions() as db:
            state = await db.scalar(
                select(Membership.state)
                .join(Account, Account.id == Membership.account_id)
                .where(Account.uri == third.actor_uri("carl"))
            )
        return state == MemberState.ACTIVE

    await eventually(carl_in, "the third server's carl joining gardens on A")

    # Given dan on B, where gardens is known as a community (B looked its Group up, and
    # someone there found it as a community: its page on B)
    async with b.rt.sessions() as db:
        dan = await person(db, "dan")
        dan_id = dan.id
        issued = await oauth.create_personal_token(db, dan, "two-instances", "read write follow")
        b.tokens["dan"] = issued.access_token
    async with b.api("dan") as dan_api:
        await resolve(dan_api, f"@gardens@{a.domain}")
    async with b.rt.sessions() as db:
        remote = await remote_groups.find_or_resolve(db, f"!gardens@{a.domain}")
        assert remote is not None and remote.actor_id is not None
        remote_id, group_at_b = remote.id, str(remote.actor_id)

    async def dan_state_on_b() -> str | None:
        assert b.rt is not None
        async with b.rt.sessions() as db:
            state = await db.scalar(
                select(Membership.state).where(
                    Membership.community_id == remote_id, Membership.account_id == dan_id
                )
            )
        return None if state is None else str(state)

    async with b.api("dan") as dan_api:
        # When he follows the Group's account from an app
        account = await ok(dan_api.get(f"/api/v1/accounts/{group_at_b}"))
        assert account["group"] is True
        await ok(dan_api.post(f"/api/v1/accounts/{group_at_b}/follow"))

        # Then he is a member of the community on B (A's Group let him in), not a follower
        async def member_on_b() -> bool:
            return await dan_state_on_b() == MemberState.ACTIVE

        await eventually(member_on_b, "A's Group accepting dan into gardens")
        assert (await relationship(dan_api, group_at_b))["following"] is True

        # When he posts into it from B
        async with b.rt.sessions() as db:
            me = await db.get(Account, dan_id)
            assert me is not None
            await posts.create_post(
                db,
                me,
                PostInput(
                    source="group-post-marigolds",
                    visibility=Visibility.PUBLIC,
                    community_ids=[remote_id],
                ),
            )

        # Then A stores it as a thread of gardens
        async def thread_on_a() -> bool:
            assert a.rt is not None
            async with a.rt.sessions() as db:
                found = await db.scalar(
                    select(CommunityPost.state)
                    .join(Post, Post.id == CommunityPost.post_id)
                    .where(Post.content_html.contains("group-post-marigolds"))
                )
            return found == "approved"

        await eventually(thread_on_a, "dan's post in gardens on A")

        # and A's Group re-announces it to the third server following it
        def announced_to_third(marker: bytes) -> bool:
            return any(
                req.method == "POST" and b'"Announce"' in req.body and marker in req.body
                for req in third.server.requests
            )

        async def marigolds_at_third() -> bool:
            return announced_to_third(b"group-post-marigolds")

        await eventually(marigolds_at_third, "the Group's Announce of dan's post at the third")

        # When ana bans him on A
        async with a.rt.sessions() as db:
            community = await communities.find_community(db, "gardens")
            ana = await find_local_account(db, "ana")
            dan_at_a = await db.scalar(
                select(Account).where(Account.uri == f"{b.base_url}/users/dan")
            )
            assert community is not None and ana is not None and dan_at_a is not None
            await moderation.ban(db, ana.id, community, dan_at_a.id, reason="Spam")
            rows_before = await db.scalar(
                select(func.count())
                .select_from(CommunityPost)
                .where(CommunityPost.community_id == community.id)
            )

        # Then the ban reaches B: his membership ends and B holds the ban
        async def banned_on_b() -> bool:
            assert b.rt is not None
            async with b.rt.sessions() as db:
                ban = await db.get(CommunityBan, (remote_id, dan_id))
            return ban is not None and await dan_state_on_b() is None

        await eventually(banned_on_b, "A's ban of dan reaching B")

        # and the third server hears of it too
        async def block_at_third() -> bool:
            return announced_to_third(b'"Block"')

        await eventually(block_at_third, "the Group's Announce of the ban at the third")

        # and B refuses his post into the community, writing nothing
        async with b.rt.sessions() as db:
            me = await db.get(Account, dan_id)
            assert me is not None
            with pytest.raises(ValidationFailed, match="banned"):
                await posts.create_post(
                    db,
                    me,
                    PostInput(
                        source="group-post-nettles",
                        visibility=Visibility.PUBLIC,
                        community_ids=[remote_id],
                    ),
                )
        assert await b.count_posts(Post.content_html.contains("group-post-nettles")) == 0

        # When a post reaches A anyway: an app's status mentioning the Group
        await ok(
            dan_api.post(
                "/api/v1/statuses",
                json={"status": f"@gardens@{a.domain} group-post-thistles", "visibility": "public"},
            )
        )

    # Then A refuses it, and nothing changes in the community
    async def refused_on_a() -> str | None:
        assert a.rt is not None
        async with a.rt.sessions() as db:
            outcome = await db.scalar(
                select(InboxItem.outcome).where(
                    InboxItem.activity_type == "Create",
                    InboxItem.actor_uri == f"{b.base_url}/users/dan",
                    InboxItem.outcome.is_not(None),
                    InboxItem.outcome != "stored in a community",
                )
            )
        return outcome

    outcome = await eventually(refused_on_a, "A refusing dan's post after the ban")
    assert outcome.startswith("refused"), outcome
    assert await a.count_posts(Post.content_html.contains("group-post-thistles")) == 0
    async with a.rt.sessions() as db:
        rows_after = await db.scalar(
            select(func.count())
            .select_from(CommunityPost)
            .where(CommunityPost.community_id == community.id)
        )
    assert rows_after == rows_before
