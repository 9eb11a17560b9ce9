"""Follow, unfollow, follow requests, blocks and mutes: the rules of the social graph."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Select, and_, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.db import utcnow
from kith.errors import NotFound, ValidationFailed
from kith.graph.models import Block, Follow, FollowRequest, Mute
from kith.notifications import service as notifications
from kith.notifications.models import NotificationType
from kith.posts.models import Post

MAX_MUTE_SECONDS = 365 * 24 * 3600


async def _target(db: AsyncSession, me: int, target_id: int) -> Account:
    target = await db.get(Account, target_id)
    if target is None or target.suspended_at is not None:
        raise NotFound("No such account.")
    if target.id == me:
        raise ValidationFailed("You can't do that to yourself.", field="id")
    return target


async def follow(db: AsyncSession, me: int, target_id: int) -> str:
    """Follow an account; a locked account gets a follow request instead.
    Returns "following" or "requested". Blocked either way: refused."""
    target = await _target(db, me, target_id)
    if await policy.is_blocked_between(db, me, target.id):
        raise ValidationFailed("You can't follow this account.", field="id")
    if await db.get(Follow, (me, target.id)) is not None:
        return "following"
    if not target.is_local:
        # A remote account answers with Accept or Reject: until then the follow is pending
        # (federation.handlers.follows settles it with accept_outgoing / reject_outgoing).
        from kith.federation import outbound

        if await db.get(FollowRequest, (me, target.id)) is None:
            db.add(FollowRequest(follower_id=me, followee_id=target.id))
            await outbound.follow(db, me, target.id)
        state = "requested"
    elif target.locked:
        if await db.get(FollowRequest, (me, target.id)) is None:
            db.add(FollowRequest(follower_id=me, followee_id=target.id))
            await notifications.notify(
                db, recipient_id=target.id, from_account_id=me, type=NotificationType.FOLLOW_REQUEST
            )
        state = "requested"
    else:
        db.add(Follow(follower_id=me, followee_id=target.id))
        await notifications.notify(
            db, recipient_id=target.id, from_account_id=me, type=NotificationType.FOLLOW
        )
        state = "following"
    try:
        await db.commit()
    except IntegrityError:  # a double click raced itself: the first one won
        await db.rollback()
        return state
    await notifications.publish_notifications(db)
    return state


async def unfollow(db: AsyncSession, me: int, target_id: int) -> None:
    """Stop following (or withdraw a pending request)."""
    from kith.federation import outbound

    await outbound.unfollowing(db, me, target_id)
    await db.execute(
        delete(Follow).where(Follow.follower_id == me, Follow.followee_id == target_id)
    )
    await db.execute(
        delete(FollowRequest).where(
            FollowRequest.follower_id == me, FollowRequest.followee_id == target_id
        )
    )
    for t in (NotificationType.FOLLOW, NotificationType.FOLLOW_REQUEST):
        await notifications.withdraw(
            db, recipient_id=target_id, type=t, from_account_id=me, post_id=None
        )
    await db.commit()


async def answer_request(db: AsyncSession, me: int, follower_id: int, *, accept: bool) -> None:
    """Approve or reject a follow request made to me."""
    req = await db.get(FollowRequest, (follower_id, me))
    if req is None:
        raise NotFound("No such follow request.")
    await db.delete(req)
    await notifications.withdraw(
        db,
        recipient_id=me,
        type=NotificationType.FOLLOW_REQUEST,
        from_account_id=follower_id,
        post_id=None,
    )
    if accept and await db.get(Follow, (follower_id, me)) is None:
        db.add(Follow(follower_id=follower_id, followee_id=me))
        await notifications.notify(
            db, recipient_id=me, from_account_id=follower_id, type=NotificationType.FOLLOW
        )
    await _answer_remote_follower(db, me, follower_id, accept=accept)
    await db.commit()
    await notifications.publish_notifications(db)


async def _answer_remote_follower(
    db: AsyncSession, me: int, follower_id: int, *, accept: bool
) -> None:
    """A remote follower's server learns the answer (Accept or Reject of its Follow)."""
    follower = await db.get(Account, follower_id)
    account = await db.get(Account, me)
    if follower is None or account is None or follower.is_local:
        return
    from kith.federation import outbound
    from kith.federation.handlers.follows import follow_activity_of

    follow_activity = await follow_activity_of(db, follower, account)
    if accept:
        await outbound.send_accept(db, account, follow_activity)
    else:
        await outbound.send_reject(db, account, follow_activity)


async def accept_outgoing(db: AsyncSession, follower_id: int, followee_id: int) -> bool:
    """A remote account accepted my pending follow: the request becomes a follow (in the
    caller's transaction). False when there was no request — an Accept never creates a
    follow nobody asked for."""
    request = await db.get(FollowRequest, (follower_id, followee_id))
    if request is None:
        return await db.get(Follow, (follower_id, followee_id)) is not None
    await db.delete(request)
    db.add(Follow(follower_id=follower_id, followee_id=followee_id))
    await db.flush()
    return True


