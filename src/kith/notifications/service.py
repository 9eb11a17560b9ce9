"""Create, list and mark notifications. Creation respects blocks and mutes (kith.policy)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import User
from kith.db import new_id, utcnow
from kith.graph.models import Mute
from kith.notifications.models import Notification, NotificationType
from kith.posts.models import Post
from kith.runtime import runtime_of


async def notify(
    db: AsyncSession,
    *,
    recipient_id: int,
    type: NotificationType,
    from_account_id: int,
    post_id: int | None = None,
    report_id: int | None = None,
) -> int | None:
    """Add a notification in the caller's transaction unless policy says the recipient would
    not want it; a duplicate (same recipient, type, actor, post) is a no-op. Returns the id,
    or None when nothing was added. The caller publishes `notification` events after commit
    with `publish_notifications`."""
    added = await notify_many(
        db,
        recipient_ids=[recipient_id],
        type=type,
        from_account_id=from_account_id,
        post_id=post_id,
        report_id=report_id,
    )
    return added.get(recipient_id)


async def notify_many(
    db: AsyncSession,
    *,
    recipient_ids: Sequence[int],
    type: NotificationType,
    from_account_id: int,
    post_id: int | None = None,
    report_id: int | None = None,
) -> dict[int, int]:
    """`notify` for several recipients at once: one policy query decides who may be notified
    (blocks, mutes, and whether each can see the post), one insert adds them. Returns
    {recipient id: notification id} for the ones added."""
    wanted = await policy.notifiable_ids(db, set(recipient_ids), from_account_id, post_id)
    if not wanted:
        return {}
    now = utcnow()
    rows = [
        dict(
            id=new_id(),
            account_id=recipient_id,
            type=str(type),
            from_account_id=from_account_id,
            post_id=post_id,
            report_id=report_id,
            created_at=now,
        )
        for recipient_id in sorted(wanted)
    ]
    insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
    # One statement (compiled once, cached) with the rows as parameters.
    result = await db.execute(
        insert(Notification)
        .on_conflict_do_nothing()
        .returning(Notification.account_id, Notification.id),
        rows,
    )
    added = {account_id: nid for account_id, nid in result.all()}
    pending = db.info.setdefault("new_notifications", [])
    pending.extend(sorted(added.items(), key=lambda item: item[1]))
    return added


async def publish_notifications(db: AsyncSession) -> None:
    """After commit: tell streaming subscribers about notifications this session added."""
    pending = db.info.pop("new_notifications", [])
    bus = runtime_of(db).bus
    for recipient_id, nid in pending:
        await bus.publish(f"user:{recipient_id}", {"type": "notification", "id": nid})


async def withdraw(
    db: AsyncSession,
    *,
    recipient_id: int,
    type: NotificationType,
    from_account_id: int,
    post_id: int | None,
) -> None:
    """Remove a notification whose cause was undone (unlike, unfollow, unboost)."""
    await db.execute(
        delete(Notification).where(
            Notification.account_id == recipient_id,
            Notification.type == str(type),
            Notification.from_account_id == from_account_id,
            Notification.post_id == post_id
            if post_id is not None
            else Notification.post_id.is_(None),
        )
    )


def _list_query(viewer_id: int, types: Sequence[str] | None):  # type: ignore[no-untyped-def]
    viewer = policy.Viewer(viewer_id)
    stmt = select(Notification).where(Notification.account_id == viewer_id)
    if types:
        stmt = stmt.where(Notification.type.in_(list(types)))
    # Mutes with "hide notifications" apply to notifications already stored, too.
    stmt = stmt.where(
        ~select(Mute.account_id)
        .where(
            Mute.account_id == viewer_id,
            Mute.target_id == Notification.from_account_id,
            Mute.hide_notifications.is_(True),
        )
        .where((Mute.expires_at.is_(None)) | (Mute.expires_at > utcnow()))
        .exists()
    )
    stmt = stmt.where(~policy.blocked_between_clause(viewer_id, Notification.from_account_id))
    stmt = stmt.where(policy.account_not_suspended_clause(Notification.from_account_id))
    # Ones about posts the viewer can no longer see (removed as a follower, author suspended)
    # are left out — of the list and of the unread count alike.
    stmt = stmt.where(
        Notification.post_id.is_(None)
        | select(Post.id)
        .where(Post.id == Notification.post_id, policy.post_visible_clause(viewer, Post))
        .exists()
    )
    return stmt


async def list_notifications(
    db: AsyncSession,
    viewer: policy.Viewer,
    *,
    types: Sequence[str] | None = None,
    max_id: int | None = None,
    min_id: int | None = None,
    limit: int = 40,
) -> list[Notification]:
    """The viewer's notifications, newest first, cursor-paginated. Ones about posts the viewer
    can no longer see, or from blocked, muted or suspended accounts, are left out."""
    assert viewer.account_id is not None
    stmt = _list_query(viewer.account_id, types)
    if max_id is not None:
        stmt = stmt.where(Notification.id < max_id)
    if min_id is not None:
        stmt = stmt.where(Notification.id > min_id).order_by(Notification.id.asc()).limit(limit)
        rows = list((await db.scalars(stmt)).all())
        return rows[::-1]
    stmt = stmt.order_by(Notification.id.desc()).limit(limit)
    return list((await db.scalars(stmt)).all())


async def get_notification(
    db: AsyncSession, viewer: policy.Viewer, notification_id: int
) -> Notification | None:
    """One of the viewer's notifications, if the list would show it (the same rules: not about
    a post they can no longer see, not from a blocked, muted or suspended account)."""
    if viewer.account_id is None:
        return None
    stmt = _list_query(viewer.account_id, None).where(Notification.id == notification_id)
    return (await db.scalars(stmt)).first()


async def unread_count(db: AsyncSession, user: User) -> int:
    """How many notifications arrived after the last one the user marked read."""
    stmt = _list_query(user.account_id, None).where(Notification.id > user.notifications_read_id)
    return int(await db.scalar(select(func.count()).select_from(stmt.subquery())) or 0)


async def mark_read(db: AsyncSession, user: User, up_to_id: int | None = None) -> None:
    """Mark everything up to `up_to_id` (default: all) as read."""
    if up_to_id is None:
        up_to_id = int(
            await db.scalar(
                select(func.max(Notification.id)).where(Notification.account_id == user.account_id)
            )
            or 0
        )
    await db.execute(
        update(User)
        .where(User.id == user.id, User.notifications_read_id < up_to_id)
        .values(notifications_read_id=up_to_id)
    )
    await db.commit()
    user.notifications_read_id = max(user.notifications_read_id, up_to_id)
