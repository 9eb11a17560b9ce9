"""Filters: create, list, edit, delete them (with their keywords and targeted statuses, also
one at a time), and apply them to posts about to be shown."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.db import utcnow
from kith.errors import NotFound, ValidationFailed
from kith.filters.models import Filter, FilterKeyword, FilterStatus
from kith.posts.models import Post
from kith.posts.presenter import PostView
from kith.runtime import runtime_of
from kith.search import service as search
from kith.timelines.shapes import PostRef

CONTEXTS = ("home", "notifications", "public", "thread", "account")
ACTIONS = ("warn", "hide")
MAX_KEYWORDS = 50
MAX_KEYWORD_LENGTH = 200


@dataclass(frozen=True)
class FilterInput:
    """A filter as a person writes it: keywords are (text, whole_word) pairs, `expires_in` is
    seconds from now (None: never)."""

    title: str
    keywords: list[tuple[str, bool]]
    contexts: list[str]
    action: str = "warn"
    expires_in: int | None = None


def _checked(data: FilterInput, *, keywords_required: bool = True) -> FilterInput:
    """The input trimmed, or ValidationFailed naming the field to fix. A filter may go without
    keywords only when it targets statuses instead (`keywords_required=False`)."""
    title = data.title.strip()
    if not 1 <= len(title) <= 100:
        raise ValidationFailed("Give the filter a title (at most 100 characters).", field="title")
    if not data.contexts or any(c not in CONTEXTS for c in data.contexts):
        raise ValidationFailed("Choose where the filter applies.", field="context")
    if data.action not in ACTIONS:
        raise ValidationFailed("A filter warns or hides.", field="filter_action")
    words = list(dict.fromkeys((k.strip(), w) for k, w in data.keywords if k.strip()))
    too_few = not words and keywords_required
    if too_few or len(words) > MAX_KEYWORDS or any(len(k) > MAX_KEYWORD_LENGTH for k, _ in words):
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
    keywords_required: bool = True,
) -> Filter:
    """Add a filter with its keywords ((text, whole_word) pairs). Mastodon clients create a
    filter without keywords and then add statuses to it: they pass `keywords_required=False`."""
    assert viewer.account_id is not None
    data = _checked(
        FilterInput(title, keywords, contexts, action, expires_in),
        keywords_required=keywords_required,
    )
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
    keywords_required: bool = True,
) -> Filter:
    """Replace a filter's title, keywords, contexts, action and (unless `keep_expiry`) expiry.
    Keywords that stay the same keep their rows (and ids, which clients hold on to). A filter
    that targets statuses may be left without keywords."""
    f, existing = await get_filter(db, viewer, filter_id)
    targets_statuses = bool(await statuses_of(db, [f.id]))
    data = _checked(data, keywords_required=keywords_required and not targets_statuses)
    f.title = data.title
    f.contexts = data.contexts
    f.action = data.action
    if not keep_expiry:
        f.expires_at = _expiry(data.expires_in)
    wanted = set(data.keywords)
    gone = [k.id for k in existing if (k.keyword, k.whole_word) not in wanted]
    if gone:
        await db.execute(delete(FilterKeyword).where(FilterKeyword.id.in_(gone)))
    kept = {(k.keyword, k.whole_word) for k in existing}
    for k, whole in data.keywords:
        if (k, whole) not in kept:
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
            select(FilterKeyword)
            .where(FilterKeyword.filter_id.in_([f.id for f in fs]))
            .order_by(FilterKeyword.id)
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


# --- a filter's keywords, one at a time ---------------------------------------------------


def _keyword_text(keyword: str) -> str:
    """A keyword trimmed, or ValidationFailed on `keyword`."""
    text = keyword.strip()
    if not 1 <= len(text) <= MAX_KEYWORD_LENGTH:
        raise ValidationFailed(
            f"keyword must be 1–{MAX_KEYWORD_LENGTH} characters long.", field="keyword"
        )
    return text


async def add_keyword(
    db: AsyncSession, viewer: policy.Viewer, filter_id: int, keyword: str, whole_word: bool
) -> FilterKeyword:
    """Add a word or phrase to one of the viewer's filters (at most MAX_KEYWORDS, no twins)."""
    f, existing = await get_filter(db, viewer, filter_id)
    text = _keyword_text(keyword)
    if len(existing) >= MAX_KEYWORDS:
        raise ValidationFailed(f"keyword: a filter has at most {MAX_KEYWORDS}.", field="keyword")
    if any(k.keyword == text and k.whole_word == whole_word for k in existing):
        raise ValidationFailed("keyword: this filter already has it.", field="keyword")
    row = FilterKeyword(filter_id=f.id, keyword=text, whole_word=whole_word)
    db.add(row)
    await db.commit()
    await _changed(db, viewer)
    return row


async def get_keyword(db: AsyncSession, viewer: policy.Viewer, keyword_id: int) -> FilterKeyword:
    """One keyword of one of the viewer's filters; NotFound for anyone else's."""
    row = await db.get(FilterKeyword, keyword_id)
    if row is None:
        raise NotFound("No such keyword.")
    f = await db.get(Filter, row.filter_id)
    if f is None or viewer.account_id is None or f.account_id != viewer.account_id:
        raise NotFound("No such keyword.")
    return row


