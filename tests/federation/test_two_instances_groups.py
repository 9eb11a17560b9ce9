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
from sqlalchemy import select

from kith.accounts.service import find_local_account
from kith.communities import service as communities
from kith.communities.models import CommunityPost, Membership, MemberState
from kith.communities.service import CommunityInput
from kith.migrate import upgrade
from kith.oauth import service as oauth
from kith.posts import service as posts
from kith.posts.models import Post, Visibility
from kith.posts.service import PostInput
from kith.runtime import Runtime
from tests.conftest import _drop_pg_database
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
async def pair(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pair]:
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
    a.peer, b.peer = b.domain, a.domain
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
