"""Create, list and mark notifications. Creation respects blocks and mutes (kith.policy)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Integer, Select, bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import User
from kith.db import UTCDateTime, new_id, utcnow
from kith.db_plans import Plan, Step, insert_ignoring_conflicts, run_plan
from kith.graph.models import Mute
from kith.notifications.models import Notification, NotificationType
from kith.posts.models import Post
from kith.runtime import after_commit, runtime_of


async def notify(
    db: AsyncSession,
    *,
    recipient_id: int,
    type: NotificationType,
    from_account_id: int,
    post_id: int | None = None,
    report_id: int | None = None,
    community_id: int | None = None,
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
        community_id=community_id,
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
    community_id: int | None = None,
) -> dict[int, int]:
    """`notify` for several recipients at once: one policy query decides who may be notified
    (blocks, mutes, and whether each can see the post), one insert adds them. Returns
    {recipient id: notification id} for the ones added."""
    plan = notify_many_plan(
        db.get_bind().dialect.name,
        recipient_ids=recipient_ids,
        type=type,
        from_account_id=from_account_id,
        post_id=post_id,
        report_id=report_id,
        community_id=community_id,
    )
    added = await run_plan(db, plan)
    remember_added(db, added)
    return dict(added)


def notify_many_plan(
    dialect_name: str,
    *,
    recipient_ids: Sequence[int],
    type: NotificationType,
    from_account_id: int,
    post_id: int | None = None,
    report_id: int | None = None,
    community_id: int | None = None,
) -> Plan[list[tuple[int, int]]]:
    """`notify_many` as a plan (`kith.db_plans`), for a caller that runs it with the rest of
    its writes: returns the (recipient id, notification id) pairs added, which the caller
    hands to `remember_added`."""
    if not recipient_ids:
        return []
    wanted_rows = yield Step(
        policy.notifiable_statement(post_id is not None, dialect_name),
        policy.notifiable_values(recipient_ids, from_account_id, post_id),
        rows=True,
    )
    wanted = sorted({row[0] for row in wanted_rows or ()})
    if not wanted:
        return []
    now = utcnow()
    rows = [
        dict(
            id=new_id(),
            account_id=recipient_id,
            type=str(type),
            from_account_id=from_account_id,
            post_id=post_id,
            report_id=report_id,
            community_id=community_id,
            created_at=now,
        )
        for recipient_id in wanted
    ]
    # Duplicates (same recipient, type, actor, post) are skipped: RETURNING names the added.
    added = yield Step(_ADD_NOTIFICATIONS[dialect_name], rows, rows=True)
    return sorted(((row[0], row[1]) for row in added or ()), key=lambda pair: pair[1])


_ADD_NOTIFICATIONS = {
    name: insert.returning(Notification.account_id, Notification.id)
    for name, insert in insert_ignoring_conflicts(Notification.__table__).items()  # type: ignore[arg-type]
}


def remember_added(db: AsyncSession, added: Sequence[tuple[int, int]]) -> None:
    """Notifications a plan added in this session: published once it commits."""
    if not added:
        return
    db.info.setdefault("new_notifications", []).extend(added)
    after_commit(db, "notifications", publish_notifications)  # in a job: the worker publishes


async def publish_notifications(db: AsyncSession) -> None:
    """After commit: tell streaming subscribers about notifications this session added."""
    await runtime_of(db).bus.publish_many(notification_events(db))


def notification_events(db: AsyncSession) -> list[tuple[str, dict[str, Any]]]:
    """The bus events of the notifications this session added (taken: published once), for
    a caller that publishes them with its own (`bus.publish_many`)."""
    pending = db.info.pop("new_notifications", [])
    return [(f"user:{rid}", {"type": "notification", "id": nid}) for rid, nid in pending]


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


def _list_query(viewer_id: Any, with_types: bool, now: Any) -> Select[Any]:
    """The viewer's notifications as the list shows them. `viewer_id` and `now` may be bound
    parameters (the statements below are built once per process); with `with_types`, only the
    types bound as `types`."""
    viewer = policy.Viewer(viewer_id)
    stmt = select(Notification).where(Notification.account_id == viewer_id)
    if with_types:
        stmt = stmt.where(Notification.type.in_(bindparam("types", expanding=True)))
    # Mutes with "hide notifications" apply to notifications already stored, too.
    stmt = stmt.where(
        ~select(Mute.account_id)
        .where(
            Mute.account_id == viewer_id,
            Mute.target_id == Notification.from_account_id,
            Mute.hide_notifications.is_(True),
        )
        .where((Mute.expires_at.is_(None)) | (Mute.expires_at > now))
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


_STATEMENTS: dict[tuple[str, bool], Select[Any]] = {}
_NO_CEILING = 2**63 - 1


def _prebuilt(kind: str, with_types: bool = False) -> Select[Any]:
    """The list's statements, built once per process with the viewer, the time, the types and
    the cursors bound: building the policy's clauses costs more CPU than running them."""
    stmt = _STATEMENTS.get((kind, with_types))
    if stmt is None:
        base = _list_query(
            bindparam("viewer_id", type_=BigInteger()),
            with_types,
            bindparam("now", type_=UTCDateTime()),
        )
        below = Notification.id < bindparam("max_id", type_=BigInteger())
        limit = bindparam("n", type_=Integer())
        if kind == "older":
            stmt = base.where(below).order_by(Notification.id.desc()).limit(limit)
        elif kind == "newer":
            above = Notification.id > bindparam("min_id", type_=BigInteger())
            stmt = base.where(below, above).order_by(Notification.id.asc()).limit(limit)
        elif kind == "one":
            stmt = base.where(Notification.id == bindparam("nid", type_=BigInteger()))
        else:  # "unread"
            above = Notification.id > bindparam("read_id", type_=BigInteger())
            stmt = select(func.count()).select_from(base.where(above).subquery())
        _STATEMENTS[(kind, with_types)] = stmt
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
    params: dict[str, Any] = {
        "viewer_id": viewer.account_id,
        "now": utcnow(),
        "max_id": _NO_CEILING if max_id is None else max_id,
        "n": limit,
    }
    if types:
        params["types"] = list(types)
    if min_id is not None:
        params["min_id"] = min_id
        rows = list((await db.scalars(_prebuilt("newer", bool(types)), params)).all())
        return rows[::-1]
    return list((await db.scalars(_prebuilt("older", bool(types)), params)).all())


async def get_notification(
    db: AsyncSession, viewer: policy.Viewer, notification_id: int
) -> Notification | None:
    """One of the viewer's notifications, if the list would show it (the same rules: not about
    a post they can no longer see, not from a blocked, muted or suspended account)."""
    if viewer.account_id is None:
        return None
    params = {"viewer_id": viewer.account_id, "now": utcnow(), "nid": notification_id}
    return (await db.scalars(_prebuilt("one"), params)).first()


async def unread_count(db: AsyncSession, user: User, *, types: Sequence[str] | None = None) -> int:
    """How many notifications (of these types, or all) arrived after the last one the user
    marked read."""
    params: dict[str, Any] = {
        "viewer_id": user.account_id,
        "now": utcnow(),
        "read_id": user.notifications_read_id,
    }
    if types:
        params["types"] = list(types)
    return int(await db.scalar(_prebuilt("unread", bool(types)), params) or 0)


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
