"""Timeline queries (fan-out on read): each one an indexed range scan filtered by kith.policy.

Pagination is by post id (time-sortable): `max_id` pages older, `min_id` pages newer, so a
page never skips or repeats a post when new ones arrive in between."""

from __future__ import annotations

import functools
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    and_,
    bindparam,
    exists,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from kith import db_plans, policy
from kith.accounts.models import Account
from kith.db import EPOCH, UTCDateTime, id_for_time, one_of, utcnow
from kith.media.models import MediaAttachment
from kith.posts.models import Pin, Post, PostTag, Tag
from kith.timelines import feeds, sources
from kith.timelines.models import TagFollow
from kith.timelines.shapes import ENTITIES, P, Shape

DEFAULT_LIMIT = 20
MAX_LIMIT = 40


@dataclass(frozen=True)
class Page(Generic[P]):
    """One page of posts, newest first, with cursors for the next pages."""

    posts: list[P]
    older_max_id: int | None  # pass as max_id for the next older page
    newer_min_id: int | None  # pass as min_id for newer posts


def clamp_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    return max(1, min(MAX_LIMIT, limit))


async def paginate(
    db: AsyncSession,
    stmt: Select[Any],
    *,
    max_id: int | None,
    min_id: int | None,
    since_id: int | None = None,
    limit: int | None,
    shape: Shape[P],
) -> Page[P]:
    """Run a post query (`select(Post)`) as one page: `max_id` older, `min_id` the page just
    newer, `since_id` everything newer (newest first)."""
    n = clamp_limit(limit)
    if max_id is not None:
        stmt = stmt.where(Post.id < max_id)
    if since_id is not None:
        stmt = stmt.where(Post.id > since_id)
    if min_id is not None:
        # The page just above min_id, oldest first from the database, shown newest first.
        newer = stmt.where(Post.id > min_id).order_by(Post.id.asc()).limit(n)
        rows = await shape.run(db, shape.of(newer))
        rows.reverse()
    else:
        rows = await shape.run(db, shape.of(stmt.order_by(Post.id.desc()).limit(n)))
    return Page(
        posts=rows,
        older_max_id=rows[-1].id if len(rows) == n or (min_id is not None and rows) else None,
        newer_min_id=rows[0].id if rows else min_id or max_id,
    )


def with_media_clause() -> ColumnElement[bool]:
    """SQL: the post has at least one attachment (only_media, the profile's Media tab)."""
    return exists().where(MediaAttachment.post_id == Post.id)


def home_query(
    viewer: policy.Viewer, *, followed_tags: bool = False, now: Any = None
) -> Select[Any]:
    """Posts for the viewer's Home: their own, those of accounts they follow (boosts only
    where they kept boosts on) and the threads of the communities they keep in Home; replies
    only when their own or addressed to them or someone they follow."""
    return select(Post).where(home_clause(viewer, followed_tags=followed_tags, now=now, post=Post))


def home_clause(
    viewer: policy.Viewer,
    *,
    followed_tags: bool,
    now: Any,
    post: Any = Post,
    communities: bool = True,
    window: tuple[Any, Any] | None = None,
    listed: bool = False,
    per_post: bool = False,
) -> ColumnElement[bool]:
    """SQL: `post` belongs in the viewer's Home (see `home_query`). The viewer may be a column
    (a batch over many viewers: `home_audience`). `communities=False` leaves community threads
    out (for a viewer who keeps none in Home); `window` and `listed` choose the statement's
    shape for a scan over posts (`sources.sources_clause`); `per_post`, for a statement that
    tests given posts (a feed's page, one post, its live audience), probes whom the viewer
    follows for each post instead of listing them (`sources.follows_clause`)."""
    me = viewer.account_id
    assert me is not None
    authors = sources.sources_clause(
        viewer,
        post,
        communities=communities,
        tags=followed_tags,
        window=window,
        listed=listed,
        per_post=per_post,
    )
    boosts_ok = or_(
        post.reblog_of_id.is_(None),
        post.account_id == me,
        sources.follows_clause(me, post.account_id, per_post=per_post, with_boosts=True),
    )
    replies_ok = or_(
        post.in_reply_to_account_id.is_(None),
        post.account_id == me,  # one's own replies, to anyone, are in one's Home
        post.in_reply_to_account_id == me,
        post.in_reply_to_account_id == post.account_id,
        sources.follows_clause(me, post.in_reply_to_account_id, per_post=per_post),
    )
    return and_(
        authors,
        boosts_ok,
        replies_ok,
        policy.post_visible_clause(viewer, post),
        policy.not_muted_clause(viewer, post, now=now),
    )


