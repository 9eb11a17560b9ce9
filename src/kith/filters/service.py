"""Keyword filters: create, list, edit, delete, and apply them to posts about to be shown."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.db import utcnow
from kith.errors import NotFound, ValidationFailed
from kith.filters.models import Filter, FilterKeyword
from kith.posts.presenter import PostView
from kith.runtime import runtime_of
from kith.search import service as search

CONTEXTS = ("home", "notifications", "public", "thread", "account")
ACTIONS = ("warn", "hide")
MAX_KEYWORDS = 50


@dataclass(frozen=True)
class FilterInput:
    """A filter as a person writes it: keywords are (text, whole_word) pairs, `expires_in` is
    seconds from now (None: never)."""

    title: str
    keywords: list[tuple[str, bool]]
    contexts: list[str]
    action: str = "warn"
    expires_in: int | None = None


def _checked(data: FilterInput) -> FilterInput:
    """The input trimmed, or ValidationFailed naming the field to fix."""
    title = data.title.strip()
    if not 1 <= len(title) <= 100:
        raise ValidationFailed("Give the filter a title (at most 100 characters).", field="title")
    if not data.contexts or any(c not in CONTEXTS for c in data.contexts):
        raise ValidationFailed("Choose where the filter applies.", field="context")
    if data.action not in ACTIONS:
        raise ValidationFailed("A filter warns or hides.", field="filter_action")
    words = list(dict.fromkeys((k.strip(), w) for k, w in data.keywords if k.strip()))
    if not words or len(words) > MAX_KEYWORDS or any(len(k) > 200 for k, _ in words):
        raise ValidationFailed(
            "Add 1–50 words or phrases of at most 200 characters.", field="keywords"
        )
    if data.expires_in is not None and not 0 < data.expires_in <= 365 * 86400:
        raise ValidationFailed("Expire within a year, or never.", field="expires_in")
    return FilterInput(title, words, sorted(set(data.contexts)), data.action, data.expires_in)


def _expiry(expires_in: int | None) -> datetime | None:
    return utcnow() + timedelta(seconds=expires_in) if expires_in else None


async def create_filter(
    db: AsyncSession,
    viewer: policy.Viewer,
    *,
    title: str,
    keywords: list[tuple[str, bool]],
    contexts: list[str],
    action: str = "warn",
    expires_in: int | None = None,
) -> Filter:
    """Add a filter with its keywords ((text, whole_word) pairs)."""
    assert viewer.account_id is not None
    data = _checked(FilterInput(title, keywords, contexts, action, expires_in))
    f = Filter(
        account_id=viewer.account_id,
        title=data.title,
        contexts=data.contexts,
        action=data.action,
        expires_at=_expiry(data.expires_in),
    )
    db.add(f)
    await db.flush()
    for k, whole in data.keywords:
        db.add(FilterKeyword(filter_id=f.id, keyword=k, whole_word=whole))
    await db.commit()
    await _changed(db, viewer)
    return f


async def get_filter(
    db: AsyncSession, viewer: policy.Viewer, filter_id: int
) -> tuple[Filter, list[FilterKeyword]]:
    """One of the viewer's filters with its keywords; NotFound for anyone else's."""
    f = await db.get(Filter, filter_id)
    if f is None or viewer.account_id is None or f.account_id != viewer.account_id:
        raise NotFound("No such filter.")
    kws = (
        await db.scalars(
            select(FilterKeyword).where(FilterKeyword.filter_id == f.id).order_by(FilterKeyword.id)
        )
    ).all()
    return f, list(kws)


async def update_filter(
    db: AsyncSession,
    viewer: policy.Viewer,
    filter_id: int,
    data: FilterInput,
    *,
    keep_expiry: bool = False,
) -> Filter:
    """Replace a filter's title, keywords, contexts, action and (unless `keep_expiry`) expiry."""
    f, _ = await get_filter(db, viewer, filter_id)
    data = _checked(data)
    f.title = data.title
    f.contexts = data.contexts
    f.action = data.action
    if not keep_expiry:
        f.expires_at = _expiry(data.expires_in)
    await db.execute(delete(FilterKeyword).where(FilterKeyword.filter_id == f.id))
    for k, whole in data.keywords:
        db.add(FilterKeyword(filter_id=f.id, keyword=k, whole_word=whole))
    await db.commit()
    await _changed(db, viewer)
    return f


async def list_filters(
    db: AsyncSession, viewer: policy.Viewer
) -> list[tuple[Filter, list[FilterKeyword]]]:
    """The viewer's filters with their keywords, expired ones included (marked by expires_at)."""
    fs = list(
        (
            await db.scalars(
                select(Filter).where(Filter.account_id == viewer.account_id).order_by(Filter.id)
            )
        ).all()
    )
    if not fs:
        return []
    kws = (
        await db.scalars(
            select(FilterKeyword).where(FilterKeyword.filter_id.in_([f.id for f in fs]))
        )
    ).all()
    return [(f, [k for k in kws if k.filter_id == f.id]) for f in fs]


async def delete_filter(db: AsyncSession, viewer: policy.Viewer, filter_id: int) -> None:
    """Delete one of the viewer's filters (NotFound for anyone else's)."""
    f, _ = await get_filter(db, viewer, filter_id)
    await db.execute(delete(Filter).where(Filter.id == f.id))
    await db.commit()
    await _changed(db, viewer)


async def _changed(db: AsyncSession, viewer: policy.Viewer) -> None:
    """After commit: tell the viewer's open streams their filters changed."""
    await runtime_of(db).bus.publish(f"user:{viewer.account_id}", {"type": "filters_changed"})


def _pattern(keyword: str, whole_word: bool) -> re.Pattern[str]:
    body = re.escape(keyword)
    return re.compile(rf"(?<!\w){body}(?!\w)" if whole_word else body, re.IGNORECASE)


async def active_rules(
    db: AsyncSession, viewer: policy.Viewer, context: str
) -> list[tuple[Filter, list[re.Pattern[str]]]]:
    """The viewer's unexpired filters for a context, compiled."""
    if viewer.account_id is None:
        return []
    now = utcnow()
    fs = (
        await db.scalars(
            select(Filter).where(
                Filter.account_id == viewer.account_id,
                or_(Filter.expires_at.is_(None), Filter.expires_at > now),
            )
        )
    ).all()
    fs = [f for f in fs if context in f.contexts]
    if not fs:
        return []
    kws = (
        await db.scalars(
            select(FilterKeyword).where(FilterKeyword.filter_id.in_([f.id for f in fs]))
        )
    ).all()
    return [
        (f, [_pattern(k.keyword, k.whole_word) for k in kws if k.filter_id == f.id]) for f in fs
    ]


def matches(view: PostView, patterns: list[re.Pattern[str]]) -> bool:
    """Does any pattern occur in the shown post's text (the same text search finds it by)?"""
    haystack = search.post_document(view.shown.post)
    return any(p.search(haystack) for p in patterns)


async def apply(
    db: AsyncSession, viewer: policy.Viewer, views: list[PostView], *, context: str
) -> list[PostView]:
    """Drop posts a "hide" filter matches; mark those a "warn" filter matches (view.filtered).
    The viewer's own posts are never filtered."""
    rules = await active_rules(db, viewer, context)
    if not rules:
        return views
    kept = []
    for v in views:
        if v.shown.is_own:
            kept.append(v)
            continue
        hit = [f for f, pats in rules if matches(v, pats)]
        if any(f.action == "hide" for f in hit):
            continue
        v.filtered = [f.title for f in hit]
        v.filter_hits = hit
        kept.append(v)
    return kept
