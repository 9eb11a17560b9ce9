"""A community's feed (new, active, top of a day, a week or all time), its pinned threads, and
"My communities": the threads of every community one is an active member of.

Each feed lists threads (posts addressed to the community, not the replies that joined them)
approved there, that `kith.policy` lets the viewer see and that they do not mute. The
formulas are published in docs/communities.md; change them there too.

- new: newest first, paged by post id (max_id / since_id / min_id) like the timelines.
- active: among the ACTIVE_CANDIDATES threads with the most recent activity (a new thread or
  reply), ranked by log10(3 + likes + boosts + replies) / (hours since last activity + 2)^1.8,
  paged by offset.
- top: threads started in the window (day, week, all), ranked by likes + boosts + replies,
  newest first on ties, paged by offset.

Statements are built once per process with the viewer and bounds as bound parameters
(building the policy's clause tree costs more CPU than running it)."""

from __future__ import annotations

import enum
import functools
import math
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import BigInteger, Integer, Select, bindparam, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.communities.models import (
    Community,
    CommunityPost,
    CommunityPostState,
    Membership,
    MemberState,
)
from kith.db import EPOCH, UTCDateTime, id_for_time, one_of, utcnow
from kith.errors import Forbidden, ValidationFailed
from kith.posts.models import Post
from kith.timelines.service import HOME_WINDOWS, MAX_POST_ID, Page, clamp_limit

ACTIVE_CANDIDATES = 300
MAX_OFFSET = 1000


class Sort(enum.StrEnum):
    NEW = "new"
    ACTIVE = "active"
    TOP = "top"


