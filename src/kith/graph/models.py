"""Tables of the social graph."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index
from sqlalchemy.orm import Mapped, mapped_column

from kith.db import Base, new_id, utcnow


class Follow(Base):
    """`follower` follows `followee` (accepted)."""

    __tablename__ = "follows"

    follower_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    followee_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[int] = mapped_column(default=new_id)
    show_reblogs: Mapped[bool] = mapped_column(Boolean, default=True)
    notify: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


Index("ix_follows_followee_id", Follow.followee_id, Follow.follower_id)


class FollowRequest(Base):
    """A follow waiting for a locked account's approval."""

    __tablename__ = "follow_requests"

    follower_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    followee_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    id: Mapped[int] = mapped_column(default=new_id)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Block(Base):
    """`account` blocks `target`: neither sees the other; follows both ways are removed."""

    __tablename__ = "blocks"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    target_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    id: Mapped[int] = mapped_column(default=new_id)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Mute(Base):
    """`account` mutes `target`: target's posts are hidden from account (until expires_at)."""

    __tablename__ = "mutes"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    target_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    id: Mapped[int] = mapped_column(default=new_id)
    hide_notifications: Mapped[bool] = mapped_column(Boolean, default=True)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
