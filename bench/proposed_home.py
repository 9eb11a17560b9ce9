"""A proposed, faster Home query, measured by `bench/timelines.py --proposed`.

Kith does not use this module. It holds the change docs/benchmarks.md proposes to the owners of
src/kith/timelines/service.py and src/kith/policy.py, in a form the benchmark can swap in
(in the benchmark process and in the `kith serve` it starts), so the effect can be reproduced:

1. Home reads a bounded window of ids: posts of the followed accounts newer than
   `upper bound - 1 day`, then 7 days, then 30 days, then everything, stopping at the first
   window that fills the page. Ids are time-sortable, so a full page from a window is exactly
   the page the unbounded query returns; the database only ever sorts and filters about a
   day's worth of the followed accounts' posts instead of all of them.
2. The "boost's original is visible" and "boost's original is not muted" rules are written as
   NOT EXISTS at the top level instead of `reblog_of_id IS NULL OR EXISTS (...)`. Same
   meaning (a boost's original always exists: the foreign key cascades), but PostgreSQL can
   plan a top-level NOT EXISTS as an anti-join probing the primary key, while the OR form
   makes it hash the visibility of every post in the table on each query.
3. ("prebuilt" only) The Home statement is built once per process with bind parameters for
   the viewer, the time and the window, instead of once per request: building the policy's
   expression tree costs several milliseconds of CPU per call, more than the query itself.
   This needs the policy clauses to take the current time as a parameter (the mute rule
   below copies policy.muted_clause with `now` bound at execution).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    and_,
    bindparam,
    exists,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from kith import policy
from kith.db import UTCDateTime, id_for_time, utcnow
from kith.graph.models import Mute
from kith.posts.models import Post
from kith.timelines import service as timelines

WINDOWS: tuple[timedelta | None, ...] = (
    timedelta(days=1),
    timedelta(days=7),
    timedelta(days=30),
    None,
)


def post_visible_clause(viewer: policy.Viewer, post: object = Post) -> ColumnElement[bool]:
    """policy.post_visible_clause with the boost rule as a top-level NOT EXISTS."""
    p: object = post
    own = and_(policy._audience_clause(viewer, p), policy._author_not_suspended(p))
    if viewer.account_id is not None:
        own = and_(own, ~policy.blocked_between_clause(viewer.account_id, p.account_id))  # type: ignore[attr-defined]
    original = aliased(Post)
    orig_ok = and_(
        policy._audience_clause(viewer, original), policy._author_not_suspended(original)
    )
    if viewer.account_id is not None:
        orig_ok = and_(
            orig_ok, ~policy.blocked_between_clause(viewer.account_id, original.account_id)
        )
    hidden_original = exists(
        select(original.id).where(original.id == p.reblog_of_id, not_(orig_ok))  # type: ignore[attr-defined]
    )
    return and_(own, ~hidden_original)


def not_muted_clause(viewer: policy.Viewer, post: object = Post) -> ColumnElement[bool]:
    """policy.not_muted_clause with the boost rule as a top-level NOT EXISTS."""
    if viewer.account_id is None:
        return true()
    p: object = post
    original = aliased(Post)
    muted_original = exists(
        select(original.id).where(
            original.id == p.reblog_of_id,  # type: ignore[attr-defined]
            policy.muted_clause(viewer.account_id, original.account_id),
        )
    )
    return and_(~policy.muted_clause(viewer.account_id, p.account_id), ~muted_original)  # type: ignore[attr-defined]


_original_home = timelines.home


async def home(
    db: AsyncSession,
    viewer: policy.Viewer,
    *,
    max_id: int | None = None,
    min_id: int | None = None,
    since_id: int | None = None,
    limit: int | None = None,
) -> timelines.Page:
    """The viewer's Home, read through widening id windows (see the module docstring)."""
    if min_id is not None:  # "newer than": already bounded below by min_id
        return await _original_home(
            db, viewer, max_id=max_id, min_id=min_id, since_id=since_id, limit=limit
        )
    n = timelines.clamp_limit(limit)
    followed_tags = await timelines.follows_any_tag(db, viewer)
    base = timelines.home_query(viewer, followed_tags=followed_tags)
    top = max_id if max_id is not None else id_for_time(utcnow() + timedelta(minutes=5))
    page = timelines.Page([], None, None)
    for window in WINDOWS:
        floor = None if window is None else top - (int(window.total_seconds() * 1000) << 16)
        stmt = base if floor is None else base.where(Post.id >= floor)
        page = await timelines.paginate(
            db, stmt, max_id=max_id, min_id=None, since_id=since_id, limit=limit
        )
        if len(page.posts) == n or floor is None or (since_id is not None and floor <= since_id):
            return page
    return page


