"""Reports to a community's moderators: someone who can see a post in a community tells
its moderators about it (a reason, maybe the rule it breaks). Only that community's
moderators read them, are notified (`community.report`) and settle them — by removing the
post (`post_moderation.remove_post`: logged and federated) or by dismissing the report.
The instance-wide reports (`kith.moderation`) stay as they are; the reporter may also send
the report there, through `moderation.service.file_report`."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.communities import notices, permissions
from kith.communities.models import (
    Community,
    CommunityPost,
    CommunityPostState,
    CommunityReport,
    ReportState,
)
from kith.communities.modlog import check_reason
from kith.communities.permissions import CommunityAction
from kith.db import utcnow
from kith.errors import Forbidden, NotFound, ValidationFailed
from kith.notifications import service as notifications
from kith.notifications.models import NotificationType
from kith.posts.models import Post

MAX_REASON = 1000


def rule_count(community: Community) -> int:
    """How many rules the community has: its rules text, one rule per non-empty line."""
    return sum(1 for line in (community.rules or "").splitlines() if line.strip())


def _check(community: Community, reason: str, rule: int | None) -> str:
    reason = reason.strip()
    if not reason:
        raise ValidationFailed("Say what is wrong with the post.", field="reason")
    if len(reason) > MAX_REASON:
        raise ValidationFailed(f"Keep the reason under {MAX_REASON} characters.", field="reason")
    if rule is not None and not 1 <= rule <= rule_count(community):
        raise ValidationFailed("Choose one of the community's rules.", field="rule")
    return reason


async def report_post(
    db: AsyncSession,
    viewer: policy.Viewer,
    community: Community,
    post_id: int,
    reason: str,
    *,
    rule: int | None = None,
    tell_instance: bool = False,
) -> CommunityReport:
    """File a report about a post of the community with its moderators, who are notified.
    NotFound when the post is not in the community or the reporter may not see it; refused:
    one's own post, a second report of the same post, a bad reason or rule. A ban does not
    stop anyone from reporting. `tell_instance`: the instance's moderators get a report of
    their own too. Commits."""
    if viewer.account_id is None:
        raise Forbidden("Sign in to report.")
    post = await db.get(Post, post_id)
    row = await db.get(CommunityPost, (community.id, post_id))
    if (
        post is None
        or row is None
        or not await policy.can_see_community(db, viewer, community)
        or not await policy.can_see_post(db, viewer, post)
    ):
        raise NotFound("No such post in this community.")
    reason = _check(community, reason, rule)
    if community.is_remote:
        raise ValidationFailed(
            f"!{community.address} is moderated on {community.domain}: report it there.",
            field="post_id",
        )
    if post.account_id == viewer.account_id:
        raise ValidationFailed("You cannot report your own post.", field="post_id")
    duplicate = ValidationFailed(
        "You already reported this post to the moderators.", field="post_id"
    )
    if await _existing(db, community.id, post_id, viewer.account_id) is not None:
        raise duplicate
    report = CommunityReport(
        community_id=community.id,
        post_id=post_id,
        reporter_id=viewer.account_id,
        reason=reason,
        rule=rule,
    )
    db.add(report)
    try:
        await db.flush()
    except IntegrityError:  # the same report, twice at once
        await db.rollback()
        raise duplicate from None
    await notifications.notify_many(
        db,
        recipient_ids=await notices.local_moderator_ids(db, community.id),
        type=NotificationType.COMMUNITY_REPORT,
        from_account_id=viewer.account_id,
        post_id=post_id,
        community_id=community.id,
    )
    if tell_instance:
        from kith.moderation import service as moderation  # it imports posts: import late

        # Its own checks, notifications and commit (which writes ours with it).
        filed = await moderation.file_report(
            db,
            viewer,
            account_id=post.account_id,
            post_ids=[post_id],
            comment=f"Reported in !{community.handle}: {reason}"[: moderation.MAX_COMMENT],
        )
        report.instance_report_id = filed.id
    await db.commit()
    await notifications.publish_notifications(db)
    return report


async def _existing(
    db: AsyncSession, community_id: int, post_id: int, reporter_id: int
) -> CommunityReport | None:
    return await db.scalar(
        select(CommunityReport).where(
            CommunityReport.community_id == community_id,
            CommunityReport.post_id == post_id,
            CommunityReport.reporter_id == reporter_id,
        )
    )


@dataclass
class ReportView:
    """An open report as its moderators see it."""

    report: CommunityReport
    post: Post
    author: Account
    reporter: Account


async def open_reports(
    db: AsyncSession, actor_id: int, community: Community, *, limit: int = 100
) -> list[ReportView]:
    """The community's open reports, oldest first, with the post, its author and the
    reporter (its moderators only)."""
    await permissions.require(db, actor_id, community, CommunityAction.MODERATE)
    reports = list(
        (
            await db.scalars(
                select(CommunityReport)
                .where(
                    CommunityReport.community_id == community.id,
                    CommunityReport.state == ReportState.OPEN,
                )
                .order_by(CommunityReport.id)
                .limit(limit)
            )
        ).all()
    )
    posts = {
        p.id: p
        for p in (
            await db.scalars(select(Post).where(Post.id.in_({r.post_id for r in reports})))
        ).all()
    }
    ids = {r.reporter_id for r in reports} | {p.account_id for p in posts.values()}
    people = {a.id: a for a in (await db.scalars(select(Account).where(Account.id.in_(ids)))).all()}
    return [
        ReportView(r, posts[r.post_id], people[posts[r.post_id].account_id], people[r.reporter_id])
        for r in reports
        if r.post_id in posts
    ]


async def open_count(db: AsyncSession, actor_id: int | None, community: Community) -> int:
    """How many reports wait (its moderators only: 0 for anyone else)."""
    if not await permissions.can(db, actor_id, community, CommunityAction.MODERATE):
        return 0
    count = await db.scalar(
        select(func.count())
        .select_from(CommunityReport)
        .where(
            CommunityReport.community_id == community.id,
            CommunityReport.state == ReportState.OPEN,
        )
    )
    return count or 0


async def resolve_report(
    db: AsyncSession,
    actor_id: int,
    community: Community,
    report_id: int,
    *,
    remove: bool,
    reason: str = "",
) -> None:
    """Settle an open report (moderators of its community): `remove` takes the post out of
    the community through `remove_post` (logged, the author told, federated), otherwise the
    report is dismissed. Every open report of that post in the community is settled with it.
    A report of another community is NotFound; one already settled is refused. Commits."""
    await permissions.require(db, actor_id, community, CommunityAction.MODERATE)
    reason = check_reason(reason)
    report = await db.get(CommunityReport, report_id)
    if report is None or report.community_id != community.id:
        raise NotFound("No such report.")
    if report.state != ReportState.OPEN:
        raise ValidationFailed("This report has already been dealt with.", field="report_id")
    done = await db.execute(
        update(CommunityReport)
        .where(
            CommunityReport.community_id == community.id,
            CommunityReport.post_id == report.post_id,
            CommunityReport.state == ReportState.OPEN,
        )
        .values(
            state=ReportState.REMOVED if remove else ReportState.DISMISSED,
            resolved_by_id=actor_id,
            resolved_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    if done.rowcount == 0:  # type: ignore[attr-defined]
        await db.rollback()
        raise ValidationFailed("This report has already been dealt with.", field="report_id")
    row = await db.get(CommunityPost, (community.id, report.post_id))
    if remove and row is not None and row.state != CommunityPostState.REMOVED:
        from kith.communities.post_moderation import remove_post  # imports posting: late

        # Its commit writes the settled reports with the removal (its refusal rolls both back).
        await remove_post(db, actor_id, community, report.post_id, reason)
        return
    await db.commit()
