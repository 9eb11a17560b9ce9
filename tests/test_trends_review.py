"""Trend review: nothing trends before a moderator approves it, rejected candidates never do,
the job can run again safely, and only admins reach /admin/trends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.db import utcnow
from kith.errors import Forbidden
from kith.graph import service as graph
from kith.jobs import queue, worker
from kith.jobs.models import Job
from kith.posts import service as posts
from kith.posts.models import Post, Tag
from kith.runtime import Runtime
from kith.trends import service as trends
from kith.trends.models import ReviewState, TrendLink, TrendSettings, TrendStatus, TrendTag
from tests.world import browser, person, post, viewer

LINK = "https://farm.example/report"


@dataclass
class TrendingWorld:
    """Five accounts in the last hour: all used #harvest and shared LINK; `author` wrote `hit`,
    liked by the four others, and `second`, liked by three of them."""

    admin: Account
    author: Account
    fans: list[Account]
    hit: Post
    second: Post
    tag: Tag


async def trending_world(db: AsyncSession) -> TrendingWorld:
    admin = await person(db, "boss", admin=True)
    author = await person(db, "farmer")
    fans = [await person(db, f"fan{i}") for i in range(4)]
    hit = await post(db, author, f"The #harvest is in: {LINK}")
    second = await post(db, author, "and the pumpkins!")
    for fan in fans:
        await post(db, fan, f"#harvest day, see {LINK}")
        await posts.like(db, viewer(fan), hit.id)
    for fan in fans[:3]:
        await posts.like(db, viewer(fan), second.id)
    tag = await db.scalar(select(Tag).where(Tag.name == "harvest"))
    assert tag is not None
    return TrendingWorld(admin, author, fans, hit, second, tag)


async def refreshed(db: AsyncSession) -> None:
    await trends.refresh(db)
    await db.commit()


def mod(w: TrendingWorld) -> policy.Viewer:
    return viewer(w.admin, admin=True)


async def shown(
    db: AsyncSession, as_viewer: policy.Viewer = policy.ANONYMOUS
) -> tuple[set[str], set[int], set[str]]:
    """What trends publicly (to `as_viewer`): tag names, post ids, link URLs."""
    tags = {tag.name for _, tag in await trends.trending_tags(db, limit=20)}
    statuses = {p.id for p in await trends.trending_statuses(db, as_viewer, limit=40)}
    links = {row.url for row in await trends.trending_links(db, limit=20)}
    return tags, statuses, links


# --- review -------------------------------------------------------------------------------


async def test_trends__pending_candidates__invisible_until_a_moderator_approves(
    db: AsyncSession,
) -> None:
    # Given a burst of #harvest, a liked post and a shared link, scored by the job
    w = await trending_world(db)
    await refreshed(db)
    # Then every one of them waits for review, and nothing trends publicly
    assert await trends.pending_count(db) == 4
    assert await shown(db) == (set(), set(), set())
    # When a moderator approves the tag, the best post and the link
    link_id = await db.scalar(select(TrendLink.id).where(TrendLink.url == LINK))
    assert link_id is not None
    await trends.decide(db, mod(w), "tags", w.tag.id, "approve")
    await trends.decide(db, mod(w), "statuses", w.hit.id, "approve")
    await trends.decide(db, mod(w), "links", link_id, "approve")
    # Then they trend, and the decision is recorded
    assert await shown(db) == ({"harvest"}, {w.hit.id}, {LINK})
    row = await db.get(TrendTag, w.tag.id)
    assert row is not None and row.reviewed_by_id == w.admin.id and row.reviewed_at is not None


async def test_trends__rejected__never_visible_not_even_with_auto_approval(
    db: AsyncSession,
) -> None:
    # Given scored candidates, the tag and the hit post rejected by a moderator
    w = await trending_world(db)
    await refreshed(db)
    await trends.decide(db, mod(w), "tags", w.tag.id, "reject")
    await trends.decide(db, mod(w), "statuses", w.hit.id, "reject")
    # When the instance switches on automatic approval and the job runs again
    await trends.set_auto_approve(db, mod(w), True)
    await refreshed(db)
    # Then undecided candidates trend at once, rejected ones still don't
    tags, statuses, links = await shown(db)
    assert tags == set() and links == {LINK}
    assert statuses == {w.second.id}  # the author's other post, not the rejected one
    row = await db.get(TrendTag, w.tag.id)
    assert row is not None and row.review == ReviewState.REJECTED and row.score > 0


async def test_review__members_cannot_decide(db: AsyncSession) -> None:
    w = await trending_world(db)
    await refreshed(db)
    for who in (viewer(w.author), viewer(None)):
        with pytest.raises(Forbidden):
            await trends.decide(db, who, "tags", w.tag.id, "approve")
        with pytest.raises(Forbidden):
            await trends.set_auto_approve(db, who, True)
    row = await db.get(TrendTag, w.tag.id)
    assert row is not None and row.review == ReviewState.PENDING


# --- the job ------------------------------------------------------------------------------


async def snapshot(db: AsyncSession) -> list[tuple[object, ...]]:
    db.expire_all()
    rows: list[tuple[object, ...]] = []
    for t in (await db.scalars(select(TrendTag))).all():
        rows.append(("tag", t.tag_id, t.score, t.accounts, t.uses, t.history, t.review))
    for s in (await db.scalars(select(TrendStatus))).all():
        rows.append(("status", s.post_id, s.score, s.engaged, s.review))
    for link in (await db.scalars(select(TrendLink))).all():
        rows.append(("link", link.url, link.score, link.accounts, link.history, link.review))
    return sorted(rows, key=repr)


async def test_refresh__run_twice_at_the_same_moment__same_rows(db: AsyncSession) -> None:
    # Given scored candidates, one of them approved
    w = await trending_world(db)
    now = utcnow()
    await trends.refresh(db, now)
    await db.commit()
    await trends.decide(db, mod(w), "tags", w.tag.id, "approve")
    first = await snapshot(db)
    # When the refresh runs again for the same moment
    await trends.refresh(db, now)
    await db.commit()
    # Then nothing changed: no duplicate rows, same scores, the decision kept
    assert await snapshot(db) == first
    assert len(first) == 4


async def test_refresh_job__run_by_the_worker_twice__idempotent(
    db: AsyncSession, rt: Runtime
) -> None:
    # Given trending candidates and the periodic job registered
    await trending_world(db)
    assert "trends.refresh" in worker.PERIODIC_JOBS and "trends.refresh" in queue.HANDLERS
    # When a worker runs the job, and then runs it again
    for _ in range(2):
        await queue.enqueue(db, "trends.refresh")
        await db.commit()
        assert await worker.run_once(rt.sessions, "test-worker") == 1
    # Then the job succeeded both times and there is one row per candidate
    assert await db.scalar(select(func.count()).select_from(Job)) == 0
    assert await db.scalar(select(func.count()).select_from(TrendTag)) == 1
    assert await db.scalar(select(func.count()).select_from(TrendStatus)) == 2
    assert await db.scalar(select(func.count()).select_from(TrendLink)) == 1


async def test_refresh__candidates_that_stop_scoring__decisions_kept_pending_forgotten(
    db: AsyncSession,
) -> None:
    # Given scored candidates, the tag approved and the link left pending
    w = await trending_world(db)
    await refreshed(db)
    await trends.decide(db, mod(w), "tags", w.tag.id, "approve")
    # When the job runs three days later, when nothing scores any more
    await trends.refresh(db, utcnow() + timedelta(days=3))
    await db.commit()
    # Then the approved tag keeps its decision at score 0, the undecided rows are gone
    row = await db.get(TrendTag, w.tag.id)
    assert row is not None and row.score == 0 and row.review == ReviewState.ALLOWED
    assert await db.scalar(select(func.count()).select_from(TrendLink)) == 0
    assert await db.scalar(select(func.count()).select_from(TrendStatus)) == 0
    assert await shown(db) == (set(), set(), set())
    # And when #harvest bursts again, it trends without a new review
    await refreshed(db)
    assert (await shown(db))[0] == {"harvest"}


# --- who sees which trending posts --------------------------------------------------------


async def test_trending_statuses__one_per_author__blocks_and_mutes_respected(
    db: AsyncSession,
) -> None:
    # Given two approved trending posts by the farmer and one by the baker
    w = await trending_world(db)
    baker = await person(db, "baker")
    bread = await post(db, baker, "fresh loaves")
    for fan in w.fans:
        await posts.like(db, viewer(fan), bread.id)
    await refreshed(db)
    for p in (w.hit, w.second, bread):
        await trends.decide(db, mod(w), "statuses", p.id, "approve")
    # Then anyone sees one post per author: the farmer's best, and the baker's
    assert (await shown(db))[1] == {w.hit.id, bread.id}
    # And someone who blocks the farmer sees only the baker's, someone muting the baker only
    # the farmer's, and someone the baker blocked never sees the baker's
    blocker, muter, pest = [await person(db, n) for n in ("blocker", "muter", "pest")]
    await graph.block(db, blocker.id, w.author.id)
    await graph.mute(db, muter.id, baker.id)
    await graph.block(db, baker.id, pest.id)
    assert (await shown(db, viewer(blocker)))[1] == {bread.id}
    assert (await shown(db, viewer(muter)))[1] == {w.hit.id}
    assert (await shown(db, viewer(pest)))[1] == {w.hit.id}
    # And when the farmer's best is rejected, their next best takes its place
    await trends.decide(db, mod(w), "statuses", w.hit.id, "reject")
    assert (await shown(db))[1] == {w.second.id, bread.id}


async def test_trending_statuses__silenced_author__drops_out_at_once(db: AsyncSession) -> None:
    # Given an approved trending post
    w = await trending_world(db)
    await refreshed(db)
    await trends.decide(db, mod(w), "statuses", w.hit.id, "approve")
    assert (await shown(db))[1] == {w.hit.id}
    # When its author is silenced (before the job runs again)
    w.author.silenced_at = utcnow()
    await db.commit()
    # Then it no longer trends
    assert (await shown(db))[1] == set()


# --- the moderators' page -----------------------------------------------------------------


async def test_admin_trends__members_get_403_visitors_sign_in(db: AsyncSession, settings) -> None:  # type: ignore[no-untyped-def]
    # Given a pending trending tag
    w = await trending_world(db)
    await refreshed(db)
    async with browser(settings) as b:
        # When a visitor opens the page, they are sent to sign in
        r = await b.get("/admin/trends")
        assert r.status_code == 303 and "/auth/sign_in" in r.headers["location"]
        # When a member opens it or sends its forms with a valid CSRF token, they get 403
        await b.sign_in("farmer")
        assert (await b.get("/admin/trends")).status_code == 403
        await b.get("/home")
        r = await b.post(f"/admin/trends/tags/{w.tag.id}/approve")
        assert r.status_code == 403
        await b.get("/home")
        r = await b.post("/admin/trends/settings", {"auto_approve": "on"})
        assert r.status_code == 403
    # Then nothing changed
    tag_id = w.tag.id
    db.expire_all()
    row = await db.get(TrendTag, tag_id)
    assert row is not None and row.review == ReviewState.PENDING
    assert not await trends.auto_approve(db)


async def test_admin_trends__admin_reviews_from_the_page(db: AsyncSession, settings) -> None:  # type: ignore[no-untyped-def]
    # Given pending candidates
    w = await trending_world(db)
    await refreshed(db)
    async with browser(settings) as b:
        await b.sign_in("boss")
        # When the admin opens the trends page
        page = await b.get("/admin/trends")
        # Then it lists the candidates with their scores and decision buttons
        assert page.status_code == 200
        assert "#harvest" in page.text and LINK in page.text
        assert f'action="/admin/trends/tags/{w.tag.id}/approve"' in page.text
        assert f'action="/admin/trends/statuses/{w.hit.id}/reject"' in page.text
        assert 'href="/admin/trends" aria-current="page"' in page.text
        # When they approve the tag without a CSRF token, nothing happens
        r = await b.client.post(f"/admin/trends/tags/{w.tag.id}/approve")
        assert r.status_code == 403
        # When they approve it with the form
        r = await b.post(f"/admin/trends/tags/{w.tag.id}/approve")
        assert r.status_code == 303 and r.headers["location"].startswith("/admin/trends?")
        # And reject the link, and switch on automatic approval
        link_id = await db.scalar(select(TrendLink.id))
        r = await b.post(f"/admin/trends/links/{link_id}/reject")
        assert r.status_code == 303
        r = await b.post("/admin/trends/settings", {"auto_approve": "on"})
        assert r.status_code == 303
        page = await b.get("/admin/trends?notice=saved")
        assert "Trend settings saved." in page.text
        # Unknown kinds, decisions and ids are 404s
        for url in ("/admin/trends/people/1/approve", f"/admin/trends/tags/{w.tag.id}/promote",
                    "/admin/trends/tags/1/approve"):  # fmt: skip
            assert (await b.post(url)).status_code == 404, url
    # Then the tag trends, the link never does, and the post trends by automatic approval
    hit_id = w.hit.id
    db.expire_all()
    tags, statuses, links = await shown(db)
    assert tags == {"harvest"} and links == set() and statuses == {hit_id}
    assert (await db.get(TrendSettings, 1)) is not None
