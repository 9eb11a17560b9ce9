"""The notifications table."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kith.db import Base, new_id, utcnow


class NotificationType(enum.StrEnum):
    """Mastodon's notification type names, so the client API can pass them through."""

    MENTION = "mention"
    REPLY = "reply"  # shown as "mention" in the Mastodon API, kept apart for filtering here
    FOLLOW = "follow"
    FOLLOW_REQUEST = "follow_request"
    LIKE = "favourite"
    BOOST = "reblog"
    POLL = "poll"
    UPDATE = "update"
    MOVE = "move"  # an account you follow moved; you now follow its new account
    ADMIN_SIGN_UP = "admin.sign_up"
    ADMIN_REPORT = "admin.report"
    # Kith's own, about micro-communities (`communities.notices`). Not Mastodon's: the client
    # API returns them only to a client that asks for them by name in `types[]`.
    COMMUNITY_JOIN_REQUEST = "community.join_request"  # to its moderators
    COMMUNITY_POST_PENDING = "community.post_pending"  # to its moderators: the approval queue
    COMMUNITY_POST_APPROVED = "community.post_approved"  # the rest: to the person acted on
    COMMUNITY_POST_REJECTED = "community.post_rejected"
    COMMUNITY_POST_REMOVED = "community.post_removed"
    COMMUNITY_POST_RESTORED = "community.post_restored"
    COMMUNITY_REQUEST_APPROVED = "community.request_approved"
    COMMUNITY_REQUEST_REJECTED = "community.request_rejected"
    COMMUNITY_BANNED = "community.banned"
    COMMUNITY_REPORT = "community.report"  # to its moderators: a post was reported to them


COMMUNITY_TYPES = frozenset(t for t in NotificationType if t.value.startswith("community."))


class Notification(Base):
    """Something `from_account` did that concerns `account`. Unique per (recipient, type,
    actor, post) so a repeated job or a double click notifies once."""

    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("account_id", "type", "from_account_id", "post_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    from_account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    post_id: Mapped[int | None] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), default=None
    )
    report_id: Mapped[int | None] = mapped_column(default=None)
    # The community a `community.*` notification is about.
    community_id: Mapped[int | None] = mapped_column(
        ForeignKey("communities.id", ondelete="CASCADE"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


Index("ix_notifications_account_id_id", Notification.account_id, Notification.id)
