"""Reports and moderators' actions on accounts (suspend, silence, and undoing them).

Every function a moderator calls takes the moderator's Viewer and refuses non-admins, whatever
the edge already checked: the admin pages, the CLI and a future admin API share these rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts import access
from kith.accounts import service as accounts
from kith.accounts.models import Account, User, UserSession
from kith.db import utcnow
from kith.errors import Forbidden, NotFound, ValidationFailed
from kith.moderation.models import Report, ReportCategory
from kith.moderation.roles import admin_account_ids, require_moderator
from kith.notifications import service as notifications
from kith.notifications.models import NotificationType
from kith.posts.models import Post

MAX_COMMENT = 1000
MAX_REPORTED_POSTS = 20
ACCOUNT_ACTIONS = ("suspend", "unsuspend", "silence", "unsilence")


async def file_report(
    db: AsyncSession,
    viewer: policy.Viewer,
    *,
    account_id: int,
    post_ids: list[int],
    category: str = "other",
    comment: str = "",
    forward: bool = False,
) -> Report:
    """Report an account (and some of its posts the reporter can see) to the moderators.
    `forward`: a remote account's report also goes to its own server's moderators (without
    saying who reported it). Nothing is written unless every part of the report is valid."""
    if viewer.account_id is None:
        raise Forbidden("Sign in to report.")
    target = await db.get(Account, account_id)
    if target is None or target.id == viewer.account_id:
        raise ValidationFailed("Choose an account to report.", field="account_id")
    if category not in {c.value for c in ReportCategory}:
        raise ValidationFailed("Choose a reason.", field="category")
    if len(comment) > MAX_COMMENT:
        raise ValidationFailed(f"Comments are at most {MAX_COMMENT} characters.", field="comment")
    wanted = list(dict.fromkeys(post_ids))
    if len(wanted) > MAX_REPORTED_POSTS:
        raise ValidationFailed(f"Pick at most {MAX_REPORTED_POSTS} posts.", field="status_ids")
    checked: list[int] = []
    reported: list[Post] = []
    for pid in wanted:
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
        reported.append(post)
    report = Report(
        reporter_id=viewer.account_id,
        target_account_id=target.id,
        post_ids=checked,
        category=category,
        comment=comment.strip(),
    )
    db.add(report)
    await db.flush()
    if forward and not target.is_local:
        from kith.federation import outbound  # federation builds on moderation, not the reverse

        report.forwarded = await outbound.report_forwarded(
            db, report.id, target, reported, report.comment
        )
    for admin_id in await admin_account_ids(db):
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
    """Unresolved reports, oldest first (the queue moderators work through)."""
    return list(
        (
            await db.scalars(select(Report).where(Report.resolved_at.is_(None)).order_by(Report.id))
        ).all()
    )


@dataclass
class ReportView:
    """A report with what a moderator needs to judge it."""

    report: Report
    reporter: Account | None
    target: Account
    posts: list[Post]


async def reported_posts(db: AsyncSession, moderator: policy.Viewer, report: Report) -> list[Post]:
    """The posts attached to a report, as its moderator may see them (kith.policy decides),
    oldest first. Deleted posts are simply missing."""
    require_moderator(moderator)
    if not report.post_ids:
        return []
    found = (await db.scalars(select(Post).where(Post.id.in_(report.post_ids)))).all()
    return sorted(
        (p for p in found if policy.can_moderator_see_reported_post(moderator, report, p)),
        key=lambda p: p.id,
    )


async def open_report_views(db: AsyncSession, moderator: policy.Viewer) -> list[ReportView]:
    """The open reports with their reporter, target account and reported posts."""
    require_moderator(moderator)
    reports = await open_reports(db)
    ids = {r.reporter_id for r in reports} | {r.target_account_id for r in reports}
    people = {a.id: a for a in (await db.scalars(select(Account).where(Account.id.in_(ids)))).all()}
    return [
        ReportView(
            report=r,
            reporter=people.get(r.reporter_id),
            target=people[r.target_account_id],
            posts=await reported_posts(db, moderator, r),
        )
        for r in reports
        if r.target_account_id in people
    ]


async def resolve_report(
    db: AsyncSession, moderator: policy.Viewer, report_id: int, resolution: str = "resolved"
) -> Report:
    """Close a report (once; resolving it again changes nothing)."""
    require_moderator(moderator)
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
    """Suspend: the account can't sign in and everything it posted disappears from view,
    here and, for a local account, on its followers' servers (`_tell_followers_servers`)."""
    newly = account.suspended_at is None
    if newly:
        account.suspended_at = utcnow()
    user = await accounts.user_for_account(db, account.id)
    if user is not None:
        await db.execute(delete(UserSession).where(UserSession.user_id == user.id))
    if newly:
        await _tell_followers_servers(db, account)
    await db.commit()
    await access.access_changed(db, [account.id])  # its open streams close


