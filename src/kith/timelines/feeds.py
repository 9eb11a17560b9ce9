"""Home feeds kept on write: a person's Home read from the candidates stored for them.

Searching Home means looking through every followed account's recent posts and checking the
policy on each, for every page (~3 ms of SQLite per page at 150 follows). A feed is the list
of those candidates, kept as posts appear (database triggers: migration 0005, and 0007 for
communities' threads), so a page reads its 40 entries, newest first, and checks the policy
on those only.

- A feed holds every post that may be in the person's Home with an id above its floor. Below
  the floor, Home is searched as before (`timelines.home` falls through).
- Entries are candidates: the whole Home rule (`timelines.home_clause`) is applied when they
  are read, so follows, blocks, mutes and memberships that end or begin need no clean-up.
- A feed is made after the first Home read that finds none (in the background: a page must
  not write), from the last FEED_DAYS of candidates; entries older than KEEP_DAYS are trimmed,
  and feeds unread for DROP_AFTER_DAYS are dropped (their people get one searched page, then
  a new feed), by the periodic job `timelines.trim_feeds`.
"""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    bindparam,
    delete,
    literal_column,
    select,
    true,
    union,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kith import db_plans, policy
from kith.accounts.models import Account
from kith.communities.models import CommunityPost, Membership, MemberState
from kith.db import UTCDateTime, id_for_time, utcnow
from kith.graph.models import Follow
from kith.jobs.queue import job_handler
from kith.posts.models import Post, PostTag
from kith.runtime import in_background
from kith.timelines.models import HomeEntry, HomeFeed, TagFollow
from kith.timelines.shapes import P, Shape

FEED_DAYS = 7
KEEP_DAYS = 30
DROP_AFTER_DAYS = 14
READ_STAMP_EVERY = timedelta(days=1)  # how stale `read_at` may get before a read rewrites it
TRIM_JOB = "timelines.trim_feeds"

_building: set[int] = set()  # accounts whose feed this process is making


async def floor_of(db: AsyncSession, account_id: int) -> int | None:
    """The floor of this person's feed, or None when they have none. Notes the read (at most
    once a day, in the background)."""
    row = (
        await db.execute(
            select(HomeFeed.floor_id, HomeFeed.read_at).where(HomeFeed.account_id == account_id)
        )
    ).first()
    if row is None:
        if account_id not in _building:  # several first reads at once ask once
            _building.add(account_id)
            _soon(db, build, account_id)
        return None
    if row[1] < utcnow() - READ_STAMP_EVERY:
        _soon(db, _stamp_read, account_id)
    return int(row[0])


def _soon(db: AsyncSession, work: Any, account_id: int) -> None:
    """Run `work(session, account_id)` in a session of its own once the caller is done."""

    async def run(own: AsyncSession) -> None:
        await work(own, account_id)

    in_background(db, run, f"home feed of {account_id}: {work.__name__}")


async def _stamp_read(db: AsyncSession, account_id: int) -> None:
    await db.execute(
        update(HomeFeed).where(HomeFeed.account_id == account_id).values(read_at=utcnow())
    )
    await db.commit()


def _candidates(account_id: int, floor: int) -> Any:
    """(account id, post id) of every post above `floor` that may be in this person's Home:
    their own, their followed accounts' (boosts and replies included), those with a hashtag
    they follow and the threads (in any state) of the communities they keep in Home. What the
    triggers add as posts appear, for the posts already there."""
    followed = select(Follow.followee_id).where(Follow.follower_id == account_id)
    me = literal_column(str(int(account_id)), BigInteger()).label("account_id")
    return union(
        select(me, Post.id).where(
            Post.id > floor, (Post.account_id == account_id) | Post.account_id.in_(followed)
        ),
        select(me, PostTag.post_id)
        .join(TagFollow, TagFollow.tag_id == PostTag.tag_id)
        .where(TagFollow.account_id == account_id, PostTag.post_id > floor),
        select(me, CommunityPost.post_id)
        .join(Membership, Membership.community_id == CommunityPost.community_id)
        .where(
            Membership.account_id == account_id,
            Membership.state == MemberState.ACTIVE,
            Membership.in_home.is_(True),
            CommunityPost.is_thread.is_(True),
            CommunityPost.post_id > floor,
        ),
    )


async def build(db: AsyncSession, account_id: int) -> int | None:
    """Make this person's feed (if they have none) from the last FEED_DAYS; returns its floor
    (None: another process made it at the same time).

    The feed's row commits first, then its entries: a post whose transaction ran its trigger
    before the row existed and committed after the entries were read would be missed, so the
    last minute's candidates are read once more after that commit (PostgreSQL; SQLite runs
    one writer at a time).

    A follow (or followed hashtag) made while the feed is built could be missed both ways:
    its trigger finds no feed yet, and the build's read does not see it yet. So the build
    first locks the person's account row (PostgreSQL): inserting a follow or tag follow takes
    a key-share lock on that row for its foreign key, so one waits for the other, and the
    later one's statements see what the earlier committed."""
    try:
        await db.execute(select(Account.id).where(Account.id == account_id).with_for_update())
        existing = await db.scalar(
            select(HomeFeed.floor_id).where(HomeFeed.account_id == account_id)
        )
        if existing is not None:
            return int(existing)
        floor = id_for_time(utcnow() - timedelta(days=FEED_DAYS))
        db.add(HomeFeed(account_id=account_id, floor_id=floor, read_at=utcnow()))
        await db.flush()
        await _add_candidates(db, account_id, floor)
        await db.commit()
    except IntegrityError:  # another process made it meanwhile (or the account is gone)
        await db.rollback()
        return None
    finally:
        _building.discard(account_id)
    recent = id_for_time(utcnow() - timedelta(minutes=1))
    await _add_candidates(db, account_id, max(floor, recent))
    await db.commit()
    return floor