async def home(
    db: AsyncSession,
    viewer: policy.Viewer,
    *,
    max_id: int | None = None,
    min_id: int | None = None,
    since_id: int | None = None,
    limit: int | None = None,
    shape: Shape[P],
) -> Page[P]:
    """The viewer's Home timeline, its posts made `shape`.

    Read through widening id windows below the cursor (1 day, 7, 30, then everything),
    stopping at the first that fills the page: ids are time-sortable, so a full page from a
    window is exactly the page the unbounded query gives, and the database sorts and filters
    about a day of the followed accounts' posts instead of all of them (measured in
    bench/timelines.py: ~9x less time on SQLite)."""
    if min_id is not None or since_id is not None:  # already bounded below
        stmt = home_query(viewer, followed_tags=await follows_any_tag(db, viewer))
        return await paginate(
            db, stmt, max_id=max_id, min_id=min_id, since_id=since_id, limit=limit, shape=shape
        )
    n = clamp_limit(limit)
    top = max_id if max_id is not None else id_for_time(utcnow() + timedelta(minutes=5))
    rows, floor = await feeds.read(db, viewer, ceiling=top, n=n, shape=shape)
    if len(rows) == n:
        return Page(posts=rows, older_max_id=rows[-1].id, newer_min_id=rows[0].id)
    if floor is not None:  # the feed ran out: the rest is searched below its floor
        top = min(top, floor + 1)
    rows += await _searched_home(db, viewer, top=top, n=n - len(rows), shape=shape)
    return Page(
        posts=rows,
        older_max_id=rows[-1].id if len(rows) == n else None,
        newer_min_id=rows[0].id if rows else max_id,
    )


async def _searched_home(
    db: AsyncSession, viewer: policy.Viewer, *, top: int, n: int, shape: Shape[P]
) -> list[P]:
    """Up to `n` posts of the viewer's Home below `top`, searched among followed accounts'
    posts (no feed, or below its floor)."""
    listed = db.get_bind().dialect.name == "sqlite"  # the statement each does best
    stmt = _prebuilt_home(*await sources.home_sources(db, viewer), listed=listed, shape=shape)
    rows: list[P] = []
    for window in HOME_WINDOWS:
        floor = 0 if window is None else top - id_for_time(EPOCH + window)
        params = {
            "viewer_id": viewer.account_id,
            "now": utcnow(),
            "floor": floor,
            "ceiling": top,
            "n": n,
        }
        rows = await shape.run(db, stmt, params)
        if len(rows) == n:
            break
    return rows


@functools.cache
def _prebuilt_home(
    followed_tags: bool,
    communities: bool = False,
    *,
    listed: bool = False,
    shape: Shape[Any] = ENTITIES,
) -> Select[Any]:
    """The Home statement, built once per process with the viewer, the time and the window
    as bound parameters: building the policy's expression tree costs more CPU than running
    the query (bench/timelines.py measured ~4 ms per call). `communities`: the viewer keeps
    at least one community in Home; `listed`: the shape for SQLite (`sources.sources_clause`)."""
    viewer = policy.Viewer(bindparam("viewer_id", type_=BigInteger()))  # type: ignore[arg-type]
    now = bindparam("now", type_=UTCDateTime())
    floor = bindparam("floor", type_=BigInteger())
    ceiling = bindparam("ceiling", type_=BigInteger())
    clause = home_clause(
        viewer,
        followed_tags=followed_tags,
        now=now,
        communities=communities,
        window=(floor, ceiling),
        listed=listed,
    )
    return shape.of(
        select(Post)
        .where(clause, Post.id >= floor, Post.id < ceiling)
        .order_by(Post.id.desc())
        .limit(bindparam("n", type_=Integer()))
    )


HOME_WINDOWS: tuple[timedelta | None, ...] = (
    timedelta(days=1),
    timedelta(days=7),
    timedelta(days=30),
    None,
)


async def follows_any_tag(db: AsyncSession, viewer: policy.Viewer) -> bool:
    """Does the viewer follow at least one hashtag?"""
    if viewer.account_id is None:
        return False
    stmt = select(TagFollow.tag_id).where(TagFollow.account_id == viewer.account_id).limit(1)
    return (await db.scalar(stmt)) is not None


async def local(
    db: AsyncSession,
    viewer: policy.Viewer,
    *,
    max_id: int | None = None,
    min_id: int | None = None,
    since_id: int | None = None,
    limit: int | None = None,
    only_media: bool = False,
) -> Page[Post]:
    """All public posts of this instance's people (no unlisted posts, no boosts); with
    `only_media`, only those with attachments."""
    return await public(
        db,
        viewer,
        origin="local",
        max_id=max_id,
        min_id=min_id,
        since_id=since_id,
        limit=limit,
        only_media=only_media,
        shape=ENTITIES,
    )