async def unsuspend(db: AsyncSession, account: Account) -> None:
    """Lift a suspension: the account and its posts are back, here and on its followers'
    servers."""
    lifted = account.suspended_at is not None
    account.suspended_at = None
    if lifted:
        await _tell_followers_servers(db, account)
    await db.commit()


async def _tell_followers_servers(db: AsyncSession, account: Account) -> None:
    """A local account's suspension (or its end) goes to its remote followers' servers as
    `Update(Person)` (with `suspended: true` while it lasts), as Mastodon sends it: peers hide
    the account and can show it again. Not `Delete`, which would make them forget it for
    good. No commit."""
    from kith.federation import outbound  # federation builds on accounts, not the reverse

    await outbound.profile_updated(db, account)


async def silence(db: AsyncSession, account: Account, on: bool = True) -> None:
    """Silence: the account's posts stay visible to its followers but leave public listings."""
    account.silenced_at = utcnow() if on else None
    await db.commit()


async def suspend_by_name(db: AsyncSession, username: str) -> bool:
    """Suspend a local account by username (for the CLI); False if there is none."""
    account = await accounts.find_local_account(db, username)
    if account is None:
        return False
    await suspend(db, account)
    return True


async def moderate_account(
    db: AsyncSession, moderator: policy.Viewer, account_id: int, action: str
) -> Account:
    """Suspend, unsuspend, silence or unsilence an account. Moderators can't act on themselves
    or on other admins from here (an admin would first lose the role, through the CLI)."""
    require_moderator(moderator)
    if action not in ACCOUNT_ACTIONS:
        raise ValidationFailed("Unknown action.", field="action")
    account = await db.get(Account, account_id)
    if account is None:
        raise NotFound("No such account.")
    if account.id == moderator.account_id:
        raise ValidationFailed("You can't do this to your own account.", field="action")
    if account.deleted_at is not None:
        raise ValidationFailed("This account is deleted.", field="action")
    user = await accounts.user_for_account(db, account.id)
    if user is not None and user.is_admin:
        raise ValidationFailed("Admins can't be suspended or silenced.", field="action")
    if action == "suspend":
        await suspend(db, account)
    elif action == "unsuspend":
        await unsuspend(db, account)
    else:
        await silence(db, account, on=action == "silence")
    return account


@dataclass
class AccountRow:
    """An account as the admin list shows it."""

    account: Account
    user: User | None

    @property
    def is_admin(self) -> bool:
        return self.user is not None and self.user.is_admin


async def list_accounts(
    db: AsyncSession,
    moderator: policy.Viewer,
    *,
    q: str = "",
    max_id: int | None = None,
    limit: int = 50,
) -> list[AccountRow]:
    """Every account (suspended ones too), newest first, optionally those whose handle or
    display name contains `q`."""
    require_moderator(moderator)
    stmt = select(Account, User).outerjoin(User, User.account_id == Account.id)
    q = q.strip().lstrip("@")[:100]
    if q:
        stmt = stmt.where(
            Account.username_key.contains(q.lower(), autoescape=True)
            | Account.display_name.icontains(q, autoescape=True)
        )
    if max_id is not None:
        stmt = stmt.where(Account.id < max_id)
    rows = (await db.execute(stmt.order_by(Account.id.desc()).limit(limit))).all()
    return [AccountRow(account=a, user=u) for a, u in rows]