class TopWindow(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    ALL = "all"


_WINDOWS = {TopWindow.DAY: timedelta(days=1), TopWindow.WEEK: timedelta(days=7)}


def _viewer_of(signed_in: bool) -> policy.Viewer:
    if not signed_in:
        return policy.ANONYMOUS
    return policy.Viewer(bindparam("viewer_id", type_=BigInteger()))  # type: ignore[arg-type]


def _seen(signed_in: bool) -> list[Any]:
    """The policy's clauses on Post for the viewer bound as `viewer_id` at `now`."""
    viewer = _viewer_of(signed_in)
    now = bindparam("now", type_=UTCDateTime())
    return [policy.post_visible_clause(viewer, Post), policy.not_muted_clause(viewer, Post, now)]


def _threads_of_community() -> list[Any]:
    return [
        CommunityPost.community_id == bindparam("community_id", type_=BigInteger()),
        CommunityPost.state == CommunityPostState.APPROVED,
        CommunityPost.is_thread == true(),
    ]


@functools.cache
def _new_statement(signed_in: bool, ascending: bool) -> Select[Any]:
    """A page of a community's threads between `floor` and `ceiling` (exclusive)."""
    order = CommunityPost.post_id.asc() if ascending else CommunityPost.post_id.desc()
    return (
        select(Post)
        .join(CommunityPost, CommunityPost.post_id == Post.id)
        .where(
            *_threads_of_community(),
            CommunityPost.post_id > bindparam("floor", type_=BigInteger()),
            CommunityPost.post_id < bindparam("ceiling", type_=BigInteger()),
            *_seen(signed_in),
        )
        .order_by(order)
        .limit(bindparam("n", type_=Integer()))
    )


# Ranked orders read their candidates as bare columns, without the policy (cheap), rank
# them, and then ask the policy about the candidates only, and load only the page's posts.


@functools.cache
def _active_candidates() -> Select[int, int, int, int, int]:
    """The most recently active threads, with what the rank needs."""
    return (
        select(
            CommunityPost.post_id,
            CommunityPost.active_id,
            CommunityPost.thread_replies,
            Post.likes_count,
            Post.reblogs_count,
        )
        .join(Post, Post.id == CommunityPost.post_id)
        .where(*_threads_of_community())
        .order_by(CommunityPost.active_id.desc())
        .limit(ACTIVE_CANDIDATES)
    )


# likes + boosts + replies, stored (triggers of migration 0006) so that an index sorts by it.
_TOP_SCORE = CommunityPost.score


@functools.cache
def _top_candidates() -> Select[Any]:
    """The `k` best threads started since `floor`, best first."""
    return (
        select(CommunityPost.post_id)
        .where(
            *_threads_of_community(),
            CommunityPost.post_id >= bindparam("floor", type_=BigInteger()),
        )
        .order_by(_TOP_SCORE.desc(), CommunityPost.post_id.desc())
        .limit(bindparam("k", type_=Integer()))
    )


@functools.cache
def _top_statement(signed_in: bool) -> Select[Any]:
    """`top` with the policy on every thread: when the viewer may not see many of the best."""
    return (
        select(Post.id)
        .join(CommunityPost, CommunityPost.post_id == Post.id)
        .where(
            *_threads_of_community(),
            CommunityPost.post_id >= bindparam("floor", type_=BigInteger()),
            *_seen(signed_in),
        )
        .order_by(_TOP_SCORE.desc(), CommunityPost.post_id.desc())
        .offset(bindparam("offset", type_=Integer()))
        .limit(bindparam("n", type_=Integer()))
    )


@functools.cache
def _visible_statement(signed_in: bool, dialect_name: str) -> Select[Any]:
    """The posts bound as `ids` that the viewer may see and does not mute."""
    return select(Post).where(one_of(Post.id, "ids", dialect_name), *_seen(signed_in))


async def _visible(db: AsyncSession, viewer: policy.Viewer, ids: list[int]) -> list[Post]:
    """The posts of `ids` the viewer may see, in the order of `ids`."""
    if not ids:
        return []
    params = _params(viewer, ids=ids)
    statement = _visible_statement(viewer.account_id is not None, db.get_bind().dialect.name)
    rows = await db.scalars(statement, params)
    by_id = {p.id: p for p in rows.all()}
    return [by_id[i] for i in ids if i in by_id]


async def _ranked_page(
    db: AsyncSession, viewer: policy.Viewer, ranked: list[int], offset: int, n: int
) -> list[Post]:
    """The posts at [offset, offset + n) of the ranked ones the viewer may see. The policy is
    asked about the first offset + 2n only, and about all of them when too few of those
    pass: a prefix of the ranking holding offset + n visible posts holds the whole page."""
    head = ranked[: offset + 2 * n]
    visible = await _visible(db, viewer, head)
    if len(visible) < offset + n and len(ranked) > len(head):
        visible = await _visible(db, viewer, ranked)
    return visible[offset : offset + n]


async def _load(db: AsyncSession, ids: list[int]) -> list[Post]:
    """The posts with these ids, in the given order."""
    if not ids:
        return []
    by_id = {p.id: p for p in (await db.scalars(select(Post).where(Post.id.in_(ids)))).all()}
    return [by_id[i] for i in ids if i in by_id]


async def _check_may_read(db: AsyncSession, viewer: policy.Viewer, community: Community) -> None:
    if not await policy.can_see_community(db, viewer, community):
        raise Forbidden("Only members see this community's posts.")


def _params(viewer: policy.Viewer, **more: Any) -> dict[str, Any]:
    return {"viewer_id": viewer.account_id, "now": utcnow(), **more}


async def community_feed(
    db: AsyncSession,
    viewer: policy.Viewer,
    community: Community,
    *,
    sort: str = Sort.NEW,
    window: str = TopWindow.DAY,
    max_id: int | None = None,
    min_id: int | None = None,
    since_id: int | None = None,
    offset: int = 0,
    limit: int | None = None,
    flair_id: int | None = None,
) -> Page:
    """One page of the community's feed in the chosen order (see the module's formulas),
    only the threads wearing `flair_id` when given (`communities.flairs`). Forbidden for a
    private community's non-members; ValidationFailed for an unknown sort, window or an
    offset out of range."""
    try:
        sort = Sort(sort)
    except ValueError:
        raise ValidationFailed("Sort by new, active or top.", field="sort") from None
    if not 0 <= offset <= MAX_OFFSET:
        raise ValidationFailed(f"Use an offset between 0 and {MAX_OFFSET}.", field="offset")
    await _check_may_read(db, viewer, community)
    n = clamp_limit(limit)
    signed_in = viewer.account_id is not None
    if sort == Sort.NEW:
        return await _new_page(db, viewer, community, max_id, min_id, since_id, n, flair_id)
    if sort == Sort.ACTIVE:
        active = _flaired(cast(Select[Any], _active_candidates()), flair_id)
        rows = (await db.execute(active, {"community_id": community.id})).all()
        now = utcnow()
        ranked = sorted(
            rows,
            key=lambda r: (active_rank(r[3] + r[4] + r[2], r[1], now), r[1]),
            reverse=True,
        )
        page = await _ranked_page(db, viewer, [r[0] for r in ranked], offset, n)
        return _offset_page(page, offset, n)
    try:
        span = _WINDOWS.get(TopWindow(window))
    except ValueError:
        raise ValidationFailed("Choose day, week or all.", field="window") from None
    floor = 0 if span is None else id_for_time(utcnow() - span)
    # The best offset + 2n first: exact when enough of them are visible (nearly always).
    k = offset + 2 * n
    params = {"community_id": community.id, "floor": floor, "k": k}
    best = list((await db.scalars(_flaired(_top_candidates(), flair_id), params)).all())
    visible = await _visible(db, viewer, best)
    if len(visible) >= offset + n or len(best) < k:
        return _offset_page(visible[offset : offset + n], offset, n)
    params = _params(viewer, community_id=community.id, floor=floor, offset=offset, n=n)
    top = _flaired(_top_statement(signed_in), flair_id)
    page_ids = list((await db.scalars(top, params)).all())
    return _offset_page(await _load(db, page_ids), offset, n)


def _flaired(stmt: Select[Any], flair_id: int | None) -> Select[Any]:
    """A feed statement narrowed to one flair's threads (a new statement: the cached one,
    shared by every unfiltered page, stays as it is)."""
    return stmt if flair_id is None else stmt.where(CommunityPost.flair_id == flair_id)


def _offset_page(posts: list[Post], offset: int, n: int) -> Page:
    """A ranked page: there is no id cursor, the next page is at `offset + n`
    (`older_max_id` carries that offset; None at the end)."""
    return Page(
        posts=posts, older_max_id=offset + n if len(posts) == n else None, newer_min_id=None
    )


def time_of_id(post_id: int) -> datetime:
    """When an id was made (ids are time-sortable: `db.id_for_time`'s inverse)."""
    return EPOCH + timedelta(milliseconds=post_id >> 16)


def active_rank(score: int, active_id: int, now: datetime) -> float:
    """log10(3 + score) / (hours since last activity + 2)^1.8, where score = likes + boosts +
    replies: engagement counts, recency counts more."""
    hours = max(0.0, (now - time_of_id(active_id)).total_seconds() / 3600)
    return math.log10(3 + max(0, score)) / (hours + 2) ** 1.8


async def _new_page(
    db: AsyncSession,
    viewer: policy.Viewer,
    community: Community,
    max_id: int | None,
    min_id: int | None,
    since_id: int | None,
    n: int,
    flair_id: int | None = None,
) -> Page:
    signed_in = viewer.account_id is not None
    ceiling = max_id if max_id is not None else MAX_POST_ID
    if min_id is not None:  # the page just above min_id: oldest first, shown newest first
        params = _params(viewer, community_id=community.id, floor=min_id, ceiling=ceiling, n=n)
        stmt = _flaired(_new_statement(signed_in, True), flair_id)
        rows = list((await db.scalars(stmt, params)).all())
        rows.reverse()
        return Page(rows, rows[-1].id if rows else None, rows[0].id if rows else min_id)
    floor = since_id if since_id is not None else -1
    params = _params(viewer, community_id=community.id, floor=floor, ceiling=ceiling, n=n)
    stmt = _flaired(_new_statement(signed_in, False), flair_id)
    rows = list((await db.scalars(stmt, params)).all())
    return Page(
        posts=rows,
        older_max_id=rows[-1].id if len(rows) == n else None,
        newer_min_id=rows[0].id if rows else max_id,
    )


@functools.cache
def _pinned_statement(signed_in: bool) -> Select[Any]:
    return (
        select(Post)
        .join(CommunityPost, CommunityPost.post_id == Post.id)
        .where(
            CommunityPost.community_id == bindparam("community_id", type_=BigInteger()),
            CommunityPost.state == CommunityPostState.APPROVED,
            CommunityPost.pinned_at.isnot(None),
            *_seen(signed_in),
        )
        .order_by(CommunityPost.pinned_at.desc())
    )


async def pinned_threads(
    db: AsyncSession, viewer: policy.Viewer, community: Community
) -> list[Post]:
    """The community's pinned threads the viewer may see, most recently pinned first (shown
    above its feed, not inside it)."""
    await _check_may_read(db, viewer, community)
    params = _params(viewer, community_id=community.id)
    stmt = _pinned_statement(viewer.account_id is not None)
    return list((await db.scalars(stmt, params)).all())


# --- My communities ------------------------------------------------------------------------


@functools.cache
def _mine_statement(ascending: bool) -> Select[Any]:
    """Threads approved in any community the viewer (`viewer_id`) is an active member of,
    between `floor` and `ceiling`: the candidates are read per community from the feed
    index (one range scan each), then the policy filters the page."""
    me = bindparam("viewer_id", type_=BigInteger())
    floor = bindparam("floor", type_=BigInteger())
    ceiling = bindparam("ceiling", type_=BigInteger())
    candidates = (
        select(CommunityPost.post_id)
        .join(Membership, Membership.community_id == CommunityPost.community_id)
        .where(
            Membership.account_id == me,
            Membership.state == MemberState.ACTIVE,
            CommunityPost.state == CommunityPostState.APPROVED,
            CommunityPost.is_thread == true(),
            CommunityPost.post_id > floor,
            CommunityPost.post_id < ceiling,
        )
    )
    order = Post.id.asc() if ascending else Post.id.desc()
    return (
        select(Post)
        .where(Post.id.in_(candidates), Post.id > floor, Post.id < ceiling, *_seen(True))
        .order_by(order)
        .limit(bindparam("n", type_=Integer()))
    )


async def my_communities(
    db: AsyncSession,
    viewer: policy.Viewer,
    *,
    max_id: int | None = None,
    min_id: int | None = None,
    since_id: int | None = None,
    limit: int | None = None,
) -> Page:
    """The threads of every community the viewer is an active member of, newest first (a
    cross-post once). Read through widening id windows below the cursor (1 day, 7, 30, then
    everything) like Home, stopping at the first that fills the page."""
    if viewer.account_id is None:
        raise Forbidden("Sign in to see your communities.")
    n = clamp_limit(limit)
    ceiling = max_id if max_id is not None else MAX_POST_ID
    if min_id is not None:
        params = _params(viewer, floor=min_id, ceiling=ceiling, n=n)
        rows = list((await db.scalars(_mine_statement(True), params)).all())
        rows.reverse()
        return Page(rows, rows[-1].id if rows else None, rows[0].id if rows else min_id)
    lowest = since_id if since_id is not None else -1
    top = min(ceiling, id_for_time(utcnow() + timedelta(minutes=5)))
    rows = []
    for window in HOME_WINDOWS:
        floor = lowest if window is None else max(lowest, top - id_for_time(EPOCH + window))
        params = _params(viewer, floor=floor, ceiling=ceiling, n=n)
        rows = list((await db.scalars(_mine_statement(False), params)).all())
        if len(rows) == n or floor == lowest:
            break
    return Page(
        posts=rows,
        older_max_id=rows[-1].id if len(rows) == n else None,
        newer_min_id=rows[0].id if rows else max_id,
    )