async def reject_outgoing(db: AsyncSession, follower_id: int, followee_id: int) -> None:
    """A remote account refused my follow, or removed me as a follower (caller commits)."""
    await db.execute(
        delete(FollowRequest).where(
            FollowRequest.follower_id == follower_id, FollowRequest.followee_id == followee_id
        )
    )
    await db.execute(
        delete(Follow).where(Follow.follower_id == follower_id, Follow.followee_id == followee_id)
    )


async def remove_follower(db: AsyncSession, me: int, follower_id: int) -> None:
    """Make someone stop following me (a "soft block")."""
    from kith.federation import outbound

    await outbound.follower_removing(db, me, follower_id)
    await db.execute(
        delete(Follow).where(Follow.follower_id == follower_id, Follow.followee_id == me)
    )
    await db.commit()


async def block(db: AsyncSession, me: int, target_id: int) -> None:
    """Block: removes follows and requests both ways; neither sees the other any more."""
    target = await _target(db, me, target_id)
    pair = or_(
        and_(Follow.follower_id == me, Follow.followee_id == target.id),
        and_(Follow.follower_id == target.id, Follow.followee_id == me),
    )
    await db.execute(delete(Follow).where(pair))
    await db.execute(
        delete(FollowRequest).where(
            or_(
                and_(FollowRequest.follower_id == me, FollowRequest.followee_id == target.id),
                and_(FollowRequest.follower_id == target.id, FollowRequest.followee_id == me),
            )
        )
    )
    if await db.get(Block, (me, target.id)) is None:
        db.add(Block(account_id=me, target_id=target.id))
        from kith.federation import outbound

        await db.flush()
        await outbound.blocked(db, me, target.id)
    try:
        await db.commit()
    except IntegrityError:
        await db.rollback()


async def unblock(db: AsyncSession, me: int, target_id: int) -> None:
    from kith.federation import outbound

    await outbound.unblocking(db, me, target_id)
    await db.execute(delete(Block).where(Block.account_id == me, Block.target_id == target_id))
    await db.commit()


async def mute(
    db: AsyncSession,
    me: int,
    target_id: int,
    *,
    duration: int | None = None,
    notifications_too: bool = True,
) -> None:
    """Mute an account: its posts leave my lists, optionally its notifications too,
    optionally for `duration` seconds. Muting again updates the mute."""
    target = await _target(db, me, target_id)
    if duration is not None and not 0 < duration <= MAX_MUTE_SECONDS:
        raise ValidationFailed(
            "Mute for between 1 second and a year, or indefinitely.", field="duration"
        )
    expires = utcnow() + timedelta(seconds=duration) if duration else None
    existing = await db.get(Mute, (me, target.id))
    if existing is None:
        db.add(
            Mute(
                account_id=me,
                target_id=target.id,
                expires_at=expires,
                hide_notifications=notifications_too,
            )
        )
    else:
        existing.expires_at = expires
        existing.hide_notifications = notifications_too
    try:
        await db.commit()
    except IntegrityError:
        await db.rollback()


async def unmute(db: AsyncSession, me: int, target_id: int) -> None:
    await db.execute(delete(Mute).where(Mute.account_id == me, Mute.target_id == target_id))
    await db.commit()


@dataclass(frozen=True)
class Relationship:
    """How the viewer relates to another account (for buttons and the API)."""

    following: bool = False
    followed_by: bool = False
    requested: bool = False
    requested_by: bool = False
    blocking: bool = False
    blocked_by: bool = False
    muting: bool = False
    muting_notifications: bool = False


async def relationship(db: AsyncSession, me: int | None, other: int) -> Relationship:
    """The viewer's relationship to `other` (all False for anonymous visitors)."""
    if me is None or me == other:
        return Relationship()
    mute_row = await db.get(Mute, (me, other))
    muting = mute_row is not None and (
        mute_row.expires_at is None or mute_row.expires_at > utcnow()
    )
    return Relationship(
        following=await db.get(Follow, (me, other)) is not None,
        followed_by=await db.get(Follow, (other, me)) is not None,
        requested=await db.get(FollowRequest, (me, other)) is not None,
        requested_by=await db.get(FollowRequest, (other, me)) is not None,
        blocking=await db.get(Block, (me, other)) is not None,
        blocked_by=await db.get(Block, (other, me)) is not None,
        muting=muting,
        muting_notifications=muting and bool(mute_row and mute_row.hide_notifications),
    )


@dataclass(frozen=True)
class Window:
    """Which slice of a list of people to read, by the id of the row that links them (the
    follow, request, block or mute — as Mastodon pages these lists): `max_id` older,
    `min_id` the page just newer, `since_id` the newest ones above it."""

    max_id: int | None = None
    since_id: int | None = None
    min_id: int | None = None
    limit: int = 40


@dataclass(frozen=True)
class Linked:
    """A person in a list, with the id of the row that puts them there (the page cursor)."""

    account: Account
    row_id: int


