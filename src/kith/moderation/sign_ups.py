"""Sign-ups waiting for approval (registration mode "approval"): tell admins, approve, reject."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts import mail
from kith.accounts.models import Account, InstanceSettings, User, UserState
from kith.errors import NotFound, ValidationFailed
from kith.moderation.roles import admin_account_ids, require_moderator
from kith.notifications import service as notifications
from kith.notifications.models import NotificationType


async def notify_admins_of_sign_up(db: AsyncSession, account_id: int) -> None:
    """Tell every admin that this account waits for approval, in the caller's transaction
    (the caller commits, then calls `notifications.publish_notifications`)."""
    for admin_id in await admin_account_ids(db):
        await notifications.notify(
            db,
            recipient_id=admin_id,
            type=NotificationType.ADMIN_SIGN_UP,
            from_account_id=account_id,
        )


async def pending_sign_ups(db: AsyncSession, moderator: policy.Viewer) -> list[User]:
    """Logins waiting for approval, oldest first (each with its account loaded)."""
    require_moderator(moderator)
    stmt = select(User).where(User.state == UserState.PENDING).order_by(User.id)
    return list((await db.scalars(stmt)).all())


async def _pending_user(db: AsyncSession, account_id: int) -> User:
    user = await db.scalar(select(User).where(User.account_id == account_id))
    if user is None:
        raise NotFound("No such sign-up.")
    if user.state != UserState.PENDING:
        raise ValidationFailed("This sign-up was already decided.", field="account_id")
    return user


async def _instance_name(db: AsyncSession) -> str:
    row = await db.get(InstanceSettings, 1)
    return row.name if row else "Kith"


async def approve_sign_up(db: AsyncSession, moderator: policy.Viewer, account_id: int) -> User:
    """Let a pending sign-up in and mail the person that they can sign in now."""
    require_moderator(moderator)
    user = await _pending_user(db, account_id)
    user.state = UserState.ACTIVE
    name = await _instance_name(db)
    await mail.send_later(
        db,
        to=user.email,
        subject=f"Welcome to {name}",
        body=f"Your account @{user.account.username} on {name} was approved. You can sign in now.",
    )
    await db.commit()
    return user


async def reject_sign_up(db: AsyncSession, moderator: policy.Viewer, account_id: int) -> None:
    """Refuse a pending sign-up: the account is deleted (its name and address become free
    again) and the person is told by mail."""
    require_moderator(moderator)
    user = await _pending_user(db, account_id)
    name = await _instance_name(db)
    await mail.send_later(
        db,
        to=user.email,
        subject=f"Your sign-up on {name}",
        body=f"Your request to join {name} as @{user.account.username} was not approved.",
    )
    # The login, its tokens and the admins' notifications about it go with the account.
    await db.execute(delete(Account).where(Account.id == user.account_id))
    await db.commit()
