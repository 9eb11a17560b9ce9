"""Trends: recompute the scores (a periodic job), let moderators review candidates, and read
what may trend publicly. Nothing trends before a moderator allows it, unless the instance
approves automatically; a rejected candidate never trends (see docs/trends.md)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from kith import policy
from kith.accounts.models import Account
from kith.db import utcnow
from kith.errors import NotFound, ValidationFailed
from kith.jobs.queue import job_handler
from kith.moderation.roles import require_moderator
from kith.posts.models import Post, Tag
from kith.trends import scoring
from kith.trends.models import ReviewState, TrendLink, TrendSettings, TrendStatus, TrendTag

KINDS = ("tags", "statuses", "links")
DECISIONS = {"approve": ReviewState.ALLOWED, "reject": ReviewState.REJECTED}
REFRESH_JOB = "trends.refresh"
BOARD_LIMIT = 50


@dataclass(frozen=True)
class RefreshSummary:
    """How many candidates of each kind scored in a refresh."""

    tags: int
    statuses: int
    links: int


def url_key(url: str) -> str:
    """The unique key of a link row (URLs can be longer than an index allows)."""
    return hashlib.sha256(url.encode()).hexdigest()


# --- computing ----------------------------------------------------------------------------


async def _retire(db: AsyncSession, rows: list[Any], now: datetime) -> None:
    """Rows whose candidate no longer scores: forget undecided ones, keep decisions at 0."""
    for row in rows:
        if row.review == ReviewState.PENDING:
            await db.delete(row)
        else:
            row.score, row.computed_at = 0.0, now


def _still_listed(model: Any, key_col: Any, keys: list[Any]) -> ColumnElement[bool]:
    """Rows the refresh must look at: the ones scoring now, scoring before, or undecided."""
    return or_(key_col.in_(keys), model.score > 0, model.review == ReviewState.PENDING)


async def _store_tags(
    db: AsyncSession, found: dict[int, scoring.UsageTrend], now: datetime
) -> None:
    rows = await db.scalars(
        select(TrendTag).where(_still_listed(TrendTag, TrendTag.tag_id, list(found)))
    )
    existing = {r.tag_id: r for r in rows.all()}
    for tag_id, t in found.items():
        row = existing.pop(tag_id, None)
        if row is None:
            row = TrendTag(tag_id=tag_id, review=ReviewState.PENDING, first_seen_at=now)
            db.add(row)
        row.score, row.computed_at = t.score, now
        row.accounts, row.uses, row.expected, row.history = (
            t.accounts,
            t.uses,
            t.expected,
            t.history,
        )
    await _retire(db, list(existing.values()), now)


async def _store_links(
    db: AsyncSession, found: dict[str, scoring.UsageTrend], now: datetime
) -> None:
    keyed = {url_key(url): (url, t) for url, t in found.items()}
    rows = await db.scalars(
        select(TrendLink).where(_still_listed(TrendLink, TrendLink.url_key, list(keyed)))
    )
    existing = {r.url_key: r for r in rows.all()}
    for key, (url, t) in keyed.items():
        row = existing.pop(key, None)
        if row is None:
            row = TrendLink(url_key=key, url=url, review=ReviewState.PENDING, first_seen_at=now)
            db.add(row)
        row.score, row.computed_at = t.score, now
        row.accounts, row.uses, row.expected, row.history = (
            t.accounts,
            t.uses,
            t.expected,
            t.history,
        )
    await _retire(db, list(existing.values()), now)


async def _store_statuses(
    db: AsyncSession, found: dict[int, scoring.StatusTrend], now: datetime
) -> None:
    rows = await db.scalars(
        select(TrendStatus).where(_still_listed(TrendStatus, TrendStatus.post_id, list(found)))
    )
    existing = {r.post_id: r for r in rows.all()}
    for post_id, s in found.items():
        row = existing.pop(post_id, None)
        if row is None:
            row = TrendStatus(
                post_id=post_id,
                account_id=s.account_id,
                review=ReviewState.PENDING,
                first_seen_at=now,
            )
            db.add(row)
        row.score, row.computed_at, row.engaged = s.score, now, s.engaged
    await _retire(db, list(existing.values()), now)


async def refresh(db: AsyncSession, now: datetime | None = None) -> RefreshSummary:
    """Recompute every trend score as of `now`, in the caller's transaction (the job's worker
    commits it together with the job's removal). Running it twice changes nothing more."""
    now = now or utcnow()
    tags = await scoring.tag_trends(db, now)
    statuses = await scoring.status_trends(db, now)
    links = await scoring.link_trends(db, now)
    await _store_tags(db, tags, now)
    await _store_statuses(db, statuses, now)
    await _store_links(db, links, now)
    await db.flush()
    return RefreshSummary(len(tags), len(statuses), len(links))


@job_handler(REFRESH_JOB)
async def refresh_job(db: AsyncSession, payload: dict[str, Any]) -> None:
    """The periodic job (every 10 minutes, see kith.jobs.worker.PERIODIC_JOBS)."""
    await refresh(db)


# --- settings and review ------------------------------------------------------------------


async def auto_approve(db: AsyncSession) -> bool:
    """Does this instance let candidates trend before a moderator has looked at them?"""
    row = await db.get(TrendSettings, 1)
    return bool(row and row.auto_approve)


async def set_auto_approve(db: AsyncSession, moderator: policy.Viewer, on: bool) -> None:
    """Switch automatic approval on or off (moderators only)."""
    require_moderator(moderator)
    row = await db.get(TrendSettings, 1)
    if row is None:
        row = TrendSettings(id=1)
        db.add(row)
    row.auto_approve, row.updated_at = on, utcnow()
    await db.commit()