ORIGINS = ("all", "local", "remote")


async def public(
    db: AsyncSession,
    viewer: policy.Viewer,
    *,
    origin: str = "all",
    max_id: int | None = None,
    min_id: int | None = None,
    since_id: int | None = None,
    limit: int | None = None,
    only_media: bool = False,
    shape: Shape[P],
) -> Page[P]:
    """Public posts known here (no unlisted posts, no boosts): from everywhere (the
    "federated" timeline), only this instance's people (`origin="local"`) or only other
    servers' (`"remote"`); with `only_media`, only those with attachments. Made `shape`."""
    assert origin in ORIGINS
    if min_id is None:  # the common pages: a statement built once per process
        n = clamp_limit(limit)
        params = {
            "viewer_id": viewer.account_id,
            "now": utcnow(),
            "floor": since_id if since_id is not None else -1,
            "ceiling": max_id if max_id is not None else MAX_POST_ID,
            "n": n,
        }
        stmt = _prebuilt_public(viewer.account_id is not None, only_media, origin, shape)
        rows = shape.make(db, await db_plans.read(db, stmt, params))
        return Page(
            posts=rows,
            older_max_id=rows[-1].id if len(rows) == n else None,
            newer_min_id=rows[0].id if rows else max_id,
        )
    stmt = _public_query(viewer, only_media=only_media, origin=origin)
    return await paginate(
        db, stmt, max_id=max_id, min_id=min_id, since_id=since_id, limit=limit, shape=shape
    )


MAX_POST_ID = 2**63 - 1


def _public_query(
    viewer: policy.Viewer, *, only_media: bool, origin: str, now: Any = None
) -> Select[Any]:
    stmt = select(Post).where(
        policy.publicly_listed_clause(viewer),
        policy.post_visible_clause(viewer),
        policy.not_muted_clause(viewer, now=now),
    )
    if origin == "local":
        stmt = stmt.where(exists().where(Account.id == Post.account_id, Account.domain == ""))
    elif origin == "remote":
        stmt = stmt.where(exists().where(Account.id == Post.account_id, Account.domain != ""))
    return stmt.where(with_media_clause()) if only_media else stmt


@functools.cache
def _prebuilt_public(
    signed_in: bool, only_media: bool, origin: str, shape: Shape[Any]
) -> Select[Any]:
    """The public timeline's statement with the viewer, the time and the id bounds as bound
    parameters, built once per process and shape (as `_prebuilt_home`)."""
    viewer = (
        policy.Viewer(bindparam("viewer_id", type_=BigInteger()))  # type: ignore[arg-type]
        if signed_in
        else policy.ANONYMOUS
    )
    now = bindparam("now", type_=UTCDateTime())
    return (
        _public_query(viewer, only_media=only_media, origin=origin, now=now)
        .with_only_columns(*shape.columns)  # for `db_plans.read` and `shape.make`
        .where(Post.id > bindparam("floor", type_=BigInteger()))
        .where(Post.id < bindparam("ceiling", type_=BigInteger()))
        .order_by(Post.id.desc())
        .limit(bindparam("n", type_=Integer()))
    )


async def hashtag(
    db: AsyncSession,
    viewer: policy.Viewer,
    tag_name: str,
    *,
    max_id: int | None = None,
    min_id: int | None = None,
    since_id: int | None = None,
    limit: int | None = None,
    only_media: bool = False,
    shape: Shape[P],
) -> Page[P]:
    """Public posts with this hashtag (with `only_media`, only those with attachments), made
    `shape`."""
    tag_id = await db.scalar(select(Tag.id).where(Tag.name == tag_name.casefold()))
    if tag_id is None:
        return Page([], None, None)
    stmt = (
        select(Post)
        .join(PostTag, PostTag.post_id == Post.id)
        .where(
            PostTag.tag_id == tag_id,
            policy.publicly_listed_clause(viewer),
            policy.post_visible_clause(viewer),
            policy.not_muted_clause(viewer),
        )
    )
    if only_media:
        stmt = stmt.where(with_media_clause())
    return await paginate(
        db, stmt, max_id=max_id, min_id=min_id, since_id=since_id, limit=limit, shape=shape
    )