async def update_keyword(
    db: AsyncSession,
    viewer: policy.Viewer,
    keyword_id: int,
    *,
    keyword: str | None = None,
    whole_word: bool | None = None,
) -> FilterKeyword:
    """Change a keyword's text and/or whole-word matching (what is not given stays)."""
    row = await get_keyword(db, viewer, keyword_id)
    text = row.keyword if keyword is None else _keyword_text(keyword)
    whole = row.whole_word if whole_word is None else whole_word
    twin = await db.scalar(
        select(FilterKeyword.id).where(
            FilterKeyword.filter_id == row.filter_id,
            FilterKeyword.id != row.id,
            FilterKeyword.keyword == text,
            FilterKeyword.whole_word == whole,
        )
    )
    if twin is not None:
        raise ValidationFailed("keyword: this filter already has it.", field="keyword")
    row.keyword, row.whole_word = text, whole
    await db.commit()
    await _changed(db, viewer)
    return row


async def delete_keyword(db: AsyncSession, viewer: policy.Viewer, keyword_id: int) -> None:
    """Remove a keyword from one of the viewer's filters (the filter stays, as on Mastodon)."""
    row = await get_keyword(db, viewer, keyword_id)
    await db.execute(delete(FilterKeyword).where(FilterKeyword.id == row.id))
    await db.commit()
    await _changed(db, viewer)


# --- statuses a filter targets ------------------------------------------------------------

MAX_STATUSES = 1000  # per filter; a filter is a person's list, not a database


async def statuses_of(db: AsyncSession, filter_ids: list[int]) -> dict[int, list[FilterStatus]]:
    """The statuses each of these filters targets, oldest addition first."""
    if not filter_ids:
        return {}
    rows = await db.scalars(
        select(FilterStatus).where(FilterStatus.filter_id.in_(filter_ids)).order_by(FilterStatus.id)
    )
    out: dict[int, list[FilterStatus]] = {}
    for row in rows.all():
        out.setdefault(row.filter_id, []).append(row)
    return out


async def add_status(
    db: AsyncSession, viewer: policy.Viewer, filter_id: int, post_id: int | None
) -> FilterStatus:
    """Make one of the viewer's filters target a status they can see. A status that does not
    exist and one they may not see get the same answer (existence does not leak)."""
    f, _ = await get_filter(db, viewer, filter_id)
    target = await db.get(Post, post_id) if post_id is not None else None
    if target is None or not await policy.can_see_post(db, viewer, target):
        raise ValidationFailed("status_id: no such status.", field="status_id")
    count = await db.scalar(
        select(func.count()).select_from(FilterStatus).where(FilterStatus.filter_id == f.id)
    )
    if (count or 0) >= MAX_STATUSES:
        raise ValidationFailed(
            f"status_id: a filter targets at most {MAX_STATUSES} statuses.", field="status_id"
        )
    duplicate = await db.scalar(
        select(FilterStatus.id).where(
            FilterStatus.filter_id == f.id, FilterStatus.post_id == target.id
        )
    )
    if duplicate is not None:
        raise ValidationFailed("status_id: this filter already targets it.", field="status_id")
    row = FilterStatus(filter_id=f.id, post_id=target.id)
    db.add(row)
    try:
        await db.commit()
    except IntegrityError:  # the same status added twice at once: the other request won
        await db.rollback()
        raise ValidationFailed(
            "status_id: this filter already targets it.", field="status_id"
        ) from None
    await _changed(db, viewer)
    return row


async def list_statuses(
    db: AsyncSession, viewer: policy.Viewer, filter_id: int
) -> list[FilterStatus]:
    """The statuses one of the viewer's filters targets."""
    f, _ = await get_filter(db, viewer, filter_id)
    return (await statuses_of(db, [f.id])).get(f.id, [])


async def get_status(
    db: AsyncSession, viewer: policy.Viewer, filter_status_id: int
) -> FilterStatus:
    """One targeted status of one of the viewer's filters; NotFound for anyone else's."""
    row = await db.get(FilterStatus, filter_status_id)
    if row is None:
        raise NotFound("No such filtered status.")
    f = await db.get(Filter, row.filter_id)
    if f is None or viewer.account_id is None or f.account_id != viewer.account_id:
        raise NotFound("No such filtered status.")
    return row


async def delete_status(db: AsyncSession, viewer: policy.Viewer, filter_status_id: int) -> None:
    """Stop one of the viewer's filters targeting a status."""
    row = await get_status(db, viewer, filter_status_id)
    await db.execute(delete(FilterStatus).where(FilterStatus.id == row.id))
    await db.commit()
    await _changed(db, viewer)


# --- applying filters -----------------------------------------------------------------------


def _pattern(keyword: str, whole_word: bool) -> re.Pattern[str]:
    body = re.escape(keyword)
    return re.compile(rf"(?<!\w){body}(?!\w)" if whole_word else body, re.IGNORECASE)


