"""Keyword filters: create, list, delete, and apply them to posts about to be shown."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy, text
from kith.db import utcnow
from kith.errors import NotFound, ValidationFailed
from kith.filters.models import Filter, FilterKeyword
from kith.posts.presenter import PostView

CONTEXTS = ("home", "notifications", "public", "thread", "account")
ACTIONS = ("warn", "hide")
MAX_KEYWORDS = 50


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
    title = title.strip()
    if not 1 <= len(title) <= 100:
        raise ValidationFailed("Give the filter a title (at most 100 characters).", field="title")
    if not contexts or any(c not in CONTEXTS for c in contexts):
        raise ValidationFailed("Choose where the filter applies.", field="context")
    if action not in ACTIONS:
        raise ValidationFailed("A filter warns or hides.", field="filter_action")
    words = [(k.strip(), w) for k, w in keywords if k.strip()]
    if not words or len(words) > MAX_KEYWORDS or any(len(k) > 200 for k, _ in words):
        raise ValidationFailed(
            "Add 1–50 words or phrases of at most 200 characters.", field="keywords"
        )
    if expires_in is not None and not 0 < expires_in <= 365 * 86400:
        raise ValidationFailed("Expire within a year, or never.", field="expires_in")
    f = Filter(
        account_id=viewer.account_id,
        title=title,
        contexts=sorted(set(contexts)),
        action=action,
        expires_at=utcnow() + timedelta(seconds=expires_in) if expires_in else None,
    )
    db.add(f)
    await db.flush()
    for k, whole in words:
        db.add(FilterKeyword(filter_id=f.id, keyword=k, whole_word=whole))
    await db.commit()
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
    f = await db.get(Filter, filter_id)
    if f is None or f.account_id != viewer.account_id:
        raise NotFound("No such filter.")
    await db.execute(delete(Filter).where(Filter.id == f.id))
    await db.commit()


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
    shown = view.shown.post
    haystack = "\n".join((text.html_to_text(shown.content_html), shown.spoiler_text))
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
        kept.append(v)
    return kept
