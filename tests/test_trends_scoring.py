"""Trend scoring: the formulas on known synthetic histories, and what counts toward them."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.db import utcnow
from kith.graph import service as graph
from kith.posts import service as posts
from kith.posts.models import Post, Tag, Visibility
from kith.trends import scoring
from kith.trends.scoring import RULES, surge_score, usage_trends
from tests.world import person, post, viewer

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=utcnow().tzinfo)
H = timedelta(hours=1)
D = timedelta(days=1)


def flat_baseline(key: str, per_day: int, now: datetime = NOW) -> list[tuple[str, int, datetime]]:
    """`per_day` distinct accounts using `key` once on each of the 7 days before `now`'s day."""
    return [
        (key, 1000 + n, now - RULES.window - d * D - 3 * H)
        for d in range(RULES.baseline_days)
        for n in range(per_day)
    ]


# --- the formulas -------------------------------------------------------------------------


def test_usage_trends__many_accounts_today_over_a_flat_baseline__trends() -> None:
    # Given #garden used by 2 accounts a day for a week, then by 12 accounts in the last hour
    events = flat_baseline("garden", 2) + [("garden", n, NOW - H / 2) for n in range(12)]
    # When scored
    trends = usage_trends(events, NOW)
    # Then it trends: observed ≈ 12·0.5^(0.5/6) against an expected 2 a day
    t = trends["garden"]
    assert t.accounts == 12 and t.uses == 12 and t.expected == 2.0
    assert abs(t.observed - 12 * 0.5 ** (0.5 / 6)) < 1e-9
    assert abs(t.score - (t.observed - 2.0) ** 2 / 2.0) < 1e-9
    assert t.score > 40


def test_usage_trends__one_account_many_times__does_not_trend() -> None:
    # Given one account posting #me 50 times in the last hours, over a quiet week
    events = [("me", 7, NOW - n * 5 * timedelta(minutes=1)) for n in range(50)]
    # Then #me does not trend: one account is below the minimum of distinct accounts
    assert usage_trends(events, NOW) == {}


def test_usage_trends__steady_usage__does_not_trend() -> None:
    # Given #news used by 10 accounts every day, spread over each day, today included
    events = [("news", 100 + n, NOW - d * D - n * 2 * H) for d in range(8) for n in range(10)]
    # Then #news does not trend: decayed, an ordinary day stays under the usual day
    assert usage_trends(events, NOW) == {}


def test_usage_trends__yesterdays_burst__decays() -> None:
    # Given a burst of 10 accounts using #eclipse at one moment, over a quiet baseline
    burst_at = NOW - 20 * H
    events = flat_baseline("eclipse", 1, burst_at) + [("eclipse", n, burst_at) for n in range(10)]
    # When scored right after the burst, 6 hours later, and 20 hours later
    fresh = usage_trends(events, burst_at)["eclipse"].score
    later = usage_trends(events, burst_at + 6 * H)["eclipse"].score
    # Then the score falls as the burst ages, and is gone by the next day
    assert fresh == (10 - 1) ** 2
    assert abs(later - (10 * 0.5 - 1) ** 2) < 1e-9
    assert "eclipse" not in usage_trends(events, NOW)


def test_usage_trends__history__counts_calendar_days_newest_first() -> None:
    # Given uses today and two days ago
    events = [
        ("t", 1, NOW - H),
        ("t", 2, NOW - 2 * H),
        ("t", 3, NOW - 3 * H),
        ("t", 1, NOW - 2 * D),
    ]
    # Then the history has 7 days, today first, with uses and distinct accounts
    history = usage_trends(events, NOW)["t"].history
    assert len(history) == 7
    assert history[0] == {"day": str(int(datetime(2025, 3, 10, tzinfo=NOW.tzinfo).timestamp())),
                          "uses": "3", "accounts": "3"}  # fmt: skip
    assert history[2]["uses"] == "1" and history[1]["uses"] == "0"


def test_surge_score__needs_observed_above_expected() -> None:
    assert surge_score(5.0, 5.0, 5) == 0.0
    assert surge_score(5.0, 0.2, 5) == 16.0  # expected is at least 1
    assert surge_score(9.0, 1.0, 2) == 0.0  # too few distinct accounts


def test_status_score__decays_with_the_posts_age() -> None:
    assert scoring.status_score(2, timedelta(0)) == 0.0
    assert scoring.status_score(5, timedelta(0)) == 16.0
    assert scoring.status_score(5, timedelta(hours=6)) == 8.0


# --- what counts, on the database ---------------------------------------------------------


async def people(db: AsyncSession, prefix: str, n: int) -> list[Account]:
    return [await person(db, f"{prefix}{i}") for i in range(n)]


async def backdate(db: AsyncSession, p: Post, when: datetime) -> None:
    await db.execute(update(Post).where(Post.id == p.id).values(created_at=when))
    await db.commit()