# --- variant "prebuilt": the statement built once, parameters bound per call ------------

_NOW = bindparam("now", type_=UTCDateTime())
_VIEWER = bindparam("viewer_id", type_=BigInteger())
_prebuilt: dict[bool, Select[Any]] = {}


def _muted_at_now(viewer_id: Any, author_id_col: Any) -> ColumnElement[bool]:
    """policy.muted_clause with the time as a bind parameter (so the clause can be reused)."""
    return exists().where(
        Mute.account_id == viewer_id,
        Mute.target_id == author_id_col,
        or_(Mute.expires_at.is_(None), Mute.expires_at > _NOW),
    )


def _prebuilt_home(followed_tags: bool) -> Select[Any]:
    stmt = _prebuilt.get(followed_tags)
    if stmt is None:
        saved = policy.muted_clause
        policy.muted_clause = _muted_at_now
        try:
            stmt = timelines.home_query(policy.Viewer(_VIEWER), followed_tags=followed_tags)
        finally:
            policy.muted_clause = saved
        stmt = (
            stmt.where(Post.id >= bindparam("floor", type_=BigInteger()))
            .where(Post.id < bindparam("ceiling", type_=BigInteger()))
            .order_by(Post.id.desc())
            .limit(bindparam("n"))
        )
        _prebuilt[followed_tags] = stmt
    return stmt


async def home_prebuilt(
    db: AsyncSession,
    viewer: policy.Viewer,
    *,
    max_id: int | None = None,
    min_id: int | None = None,
    since_id: int | None = None,
    limit: int | None = None,
) -> timelines.Page:
    """`home` with a statement built once per process (see the module docstring, point 3)."""
    if min_id is not None or since_id is not None or viewer.account_id is None:
        return await home(db, viewer, max_id=max_id, min_id=min_id, since_id=since_id, limit=limit)
    n = timelines.clamp_limit(limit)
    stmt = _prebuilt_home(await timelines.follows_any_tag(db, viewer))
    top = max_id if max_id is not None else id_for_time(utcnow() + timedelta(minutes=5))
    rows: list[Post] = []
    for window in WINDOWS:
        floor = 0 if window is None else top - (int(window.total_seconds() * 1000) << 16)
        params = {"viewer_id": viewer.account_id, "now": utcnow(), "floor": floor}
        params |= {"ceiling": top, "n": n}
        rows = list((await db.scalars(stmt, params)).all())
        if len(rows) == n or window is None:
            break
    return timelines.Page(
        posts=rows,
        older_max_id=rows[-1].id if len(rows) == n else None,
        newer_min_id=rows[0].id if rows else max_id,
    )


_saved: dict[str, Any] = {}


def install(variant: str = "window") -> None:
    """Swap a variant in, in this process (policy's callers look it up at call time)."""
    if not _saved:
        _saved.update(
            post_visible_clause=policy.post_visible_clause,
            not_muted_clause=policy.not_muted_clause,
            home=timelines.home,
        )
    policy.post_visible_clause = post_visible_clause
    policy.not_muted_clause = not_muted_clause
    timelines.home = home_prebuilt if variant == "prebuilt" else home


def uninstall() -> None:
    """Put Kith's own functions back."""
    if _saved:
        policy.post_visible_clause = _saved["post_visible_clause"]
        policy.not_muted_clause = _saved["not_muted_clause"]
        timelines.home = _saved["home"]