async def profile(
    db: AsyncSession,
    viewer: policy.Viewer,
    account: Account,
    *,
    tab: str = "posts",
    max_id: int | None = None,
    min_id: int | None = None,
    limit: int | None = None,
    tagged: str | None = None,
) -> Page[Post]:
    """A profile's posts the viewer may see. Tabs: "posts" (with boosts, without replies to
    others), "replies" (everything), "media" (their own posts with attachments, no boosts).
    With `tagged`, only their posts carrying that hashtag (boosts carry none of their own)."""
    stmt = select(Post).where(Post.account_id == account.id, policy.post_visible_clause(viewer))
    if tagged is not None:
        tag_id = await db.scalar(select(Tag.id).where(Tag.name == tagged.lstrip("#").casefold()))
        if tag_id is None:
            return Page([], None, None)
        stmt = stmt.where(exists().where(PostTag.post_id == Post.id, PostTag.tag_id == tag_id))
    if tab == "posts":
        stmt = stmt.where(
            or_(Post.in_reply_to_account_id.is_(None), Post.in_reply_to_account_id == account.id)
        )
    elif tab == "media":
        stmt = stmt.where(with_media_clause())
    return await paginate(db, stmt, max_id=max_id, min_id=min_id, limit=limit, shape=ENTITIES)


async def pinned(db: AsyncSession, viewer: policy.Viewer, account: Account) -> list[Post]:
    """The account's pinned posts the viewer may see, most recently pinned first."""
    stmt = (
        select(Post)
        .join(Pin, Pin.post_id == Post.id)
        .where(Pin.account_id == account.id, policy.post_visible_clause(viewer))
        .order_by(Pin.created_at.desc())
    )
    return list((await db.scalars(stmt)).all())


@functools.cache
def _audience_statement(dialect_name: str) -> Select[Any]:
    """`home_clause` for the viewers bound as `viewer_ids` and the post bound as `post_id`."""
    who = aliased(Account)  # an alias: the policy's own subqueries on accounts stay apart
    viewer = policy.Viewer(who.id)  # type: ignore[arg-type]
    now = bindparam("now", type_=UTCDateTime())
    clause = home_clause(viewer, followed_tags=True, now=now, per_post=True)
    return (
        select(who.id)
        .join(Post, Post.id == bindparam("post_id", type_=BigInteger()))
        .where(one_of(who.id, "viewer_ids", dialect_name), clause)
    )


async def home_audience(db: AsyncSession, post_id: int, viewer_ids: Collection[int]) -> set[int]:
    """Which of these viewers have the post in their Home: `appears_in_home` for many viewers
    (the live streams of everyone connected) in one statement built once per process."""
    if not viewer_ids:
        return set()
    params = {"post_id": post_id, "viewer_ids": list(viewer_ids), "now": utcnow()}
    statement = _audience_statement(db.get_bind().dialect.name)
    return set((await db.scalars(statement, params)).all())


async def appears_in_home(db: AsyncSession, viewer: policy.Viewer, post_id: int) -> bool:
    """Would this post be in the viewer's Home? (The live "new posts" stream asks this.)"""
    followed_tags = await follows_any_tag(db, viewer)
    clause = home_clause(viewer, followed_tags=followed_tags, now=None, per_post=True)
    stmt = select(Post.id).where(clause, Post.id == post_id)
    return (await db.scalars(stmt.limit(1))).first() is not None


async def thread(
    db: AsyncSession, viewer: policy.Viewer, post: Post
) -> tuple[list[Post], list[tuple[Post, int]]]:
    """Context of a post: visible ancestors (root first) and visible descendants in tree order
    with their depth. Branches under a post the viewer can't see are left out."""
    ancestors: list[Post] = []
    seen = {post.id}
    cursor = post
    while cursor.in_reply_to_id is not None and len(ancestors) < 200:
        parent = await db.get(Post, cursor.in_reply_to_id)
        if parent is None or parent.id in seen:
            break
        seen.add(parent.id)
        if not await policy.can_see_post(db, viewer, parent):
            break
        ancestors.append(parent)
        cursor = parent
    ancestors.reverse()
    root_id = post.thread_root_id or post.id
    stmt = (
        select(Post)
        .where(
            or_(Post.thread_root_id == root_id, Post.id == root_id),
            policy.post_visible_clause(viewer),
            policy.not_muted_clause(viewer) if viewer.account_id else Post.id.isnot(None),
        )
        .order_by(Post.id)
        .limit(2000)
    )
    candidates = list((await db.scalars(stmt)).all())
    children: dict[int, list[Post]] = {}
    for p in candidates:
        if p.in_reply_to_id is not None:
            children.setdefault(p.in_reply_to_id, []).append(p)
    # Depth-first, oldest reply first, with an explicit stack: threads can be deeper than
    # Python's recursion limit.
    descendants: list[tuple[Post, int]] = []
    stack = [(child, 1) for child in reversed(children.get(post.id, []))]
    while stack:
        child, depth = stack.pop()
        descendants.append((child, depth))
        stack.extend((c, depth + 1) for c in reversed(children.get(child.id, [])))
    return ancestors, descendants
