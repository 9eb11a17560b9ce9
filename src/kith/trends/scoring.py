"""How trends are scored: the formulas, as pure functions, and the queries that gather the
counts they need. docs/trends.md states the same formulas in words; keep the two in step.

Only posts `kith.policy.trendable_clause` admits count: public (not unlisted, not followers-only,
not direct), not boosts, by discoverable accounts that are neither silenced nor suspended.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urldefrag, urlsplit, urlunsplit

from sqlalchemy import ColumnElement, and_, func, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from kith import policy, text
from kith.accounts.models import Account
from kith.db import id_for_time
from kith.posts.models import Like, Post, PostTag

K = TypeVar("K", bound=Hashable)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class Rules:
    """The knobs of the formulas (module constants in effect; tests may pass their own)."""

    window: timedelta = timedelta(hours=24)  # "today" for tags and links: a rolling day
    baseline_days: int = 7  # the usual day is the mean of the 7 days before the window
    half_life: timedelta = timedelta(hours=6)  # a use counts half after 6 h, a quarter after 12
    min_accounts: int = 3  # fewer distinct accounts in the window never trend
    min_score: float = 1.0  # lower scores are not stored
    status_window: timedelta = timedelta(hours=48)  # older posts never trend
    status_half_life: timedelta = timedelta(hours=6)
    status_min_engaged: int = 3  # distinct accounts that liked or boosted
    history_days: int = 7  # days of history on Tag and PreviewCard entities


RULES = Rules()


def decay(age: timedelta, half_life: timedelta) -> float:
    """0.5 ** (age / half-life): 1 for something happening now, ½ one half-life ago."""
    return float(0.5 ** (max(age.total_seconds(), 0.0) / half_life.total_seconds()))


def surge_score(observed: float, expected: float, accounts: int, rules: Rules = RULES) -> float:
    """How far today's decayed account count is above the usual day's, Mastodon-style:
    (observed − expected)² / expected, or 0 when fewer than `min_accounts` distinct accounts
    took part or observed does not beat expected (expected is at least 1)."""
    expected = max(expected, 1.0)
    if accounts < rules.min_accounts or observed <= expected:
        return 0.0
    return (observed - expected) ** 2 / expected


def status_score(engaged: int, age: timedelta, rules: Rules = RULES) -> float:
    """(engaged − 1)² × decay(post age): engagement from distinct accounts, the faster the
    better since the post's age keeps halving it; 0 below `status_min_engaged` accounts."""
    if engaged < rules.status_min_engaged:
        return 0.0
    return (engaged - 1) ** 2 * decay(age, rules.status_half_life)


@dataclass
class UsageTrend:
    """A scored hashtag or link: today's counts, the baseline and the history to show."""

    accounts: int
    uses: int
    observed: float
    expected: float
    score: float
    history: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class StatusTrend:
    """A scored post."""

    post_id: int
    account_id: int
    engaged: int
    score: float


def _midnight(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def usage_trends(
    events: Iterable[tuple[K, int, datetime]], now: datetime, rules: Rules = RULES
) -> dict[K, UsageTrend]:
    """Score hashtags or links from their uses: (key, account id, time of the post).

    observed = Σ over the distinct accounts that used the key in the window of
    decay(now − their latest use); expected = mean distinct accounts per day over the
    `baseline_days` days before the window. Keys scoring under `min_score` are left out."""
    window_start = now - rules.window
    baseline_start = window_start - rules.baseline_days * DAY
    today = _midnight(now)
    latest: dict[K, dict[int, datetime]] = defaultdict(dict)
    uses: Counter[K] = Counter()
    baseline: dict[K, set[tuple[int, int]]] = defaultdict(set)
    day_uses: dict[K, Counter[int]] = defaultdict(Counter)
    day_accounts: dict[K, dict[int, set[int]]] = defaultdict(lambda: defaultdict(set))
    for key, account_id, at in events:
        if at > now or at <= baseline_start:
            continue
        if at >= window_start:
            seen = latest[key].get(account_id)
            latest[key][account_id] = at if seen is None else max(seen, at)
            uses[key] += 1
        else:
            baseline[key].add((int((window_start - at) / DAY), account_id))
        days_ago = (today - _midnight(at)).days
        if days_ago < rules.history_days:
            day_uses[key][days_ago] += 1
            day_accounts[key][days_ago].add(account_id)
    out: dict[K, UsageTrend] = {}
    for key, accounts in latest.items():
        observed = sum(decay(now - at, rules.half_life) for at in accounts.values())
        expected = max(1.0, len(baseline[key]) / rules.baseline_days)
        score = surge_score(observed, expected, len(accounts), rules)
        if score < rules.min_score:
            continue
        history = [
            {
                "day": str(int((today - d * DAY).timestamp())),
                "uses": str(day_uses[key][d]),
                "accounts": str(len(day_accounts[key][d])),
            }
            for d in range(rules.history_days)
        ]
        out[key] = UsageTrend(len(accounts), uses[key], observed, expected, score, history)
    return out


def _posted_between(post: Any, since: datetime, until: datetime) -> ColumnElement[bool]:
    """Posts created in [since, until]. Ids are never older than their post (an id is minted
    when the row is written), so the id bound is a safe, index-friendly pre-filter."""
    return and_(post.id >= id_for_time(since), post.created_at >= since, post.created_at <= until)


async def tag_trends(
    db: AsyncSession, now: datetime, rules: Rules = RULES
) -> dict[int, UsageTrend]:
    """Score every hashtag used by at least `min_accounts` distinct accounts in the window."""
    busy = (
        select(PostTag.tag_id)
        .join(Post, Post.id == PostTag.post_id)
        .where(_posted_between(Post, now - rules.window, now), policy.trendable_clause(Post))
        .group_by(PostTag.tag_id)
        .having(func.count(func.distinct(Post.account_id)) >= rules.min_accounts)
    )
    tag_ids = list((await db.scalars(busy)).all())
    if not tag_ids:
        return {}
    since = now - rules.window - rules.baseline_days * DAY
    rows = await db.execute(
        select(PostTag.tag_id, Post.account_id, Post.created_at)
        .join(Post, Post.id == PostTag.post_id)
        .where(
            PostTag.tag_id.in_(tag_ids),
            _posted_between(Post, since, now),
            policy.trendable_clause(Post),
        )
    )
    return usage_trends(((t, a, at) for t, a, at in rows.all()), now, rules)


def normalize_link(url: str) -> str:
    """One key per page: scheme and host lowercased, the #fragment dropped."""
    url = urldefrag(url).url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower()))


