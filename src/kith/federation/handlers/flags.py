"""Flag: another server reports local accounts (and some of their posts) to our moderators.

The report is filed by the actor that sent the Flag — on Mastodon the remote instance's own
actor, so the report reads as coming from that instance."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from kith import text
from kith.accounts.models import Account
from kith.federation.handlers.common import actor_of
from kith.federation.local_objects import local_account, local_post
from kith.federation.models import InboxItem
from kith.federation.origin import ids_of
from kith.federation.processing import activity_handler
from kith.moderation.models import Report, ReportCategory
from kith.moderation.roles import admin_account_ids
from kith.notifications import service as notifications
from kith.notifications.models import NotificationType
from kith.posts.models import Post

MAX_OBJECTS = 40
MAX_POSTS = 20
MAX_COMMENT = 1000


@activity_handler("Flag")
async def on_flag(db: AsyncSession, item: InboxItem) -> str:
    reporter = await actor_of(db, item)
    if reporter is None:
        return "ignored: unknown actor"
    accounts: dict[int, Account] = {}
    posts: list[Post] = []
    for uri in ids_of(item.activity.get("object"))[:MAX_OBJECTS]:
        if (account := await local_account(db, uri)) is not None:
            accounts[account.id] = account
        elif (post := await local_post(db, uri)) is not None:
            posts.append(post)
    for post in posts:
        if post.account_id not in accounts:
            author = await db.get(Account, post.account_id)
            if author is not None:
                accounts[author.id] = author
    if not accounts:
        return "ignored: reports nobody here"
    content = item.activity.get("content")
    comment = text.html_to_text(content)[:MAX_COMMENT] if isinstance(content, str) else ""
    admins = await admin_account_ids(db)
    for account in accounts.values():
        report = Report(
            reporter_id=reporter.id,
            target_account_id=account.id,
            post_ids=[p.id for p in posts if p.account_id == account.id][:MAX_POSTS],
            category=ReportCategory.OTHER,
            comment=comment,
        )
        db.add(report)
        await db.flush()
        await notifications.notify_many(
            db,
            recipient_ids=[a for a in admins if a != account.id],
            type=NotificationType.ADMIN_REPORT,
            from_account_id=reporter.id,
            report_id=report.id,
        )
    return f"reported {len(accounts)} account(s)"
