"""Reports and moderators' actions on accounts (suspend, silence, and undoing them)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts import service as accounts
from kith.accounts.models import Account, User, UserSession
from kith.db import utcnow
from kith.errors import Forbidden, NotFound, ValidationFailed
from kith.moderation.models import Report, ReportCategory
from kith.notifications import service as notifications
from kith.notifications.models import NotificationType
from kith.posts.models import Post

MAX_COMMENT = 1000


async def file_report(
    db: AsyncSession,
    viewer: policy.Viewer,
    *,
    account_id: int,
    post_ids: list[int],
    category: str = "other",
    comment: str = "",
) -> Report:
    """Report an account (and some of its posts the reporter can see) to the moderators."""
    if viewer.account_id is None:
        raise Forbidden("Sign in to report.")
    target = await db.get(Account, account_id)
    if target is None or target.id == viewer.account_id:
        raise ValidationFailed("Choose an account to report.", field="account_id")
    if category not in {c.value for c in ReportCategory}:
        raise ValidationFailed("Choose a reason.", field="category")
    if len(comment) > MAX_COMMENT:
        raise ValidationFailed(f"Comments are at most {MAX_COMMENT} characters.", field="comment")
    checked: list[int] = []
    for pid in dict.fromkeys(post_ids[:20]):
        post = await db.get(Post, pid)
        if (
            post is None
            or post.account_id != target.id
            or not await policy.can_see_post(db, viewer, post)
        ):
            raise ValidationFailed(
                "You can only report posts of this account that you can see.", field="status_ids"
            )
        checked.append(pid)
    report = Report(
        reporter_id=viewer.account_id,
        target_account_id=target.id,
        post_ids=checked,
        category=category,
        comment=comment.strip(),
    )
    db.add(report)
    await db.flush()
    admins = (await db.scalars(select(User.account_id).where(User.is_admin.is_(True)))).all()
    for admin_id in admins:
        if admin_id != target.id:
            await notifications.notify(
                db,
                recipient_id=admin_id,
                type=NotificationType.ADMIN_REPORT,
                from_account_id=viewer.account_id,
                report_id=report.id,
            )
    await db.commit()
    await notifications.publish_notifications(db)
    return report


async def open_reports(db: AsyncSession) -> list[Report]:
    return list(
        (
            await db.scalars(select(Report).where(Report.resolved_at.is_(None)).order_by(Report.id))
        ).all()
    )


async def resolve_report(
    db: AsyncSession, moderator: policy.Viewer, report_id: int, resolution: str = "resolved"
) -> Report:
    if not moderator.is_admin:
        raise Forbidden("Only moderators resolve reports.")
    report = await db.get(Report, report_id)
    if report is None:
        raise NotFound("No such report.")
    if report.resolved_at is None:
        report.resolved_at = utcnow()
        report.resolved_by_id = moderator.account_id
        report.resolution = resolution[:32]
        await db.commit()
    return report


async def suspend(db: AsyncSession, account: Account) -> None:
    """Suspend: the account can't sign in and everything it posted disappears from view."""
    if account.suspended_at is None:
        account.suspended_at = utcnow()
    user = await accounts.user_for_account(db, account.id)
    if user is not None:
        await db.execute(delete(UserSession).where(UserSession.user_id == user.id))
    await db.commit()


async def unsuspend(db: AsyncSession, account: Account) -> None:
    account.suspended_at = None
    await db.commit()


async def silence(db: AsyncSession, account: Account, on: bool = True) -> None:
    """Silence: the account's posts stay visible to its followers but leave public listings."""
    account.silenced_at = utcnow() if on else None
    await db.commit()


async def suspend_by_name(db: AsyncSession, username: str) -> bool:
    account = await accounts.find_local_account(db, username)
    if account is None:
        return False
    await suspend(db, account)
    return True