@dataclass
class Rule:
    """One active filter, ready to test posts against: its compiled keywords and the ids of
    the statuses it targets (only those among the posts at hand, when they were given)."""

    filter: Filter
    keywords: list[tuple[str, re.Pattern[str]]]
    status_ids: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class FilterHit:
    """Why a filter caught a post (Mastodon's FilterResult): the keywords found in its text,
    and the targeted statuses it is (the post itself, or the post a boost shares)."""

    filter: Filter
    keyword_matches: list[str]
    status_matches: list[int]


async def active_rules(
    db: AsyncSession,
    viewer: policy.Viewer,
    context: str,
    *,
    post_ids: Collection[int] | None = None,
) -> list[Rule]:
    """The viewer's unexpired filters for a context, compiled. Targeted statuses are loaded
    only among `post_ids` when given (a person may target many; a page shows a few)."""
    if viewer.account_id is None:
        return []
    rules = await active_rules_of(db, [viewer.account_id], context, post_ids=post_ids)
    return rules.get(viewer.account_id, [])


async def active_rules_of(
    db: AsyncSession,
    account_ids: Collection[int],
    context: str,
    *,
    post_ids: Collection[int] | None = None,
) -> dict[int, list[Rule]]:
    """`active_rules` for many people at once (a live post sent to everyone connected):
    {account id: rules}, leaving out people with none."""
    if not account_ids:
        return {}
    now = utcnow()
    fs = (
        await db.scalars(
            select(Filter)
            .where(
                Filter.account_id.in_(list(account_ids)),
                or_(Filter.expires_at.is_(None), Filter.expires_at > now),
            )
            # One order for one person or many: a Status's `filtered` must not depend on
            # whether it was rendered alone or for everyone connected.
            .order_by(Filter.id)
        )
    ).all()
    fs = [f for f in fs if context in f.contexts]
    if not fs:
        return {}
    ids = [f.id for f in fs]
    kws = (
        await db.scalars(
            select(FilterKeyword).where(FilterKeyword.filter_id.in_(ids)).order_by(FilterKeyword.id)
        )
    ).all()
    targeted = select(FilterStatus.filter_id, FilterStatus.post_id).where(
        FilterStatus.filter_id.in_(ids)
    )
    if post_ids is not None:
        targeted = targeted.where(FilterStatus.post_id.in_(list(post_ids)))
    rules = {
        f.id: Rule(
            f, [(k.keyword, _pattern(k.keyword, k.whole_word)) for k in kws if k.filter_id == f.id]
        )
        for f in fs
    }
    for filter_id, post_id in (await db.execute(targeted)).all():
        rules[filter_id].status_ids.add(post_id)
    out: dict[int, list[Rule]] = {}
    for f in fs:
        out.setdefault(f.account_id, []).append(rules[f.id])
    return out


def hit(view: PostView, rule: Rule) -> FilterHit | None:
    """How `rule` catches the post in `view`, or None (see `hit_post`)."""
    return hit_post(view.post, view.shown.post, rule)


def hit_post(post: Post | PostRef, shown: Post, rule: Rule) -> FilterHit | None:
    """How `rule` catches `post` (whose text is `shown`'s: the original of a boost), or None.
    A boost is caught by its own id or by the id of the post it shares, as on Mastodon."""
    haystack = search.post_document(shown)
    words = [k for k, pattern in rule.keywords if pattern.search(haystack)]
    ids = sorted({post.id, shown.id} & rule.status_ids)
    if not words and not ids:
        return None
    return FilterHit(rule.filter, words, ids)


def _post_ids(views: list[PostView]) -> set[int]:
    return {v.post.id for v in views} | {v.shown.post.id for v in views}


async def apply(
    db: AsyncSession, viewer: policy.Viewer, views: list[PostView], *, context: str
) -> list[PostView]:
    """Drop posts a "hide" filter catches; mark those a "warn" filter catches (view.filtered,
    view.filter_hits). A filter catches a post by keyword or by targeting it. The viewer's own
    posts are never filtered."""
    if not views:
        return views
    rules = await active_rules(db, viewer, context, post_ids=_post_ids(views))
    if not rules:
        return views
    kept = []
    for v in views:
        hits = judge(v, rules)
        if hits is None:
            continue
        if hits:
            v.filtered = [h.filter.title for h in hits]
            v.filter_hits = hits
        kept.append(v)
    return kept


def judge(view: PostView, rules: list[Rule]) -> list[FilterHit] | None:
    """What `apply` decides for one post and one person's rules: None when a "hide" filter
    catches it, else the hits of "warn" filters (empty: not filtered). Own posts: []."""
    return judge_post(view.post, view.shown.post, view.shown.is_own, rules)


def judge_post(
    post: Post | PostRef, shown: Post, own: bool, rules: list[Rule]
) -> list[FilterHit] | None:
    """`judge` for a post row (`shown`: the original of a boost; `own`: the viewer wrote it)."""
    if own or not rules:
        return []
    hits = [h for h in (hit_post(post, shown, r) for r in rules) if h is not None]
    if any(h.filter.action == "hide" for h in hits):
        return None
    return hits