async def tag_id(db: AsyncSession, name: str) -> int:
    found = await db.scalar(select(Tag.id).where(Tag.name == name))
    assert found is not None
    return found


async def test_tag_trends__public_burst_trends_over_last_weeks_trickle(db: AsyncSession) -> None:
    # Given #compost used once a day last week, then by 5 accounts this hour
    now = utcnow()
    crowd = await people(db, "gardener", 5)
    for d in range(1, 8):
        old = await post(db, crowd[0], "turning the #compost")
        await backdate(db, old, now - d * D - 2 * H)
    for a in crowd:
        await post(db, a, "#compost is steaming today")
    # When the tags are scored
    trends = await scoring.tag_trends(db, utcnow())
    # Then #compost trends against a usual day of one account
    t = trends[await tag_id(db, "compost")]
    assert t.accounts == 5 and t.expected == 1.0 and t.score > 9
    assert t.history[0]["accounts"] == "5"


async def test_tag_trends__only_public_posts_of_discoverable_unsilenced_accounts_count(
    db: AsyncSession,
) -> None:
    # Given five accounts using #secret, but in followers-only, unlisted and direct posts
    crowd = await people(db, "p", 5)
    for a, vis in zip(
        crowd, [Visibility.PRIVATE, Visibility.UNLISTED, Visibility.DIRECT] * 2, strict=False
    ):
        await post(db, a, "#secret stuff", visibility=vis)
    # And #loud used publicly by two ordinary accounts, a silenced one, a suspended one and
    # one that opted out of discovery
    for a in crowd:
        await post(db, a, "#loud news")
    crowd[2].silenced_at = utcnow()
    crowd[3].suspended_at = utcnow()
    crowd[4].discoverable = False
    await db.commit()
    # When the tags are scored
    trends = await scoring.tag_trends(db, utcnow())
    # Then neither trends: #secret was never public, #loud has only two accounts that count
    assert trends == {}
    # And once the silenced account is pardoned, #loud (only) has its third account and trends
    crowd[2].silenced_at = None
    await db.commit()
    trends = await scoring.tag_trends(db, utcnow())
    assert (
        list(trends) == [await tag_id(db, "loud")]
        and trends[await tag_id(db, "loud")].accounts == 3
    )


async def test_status_trends__distinct_likers_and_boosters_count(db: AsyncSession) -> None:
    # Given a public post liked and boosted by four others, and liked by its author
    author, *fans = await people(db, "s", 5)
    hit = await post(db, author, "look at my pumpkin")
    for fan in fans:
        await posts.like(db, viewer(fan), hit.id)
    await posts.boost(db, viewer(fans[0]), hit.id)
    await posts.like(db, viewer(author), hit.id)
    # And a followers-only post that its fans, who follow the author, liked
    quiet = await post(db, author, "only for you", visibility=Visibility.PRIVATE)
    for fan in fans:
        await graph.follow(db, fan.id, author.id)
        await posts.like(db, viewer(fan), quiet.id)
    # When the posts are scored
    trends = await scoring.status_trends(db, utcnow())
    # Then the public post scores (4 distinct accounts; the author's like does not count)
    assert set(trends) == {hit.id}
    assert trends[hit.id].engaged == 4 and trends[hit.id].account_id == author.id
    assert quiet.id not in trends


async def test_status_trends__old_posts_and_silenced_fans_do_not_count(db: AsyncSession) -> None:
    # Given an old post liked by four accounts, and a new one liked by four silenced accounts
    author, *fans = await people(db, "o", 5)
    old = await post(db, author, "an old favourite")
    new = await post(db, author, "a new one")
    for fan in fans:
        await posts.like(db, viewer(fan), old.id)
        await posts.like(db, viewer(fan), new.id)
        fan.silenced_at = utcnow()
    await db.commit()
    await backdate(db, old, utcnow() - 49 * H)
    # When the posts are scored
    # Then neither trends
    assert await scoring.status_trends(db, utcnow()) == {}


async def test_link_trends__distinct_accounts_sharing_a_url(db: AsyncSession) -> None:
    # Given three accounts sharing the same page (one with a #fragment), one of them twice
    crowd = await people(db, "l", 3)
    await post(db, crowd[0], "read https://news.example/seeds#top now")
    await post(db, crowd[0], "again: https://news.example/seeds")
    await post(db, crowd[1], "[seed swap](https://news.example/seeds)")
    await post(db, crowd[2], "https://NEWS.example/seeds")
    # And another page shared by one account only, and in a followers-only post
    await post(db, crowd[1], "https://other.example/x")
    await post(db, crowd[2], "https://other.example/x", visibility=Visibility.PRIVATE)
    # When the links are scored
    trends = await scoring.link_trends(db, utcnow())
    # Then the seeds page trends, counted once per account
    assert list(trends) == ["https://news.example/seeds"]
    t = trends["https://news.example/seeds"]
    assert t.accounts == 3 and t.uses == 4
