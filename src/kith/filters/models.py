"""Tables for filters (Mastodon v2 filters): keywords and targeted statuses."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kith.db import Base, new_id, utcnow


class Filter(Base):
    """A named filter: keywords, the contexts it applies in, and what it does (warn|hide)."""

    __tablename__ = "filters"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(String(100))
    contexts: Mapped[list[str]] = mapped_column(
        JSON
    )  # home, notifications, public, thread, account
    action: Mapped[str] = mapped_column(String(8), default="warn")
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class FilterKeyword(Base):
    """One word or phrase of a filter."""

    __tablename__ = "filter_keywords"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    filter_id: Mapped[int] = mapped_column(ForeignKey("filters.id", ondelete="CASCADE"), index=True)
    keyword: Mapped[str] = mapped_column(String(200))
    whole_word: Mapped[bool] = mapped_column(Boolean, default=True)


class FilterStatus(Base):
    """One post a filter targets directly (Mastodon's FilterStatus): shown as filtered, or
    hidden, wherever the filter applies, whatever its text."""

    __tablename__ = "filter_statuses"
    __table_args__ = (UniqueConstraint("filter_id", "post_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    filter_id: Mapped[int] = mapped_column(ForeignKey("filters.id", ondelete="CASCADE"), index=True)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
