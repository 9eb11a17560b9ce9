"""What a community tells people through their notifications: its moderators hear of join
requests and of posts waiting in the approval queue; a person hears what a moderator did to
their request, to them or to their post. All in the caller's transaction, through
`notifications.notify_many` (so `kith.policy` decides who may be notified: never the actor
themself, not across a block, not from a muted actor); the caller commits, then calls
`notifications.publish_notifications`."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.communities import permissions
from kith.communities.models import ModAction
from kith.notifications import service as notifications
from kith.notifications.models import Notification, NotificationType

# What a moderator's action on a post or a person tells that person (actions left out tell
# nobody: pins, locks and role changes are visible where they happen).
_TOLD = {
    ModAction.APPROVE_POST: NotificationType.COMMUNITY_POST_APPROVED,
    ModAction.REJECT_POST: NotificationType.COMMUNITY_POST_REJECTED,
    ModAction.REMOVE_POST: NotificationType.COMMUNITY_POST_REMOVED,
    ModAction.RESTORE_POST: NotificationType.COMMUNITY_POST_RESTORED,
    ModAction.APPROVE: NotificationType.COMMUNITY_REQUEST_APPROVED,
    ModAction.REJECT: NotificationType.COMMUNITY_REQUEST_REJECTED,
    ModAction.BAN: NotificationType.COMMUNITY_BANNED,
}


async def local_moderator_ids(db: AsyncSession, community_id: int) -> list[int]:
    """The community's owner and moderators who have an account here (remote ones are told
    nothing: they read their own server's notifications)."""
    moderators = permissions.moderators_of(community_id).subquery()
    rows = await db.scalars(
        select(Account.id)
        .join(moderators, moderators.c.account_id == Account.id)
        .where(Account.domain == "")
    )
    return list(rows.all())


async def join_requested(db: AsyncSession, community_id: int, account_id: int) -> None:
    """Someone (local, or remote through a Follow of the Group) asked to join."""
    await notifications.notify_many(
        db,
        recipient_ids=await local_moderator_ids(db, community_id),
        type=NotificationType.COMMUNITY_JOIN_REQUEST,
        from_account_id=account_id,
        community_id=community_id,
    )


async def request_withdrawn(db: AsyncSession, community_id: int, account_id: int) -> None:
    """They took their request back: the moderators' notifications of it go, so nobody
    opens the requests page for a request nobody made any more. (A request a moderator
    settled stays in the others' notifications, as history, like a follow request.)"""
    await db.execute(
        delete(Notification).where(
            Notification.type == NotificationType.COMMUNITY_JOIN_REQUEST.value,
            Notification.from_account_id == account_id,
            Notification.community_id == community_id,
        )
    )


async def post_waiting(
    db: AsyncSession, community_ids: list[int], post_id: int, author_id: int
) -> None:
    """A new thread waits in these communities' approval queues: tell their moderators, who
    can see it (the post's gate lets them)."""
    for community_id in community_ids:
        await notifications.notify_many(
            db,
            recipient_ids=await local_moderator_ids(db, community_id),
            type=NotificationType.COMMUNITY_POST_PENDING,
            from_account_id=author_id,
            post_id=post_id,
            community_id=community_id,
        )


async def moderator_acted(
    db: AsyncSession,
    community_id: int,
    actor_id: int,
    action: ModAction,
    account_id: int | None,
    post_id: int | None = None,
) -> None:
    """A moderator did `action` to `account_id` (or to their post `post_id`): tell them, if
    they are a local person and the action is one people are told of."""
    kind = _TOLD.get(action)
    if kind is None or account_id is None:
        return
    is_local = await db.scalar(select(Account.domain == "").where(Account.id == account_id))
    if not is_local:
        return
    await notifications.notify_many(
        db,
        recipient_ids=[account_id],
        type=kind,
        from_account_id=actor_id,
        post_id=post_id,
        community_id=community_id,
    )