_MODELS: dict[str, Any] = {"tags": TrendTag, "statuses": TrendStatus, "links": TrendLink}


async def decide(
    db: AsyncSession, moderator: policy.Viewer, kind: str, item_id: int, decision: str
) -> None:
    """Approve or reject one candidate: a tag (by tag id), a status (by post id) or a link
    (by its trend row id). The decision stays until a moderator changes it."""
    require_moderator(moderator)
    if kind not in _MODELS:
        raise NotFound()
    if decision not in DECISIONS:
        raise ValidationFailed("Approve or reject.", field="decision")
    row = await db.get(_MODELS[kind], item_id)
    if row is None:
        raise NotFound()
    row.review, row.reviewed_at, row.reviewed_by_id = (
        DECISIONS[decision],
        utcnow(),
        moderator.account_id,
    )
    await db.commit()


@dataclass
class ReviewBoard:
    """What the moderators' page lists: candidates scoring now, by kind and review state
    (each list highest score first)."""

    tags: dict[str, list[tuple[TrendTag, Tag]]] = field(default_factory=dict)
    statuses: dict[str, list[tuple[TrendStatus, Post, Account]]] = field(default_factory=dict)
    links: dict[str, list[TrendLink]] = field(default_factory=dict)
    auto_approve: bool = False


async def review_board(db: AsyncSession, moderator: policy.Viewer) -> ReviewBoard:
    """Candidates scoring now, for moderators: pending, allowed and rejected."""
    require_moderator(moderator)
    board = ReviewBoard(auto_approve=await auto_approve(db))
    for state in ReviewState:
        tags = await db.execute(
            select(TrendTag, Tag)
            .join(Tag, Tag.id == TrendTag.tag_id)
            .where(TrendTag.review == state, TrendTag.score > 0)
            .order_by(TrendTag.score.desc(), TrendTag.tag_id)
            .limit(BOARD_LIMIT)
        )
        board.tags[state] = [(t, tag) for t, tag in tags.all()]
        # Only posts that are still public and trendable: moderators get no wider view here.
        # (An alias: the policy clause's own Account subqueries must not correlate to it.)
        author = aliased(Account)
        statuses = await db.execute(
            select(TrendStatus, Post, author)
            .join(Post, Post.id == TrendStatus.post_id)
            .join(author, author.id == Post.account_id)
            .where(
                TrendStatus.review == state,
                TrendStatus.score > 0,
                policy.trendable_clause(Post),
            )
            .order_by(TrendStatus.score.desc(), TrendStatus.post_id)
            .limit(BOARD_LIMIT)
        )
        board.statuses[state] = [(t, p, a) for t, p, a in statuses.all()]
        links = await db.scalars(
            select(TrendLink)
            .where(TrendLink.review == state, TrendLink.score > 0)
            .order_by(TrendLink.score.desc(), TrendLink.id)
            .limit(BOARD_LIMIT)
        )
        board.links[state] = list(links.all())
    return board


async def pending_count(db: AsyncSession) -> int:
    """Candidates scoring now that no moderator has reviewed yet."""
    total = 0
    for model in _MODELS.values():
        total += (
            await db.scalar(
                select(func.count())
                .select_from(model)
                .where(model.review == ReviewState.PENDING, model.score > 0)
            )
            or 0
        )
    return total


# --- what trends publicly -----------------------------------------------------------------


def _shown(model: Any, auto: bool) -> ColumnElement[bool]:
    """Allowed candidates that score now (and undecided ones when approval is automatic)."""
    states = [ReviewState.ALLOWED, ReviewState.PENDING] if auto else [ReviewState.ALLOWED]
    return model.review.in_(states) & (model.score > 0)


async def trending_tags(
    db: AsyncSession, *, limit: int, offset: int = 0
) -> list[tuple[TrendTag, Tag]]:
    """Hashtags trending now, highest score first."""
    rows = await db.execute(
        select(TrendTag, Tag)
        .join(Tag, Tag.id == TrendTag.tag_id)
        .where(_shown(TrendTag, await auto_approve(db)))
        .order_by(TrendTag.score.desc(), TrendTag.tag_id)
        .offset(offset)
        .limit(limit)
    )
    return [(t, tag) for t, tag in rows.all()]


async def trending_links(db: AsyncSession, *, limit: int, offset: int = 0) -> list[TrendLink]:
    """Links trending now, highest score first."""
    rows = await db.scalars(
        select(TrendLink)
        .where(_shown(TrendLink, await auto_approve(db)))
        .order_by(TrendLink.score.desc(), TrendLink.id)
        .offset(offset)
        .limit(limit)
    )
    return list(rows.all())


async def trending_statuses(
    db: AsyncSession, viewer: policy.Viewer, *, limit: int, offset: int = 0
) -> list[Post]:
    """Posts trending now that this viewer may see and does not mute, highest score first,
    at most one per author (their best among those the viewer may see)."""
    ranked = (
        select(
            TrendStatus.post_id,
            TrendStatus.score,
            func.row_number()
            .over(
                partition_by=Post.account_id,
                order_by=(TrendStatus.score.desc(), TrendStatus.post_id.desc()),
            )
            .label("rank"),
        )
        .join(Post, Post.id == TrendStatus.post_id)
        .where(
            _shown(TrendStatus, await auto_approve(db)),
            policy.trendable_clause(Post),
            policy.post_visible_clause(viewer, Post),
            policy.not_muted_clause(viewer, Post),
        )
        .subquery()
    )
    rows = await db.scalars(
        select(Post)
        .join(ranked, ranked.c.post_id == Post.id)
        .where(ranked.c.rank == 1)
        .order_by(ranked.c.score.desc(), Post.id.desc())
        .offset(offset)
        .limit(limit)
    )
    return list(rows.all())