async def _page(
    db: AsyncSession, stmt: Select[Account, int], row_id: Any, window: Window
) -> list[Linked]:
    """Run `select(Account, <row>.id)` as one page, newest row first."""
    if window.max_id is not None:
        stmt = stmt.where(row_id < window.max_id)
    if window.since_id is not None:
        stmt = stmt.where(row_id > window.since_id)
    if window.min_id is not None:
        # The page just above min_id: oldest first from the database, shown newest first.
        stmt = stmt.where(row_id > window.min_id).order_by(row_id.asc())
        rows = list((await db.execute(stmt.limit(window.limit))).all())
        rows.reverse()
    else:
        rows = list((await db.execute(stmt.order_by(row_id.desc()).limit(window.limit))).all())
    return [Linked(a, int(i)) for a, i in rows]


async def followers_page(
    db: AsyncSession, viewer: policy.Viewer, account: Account, window: Window
) -> list[Linked]:
    """Who follows `account`, newest follow first — empty when the account hides its network."""
    if not await policy.can_see_network(db, viewer, account):
        return []
    stmt = (
        select(Account, Follow.id)
        .join(Follow, Follow.follower_id == Account.id)
        .where(Follow.followee_id == account.id, Account.suspended_at.is_(None))
    )
    return await _page(db, stmt, Follow.id, window)


async def following_page(
    db: AsyncSession, viewer: policy.Viewer, account: Account, window: Window
) -> list[Linked]:
    """Whom `account` follows, newest follow first — empty when the account hides its network."""
    if not await policy.can_see_network(db, viewer, account):
        return []
    stmt = (
        select(Account, Follow.id)
        .join(Follow, Follow.followee_id == Account.id)
        .where(Follow.follower_id == account.id, Account.suspended_at.is_(None))
    )
    return await _page(db, stmt, Follow.id, window)


async def followers(
    db: AsyncSession,
    viewer: policy.Viewer,
    account: Account,
    *,
    max_id: int | None = None,
    limit: int = 40,
) -> list[Account]:
    """Who follows `account`, newest first — empty when the account hides its network."""
    window = Window(max_id=max_id, limit=limit)
    return [x.account for x in await followers_page(db, viewer, account, window)]


async def following(
    db: AsyncSession,
    viewer: policy.Viewer,
    account: Account,
    *,
    max_id: int | None = None,
    limit: int = 40,
) -> list[Account]:
    """Whom `account` follows, newest first — empty when the account hides its network."""
    window = Window(max_id=max_id, limit=limit)
    return [x.account for x in await following_page(db, viewer, account, window)]


async def follow_requests_page(db: AsyncSession, me: int, window: Window) -> list[Linked]:
    """People waiting for my approval, newest request first (as Mastodon lists them)."""
    stmt = (
        select(Account, FollowRequest.id)
        .join(FollowRequest, FollowRequest.follower_id == Account.id)
        .where(FollowRequest.followee_id == me)
    )
    return await _page(db, stmt, FollowRequest.id, window)


async def follow_requests(db: AsyncSession, me: int) -> list[Account]:
    """People waiting for my approval, oldest first."""
    rows = await db.scalars(
        select(Account)
        .join(FollowRequest, FollowRequest.follower_id == Account.id)
        .where(FollowRequest.followee_id == me)
        .order_by(FollowRequest.id)
    )
    return list(rows.all())


async def profile_counts(db: AsyncSession, account_id: int) -> dict[str, int]:
    """Posts (without boosts), followers and following of an account, for its profile."""

    async def count(stmt) -> int:  # type: ignore[no-untyped-def]
        return int(await db.scalar(select(func.count()).select_from(stmt.subquery())) or 0)

    return {
        "posts": await count(
            select(Post.id).where(Post.account_id == account_id, Post.reblog_of_id.is_(None))
        ),
        "followers": await count(select(Follow.id).where(Follow.followee_id == account_id)),
        "following": await count(select(Follow.id).where(Follow.follower_id == account_id)),
    }


async def blocks_page(db: AsyncSession, me: int, window: Window) -> list[Linked]:
    """Accounts I block, most recent block first."""
    stmt = (
        select(Account, Block.id)
        .join(Block, Block.target_id == Account.id)
        .where(Block.account_id == me)
    )
    return await _page(db, stmt, Block.id, window)


async def mutes_page(db: AsyncSession, me: int, window: Window) -> list[Linked]:
    """Accounts I mute (unexpired), most recent mute first."""
    stmt = (
        select(Account, Mute.id)
        .join(Mute, Mute.target_id == Account.id)
        .where(Mute.account_id == me, or_(Mute.expires_at.is_(None), Mute.expires_at > utcnow()))
    )
    return await _page(db, stmt, Mute.id, window)


async def familiar_followers(
    db: AsyncSession, viewer: policy.Viewer, account: Account, *, limit: int = 10
) -> list[Account]:
    """People I follow who follow `account` (respecting hidden networks and blocks)."""
    if viewer.account_id is None or not await policy.can_see_network(db, viewer, account):
        return []
    mine = select(Follow.followee_id).where(Follow.follower_id == viewer.account_id)
    rows = await db.scalars(
        select(Account)
        .join(Follow, Follow.follower_id == Account.id)
        .where(
            Follow.followee_id == account.id,
            Account.id.in_(mine),
            Account.suspended_at.is_(None),
            Account.hide_network.is_(False),
        )
        .limit(limit)
    )
    return list(rows.all())
