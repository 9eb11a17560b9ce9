"""GET /api/v1/trends/{tags,statuses,links} and /api/v1/trends: Mastodon's entities, approved
candidates only, offset pagination, and the caller's blocks and mutes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from mastodon import Mastodon
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.config import Settings
from kith.graph import service as graph
from kith.posts.models import Tag, Visibility
from kith.timelines.models import TagFollow
from kith.trends import service as trends
from kith.trends.models import TrendLink
from tests.live_server import live_server
from tests.mastodon_api.conftest import bearer, token_for
from tests.test_trends_review import LINK, TrendingWorld, mod, refreshed, trending_world
from tests.world import person, post, running_app, viewer


@pytest.fixture
async def api(settings: Settings, rt) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    async with running_app(settings) as client:
        yield client


async def approve_all(db: AsyncSession, w: TrendingWorld) -> None:
    link_id = await db.scalar(select(TrendLink.id).where(TrendLink.url == LINK))
    assert link_id is not None
    await trends.decide(db, mod(w), "tags", w.tag.id, "approve")
    await trends.decide(db, mod(w), "statuses", w.hit.id, "approve")
    await trends.decide(db, mod(w), "links", link_id, "approve")


async def test_trends_api__nothing_before_review(api: httpx.AsyncClient, db: AsyncSession) -> None:
    # Given scored but unreviewed candidates
    await trending_world(db)
    await refreshed(db)
    # Then every trends endpoint answers an empty list, to anyone
    for url in ("/api/v1/trends", "/api/v1/trends/tags", "/api/v1/trends/statuses",
                "/api/v1/trends/links"):  # fmt: skip
        r = await api.get(url)
        assert r.status_code == 200 and r.json() == [], url


async def test_trends_api__approved__mastodon_entities(
    api: httpx.AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    # Given approved candidates
    w = await trending_world(db)
    await refreshed(db)
    await approve_all(db, w)
    # When an app asks for trending tags (both paths)
    tags = (await api.get("/api/v1/trends/tags")).json()
    assert (await api.get("/api/v1/trends")).json() == tags
    # Then it gets Mastodon's Tag with a week of history, today's five accounts first
    assert [t["name"] for t in tags] == ["harvest"]
    tag = tags[0]
    assert tag["url"] == f"{settings.base_url}/tags/harvest" and "following" not in tag
    assert len(tag["history"]) == 7
    assert tag["history"][0]["accounts"] == "5" and tag["history"][0]["uses"] == "5"
    assert all(set(h) == {"day", "uses", "accounts"} for h in tag["history"])
    # And trending statuses as Status entities
    statuses = (await api.get("/api/v1/trends/statuses")).json()
    assert [s["id"] for s in statuses] == [str(w.hit.id)]
    assert statuses[0]["account"]["username"] == "farmer" and statuses[0]["favourites_count"] == 4
    # And trending links as PreviewCards with only the URL, type and history filled in
    links = (await api.get("/api/v1/trends/links")).json()
    assert len(links) == 1
    card = links[0]
    assert card["url"] == LINK and card["title"] == LINK and card["type"] == "link"
    assert card["description"] == "" and card["image"] is None and card["width"] == 0
    assert card["history"][0]["accounts"] == "5"


async def test_trends_api__followers_only_unlisted_and_silenced_never_shown(
    api: httpx.AsyncClient, db: AsyncSession
) -> None:
    # Given #quiet used by four accounts in followers-only and unlisted posts, and #hushed
    # by four silenced accounts, with automatic approval on
    crowd = [await person(db, f"q{i}") for i in range(4)]
    admin = await person(db, "boss", admin=True)
    for i, a in enumerate(crowd):
        audience = [Visibility.PRIVATE, Visibility.UNLISTED][i % 2]
        await post(db, a, "#quiet please", visibility=audience)
        await post(db, a, "#hushed voices")
        a.silenced_at = a.created_at
    await db.commit()
    await trends.set_auto_approve(db, viewer(admin, admin=True), True)
    await refreshed(db)
    # Then no trend appears
    assert (await api.get("/api/v1/trends/tags")).json() == []
    assert await trends.pending_count(db) == 0


async def test_trends_api__following_field_for_signed_in_callers(
    api: httpx.AsyncClient, db: AsyncSession
) -> None:
    # Given an approved trending tag that one fan follows
    w = await trending_world(db)
    await refreshed(db)
    await approve_all(db, w)
    db.add(TagFollow(account_id=w.fans[0].id, tag_id=w.tag.id))
    await db.commit()
    # Then with a token the Tag entity says whether the caller follows it
    fan_token = await token_for(db, w.fans[0], "read")
    other_token = await token_for(db, w.fans[1], "read")
    r = await api.get("/api/v1/trends/tags", headers=bearer(fan_token))
    assert r.json()[0]["following"] is True
    r = await api.get("/api/v1/trends/tags", headers=bearer(other_token))
    assert r.json()[0]["following"] is False
    # And a bad token is refused, as everywhere in the API
    r = await api.get("/api/v1/trends/tags", headers=bearer("nope"))
    assert r.status_code == 401


async def test_trends_api__statuses_respect_the_callers_blocks_and_mutes(
    api: httpx.AsyncClient, db: AsyncSession
) -> None:
    # Given the farmer's approved trending post
    w = await trending_world(db)
    await refreshed(db)
    await approve_all(db, w)
    # When one fan blocks the farmer and another mutes them
    await graph.block(db, w.fans[0].id, w.author.id)
    await graph.mute(db, w.fans[1].id, w.author.id)
    # Then neither sees it among trending statuses; a third fan does
    for fan, expected in ((w.fans[0], 0), (w.fans[1], 0), (w.fans[2], 1)):
        token = await token_for(db, fan, "read")
        r = await api.get("/api/v1/trends/statuses", headers=bearer(token))
        assert r.status_code == 200 and len(r.json()) == expected, fan.username


async def test_trends_api__limit_offset_and_link_header(
    api: httpx.AsyncClient, db: AsyncSession
) -> None:
    # Given three approved trending tags
    w = await trending_world(db)
    for name in ("apples", "pears"):
        for a in [w.author, *w.fans]:
            await post(db, a, f"#{name} today")
    await refreshed(db)
    for tag in (await db.scalars(select(Tag))).all():
        await trends.decide(db, mod(w), "tags", tag.id, "approve")
    # When an app pages through them two at a time
    first = await api.get("/api/v1/trends/tags?limit=2")
    second = await api.get("/api/v1/trends/tags?limit=2&offset=2")
    # Then it gets all three, once each, with a next link while pages are full
    names = [t["name"] for t in first.json() + second.json()]
    assert sorted(names) == ["apples", "harvest", "pears"]
    assert 'offset=2>; rel="next"' in first.headers["link"]
    assert "link" not in second.headers
    # And silly values are clamped or refused with Mastodon's error shape
    assert len((await api.get("/api/v1/trends/tags?limit=500")).json()) == 3
    assert (await api.get("/api/v1/trends/tags?offset=-5")).status_code == 200
    r = await api.get("/api/v1/trends/tags?offset=lots")
    assert r.status_code == 422 and "error" in r.json()


async def test_trends_api__mastodon_py_reads_the_trends(
    db: AsyncSession, settings: Settings
) -> None:
    # Given approved trends on a running server
    w = await trending_world(db)
    await refreshed(db)
    await approve_all(db, w)

    def story(base: str) -> None:
        # When the real client library asks for them, without signing in
        client = Mastodon(api_base_url=base)
        tags = client.trending_tags()
        statuses = client.trending_statuses()
        links = client.trending_links()
        # Then it parses Kith's answers into its own types
        assert [t.name for t in tags] == ["harvest"] and tags[0].history[0].accounts == "5"
        assert [s.account.acct for s in statuses] == ["farmer"]
        assert [card.url for card in links] == [LINK]

    with live_server(settings) as base:
        await asyncio.to_thread(story, base)
