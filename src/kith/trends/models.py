"""Tables of the trends domain: the latest scores (one row per trending candidate) with the
moderators' review decision kept beside them, and the instance's trend settings."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kith.db import Base, new_id, utcnow


class ReviewState(enum.StrEnum):
    """A moderator's decision on a trending candidate (Mastodon's allowed/rejected/pending)."""

    PENDING = "pending"  # not reviewed yet: hidden unless the instance approves automatically
    ALLOWED = "allowed"  # may trend whenever it scores
    REJECTED = "rejected"  # never trends, whatever it scores


class _Scored:
    """Columns every trend row has: the last score and the review decision.

    A row whose candidate stops scoring keeps score 0 while it carries a decision (so a
    rejected tag stays rejected next week) and is deleted while it is still pending."""

    score: Mapped[float] = mapped_column(Float, default=0.0)
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)
    review: Mapped[str] = mapped_column(String(16), default=ReviewState.PENDING)
    reviewed_at: Mapped[datetime | None] = mapped_column(default=None)
    reviewed_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None
    )
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class TrendTag(_Scored, Base):
    """A hashtag's trend score: distinct accounts in the last day against its usual day."""

    __tablename__ = "trend_tags"

    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True)
    accounts: Mapped[int] = mapped_column(Integer, default=0)  # distinct accounts, last day
    uses: Mapped[int] = mapped_column(Integer, default=0)  # posts, last day
    expected: Mapped[float] = mapped_column(Float, default=1.0)  # baseline accounts per day
    # Mastodon's Tag history: [{"day": unix midnight, "uses": "n", "accounts": "n"}], newest first.
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class TrendStatus(_Scored, Base):
    """A post's trend score: distinct accounts that liked or boosted it, decayed by its age."""

    __tablename__ = "trend_statuses"

    post_id: Mapped[int] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )  # the author: at most one trending post per author is shown
    engaged: Mapped[int] = mapped_column(Integer, default=0)


class TrendLink(_Scored, Base):
    """A link's trend score: distinct accounts sharing the URL, as for hashtags."""

    __tablename__ = "trend_links"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    url_key: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the URL
    url: Mapped[str] = mapped_column(Text)
    accounts: Mapped[int] = mapped_column(Integer, default=0)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    expected: Mapped[float] = mapped_column(Float, default=1.0)
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class TrendSettings(Base):
    """How the instance runs trends: a single row with id 1 (absent means the defaults)."""

    __tablename__ = "trend_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Off by default: nothing trends publicly before a moderator approves it.
    auto_approve: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


Index("ix_trend_tags_score", TrendTag.review, TrendTag.score)
Index("ix_trend_statuses_score", TrendStatus.review, TrendStatus.score)
Index("ix_trend_links_score", TrendLink.review, TrendLink.score)