def _link_uses(rows: list[tuple[int, datetime, str]]) -> list[tuple[str, int, datetime]]:
    """(url, account, time) for every link in these posts' sources (CPU-bound: a thread)."""
    events = []
    for account_id, at, source in rows:
        for url in dict.fromkeys(normalize_link(u) for u in text.parse_text(source).links):
            events.append((url, account_id, at))
    return events


async def link_trends(
    db: AsyncSession, now: datetime, rules: Rules = RULES
) -> dict[str, UsageTrend]:
    """Score links shared in public posts, by distinct accounts, as for hashtags.

    There is no table of links yet: the sources of the last 8 days' public posts that mention
    "http" are parsed again on each run (in a thread, so the event loop stays free)."""
    since = now - rules.window - rules.baseline_days * DAY
    rows = await db.execute(
        select(Post.account_id, Post.created_at, Post.source).where(
            _posted_between(Post, since, now),
            policy.trendable_clause(Post),
            Post.source.ilike("%http%"),
        )
    )
    events = await asyncio.to_thread(_link_uses, [(a, at, s) for a, at, s in rows.all()])
    return usage_trends(events, now, rules)


async def status_trends(
    db: AsyncSession, now: datetime, rules: Rules = RULES
) -> dict[int, StatusTrend]:
    """Score recent public posts by the distinct accounts that liked or boosted them.

    Replies, posts behind a content warning and sensitive posts are left out (as Mastodon
    does), and so is engagement by the author or by silenced or suspended accounts."""
    candidate = aliased(Post)
    candidates = select(candidate.id).where(
        _posted_between(candidate, now - rules.status_window, now),
        policy.trendable_clause(candidate),
        candidate.in_reply_to_id.is_(None),
        candidate.spoiler_text == "",
        candidate.sensitive.is_(False),
    )
    boost = aliased(Post)
    engagements = union_all(
        select(Like.post_id.label("post_id"), Like.account_id.label("account_id")).where(
            Like.post_id.in_(candidates)
        ),
        select(boost.reblog_of_id.label("post_id"), boost.account_id.label("account_id")).where(
            boost.reblog_of_id.in_(candidates)
        ),
    ).subquery()
    engager = aliased(Account)
    rows = await db.execute(
        select(Post.id, Post.account_id, Post.created_at, func.count(func.distinct(engager.id)))
        .join(engagements, engagements.c.post_id == Post.id)
        .join(engager, engager.id == engagements.c.account_id)
        .where(
            engager.id != Post.account_id,
            engager.suspended_at.is_(None),
            engager.silenced_at.is_(None),
        )
        .group_by(Post.id, Post.account_id, Post.created_at)
    )
    out: dict[int, StatusTrend] = {}
    for post_id, author_id, created_at, engaged in rows.all():
        score = status_score(int(engaged), now - created_at, rules)
        if score >= rules.min_score:
            out[post_id] = StatusTrend(post_id, author_id, int(engaged), score)
    return out