async def hold_build(db: AsyncSession, account_id: int) -> None:
    """Before a change that makes posts Home candidates without inserting a row that refers to
    the person's account (a community kept in Home again, a join request approved): wait for
    a build of their feed in progress, or make one wait for this transaction (PostgreSQL, as
    `build` explains for follows; SQLite runs one writer at a time)."""
    if db.get_bind().dialect.name == "postgresql":
        await db.execute(
            select(Account.id).where(Account.id == account_id).with_for_update(key_share=True)
        )


async def _add_candidates(db: AsyncSession, account_id: int, floor: int) -> None:
    postgres = db.get_bind().dialect.name == "postgresql"
    # WHERE true: SQLite would read the ON of ON CONFLICT as a join's.
    rows = select(_candidates(account_id, floor).subquery()).where(true())
    stmt = (pg_insert if postgres else sqlite_insert)(HomeEntry).from_select(
        ["account_id", "post_id"], rows
    )
    await db.execute(stmt.on_conflict_do_nothing())


@functools.cache
def _read_statement(shape: Shape[Any]) -> Any:
    """A page of the feed of the viewer bound as `viewer_id`: entries below `ceiling` and
    above the feed's floor, newest first, that pass the Home rule, each with the feed's floor
    and whether its last read is older than `stale` (no rows: no feed, or nothing there).
    Built once per process and shape."""
    from kith.timelines.service import home_clause  # service builds on this module

    me = bindparam("viewer_id", type_=BigInteger())
    viewer = policy.Viewer(me)  # type: ignore[arg-type]
    now = bindparam("now", type_=UTCDateTime())
    return (
        select(
            *shape.columns,
            HomeFeed.floor_id,
            (HomeFeed.read_at < bindparam("stale", type_=UTCDateTime())).label("stale"),
        )
        .join(HomeEntry, HomeEntry.post_id == Post.id)
        .join(HomeFeed, HomeFeed.account_id == HomeEntry.account_id)
        .where(
            HomeEntry.account_id == me,
            HomeEntry.post_id > HomeFeed.floor_id,
            HomeEntry.post_id < bindparam("ceiling", type_=BigInteger()),
            home_clause(viewer, followed_tags=True, now=now, per_post=True),
        )
        .order_by(HomeEntry.post_id.desc())
        .limit(bindparam("n", type_=Integer()))
    )


async def read(
    db: AsyncSession, viewer: policy.Viewer, *, ceiling: int, n: int, shape: Shape[P]
) -> tuple[list[P], int | None]:
    """Up to `n` posts of the viewer's Home from their feed, below `ceiling`, newest first,
    made `shape`, and the feed's floor (None: no feed). One query when the feed fills the
    page."""
    assert viewer.account_id is not None
    now = utcnow()
    params = {
        "viewer_id": viewer.account_id,
        "ceiling": ceiling,
        "n": n,
        "now": now,
        "stale": now - READ_STAMP_EVERY,
    }
    rows = await db_plans.read(db, _read_statement(shape), params)
    if not rows:
        floor = await floor_of(db, viewer.account_id)
        if floor is None:
            return [], None
        # A feed made between the two statements (each sees the latest commit): its row and
        # entries commit together, so reading again now sees them.
        rows = await db_plans.read(db, _read_statement(shape), params)
        if not rows:
            return [], floor
    floor, stale = rows[0][-2], rows[0][-1]
    if stale:
        _soon(db, _stamp_read, viewer.account_id)
    return shape.make(db, rows), int(floor)


@job_handler(TRIM_JOB)
async def trim(db: AsyncSession, payload: dict[str, Any]) -> None:
    """Drop feeds unread for DROP_AFTER_DAYS; trim the rest to KEEP_DAYS (raising floors)."""
    now = utcnow()
    await db.execute(
        delete(HomeFeed).where(HomeFeed.read_at < now - timedelta(days=DROP_AFTER_DAYS))
    )
    cutoff = id_for_time(now - timedelta(days=KEEP_DAYS))
    # The entries cascade with their feed on PostgreSQL and on SQLite (foreign keys are on).
    await db.execute(delete(HomeEntry).where(HomeEntry.post_id <= cutoff))
    await db.execute(update(HomeFeed).where(HomeFeed.floor_id < cutoff).values(floor_id=cutoff))
