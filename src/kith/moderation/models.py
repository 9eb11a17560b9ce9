"""Reports filed by people for moderators."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kith.db import Base, new_id, utcnow


class ReportCategory(enum.StrEnum):
    """Mastodon's report categories."""

    SPAM = "spam"
    LEGAL = "legal"
    VIOLATION = "violation"
    OTHER = "other"


class Report(Base):
    """A report of an account (and optionally some of its posts) to the moderators."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    reporter_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    target_account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    post_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    category: Mapped[str] = mapped_column(String(16), default=ReportCategory.OTHER)
    comment: Mapped[str] = mapped_column(Text, default="")
    # Sent on to the reported account's own server (a `Flag`, for its moderators).
    forwarded: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None
    )
    resolution: Mapped[str] = mapped_column(String(32), default="")
