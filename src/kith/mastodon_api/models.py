"""Tables the client API needs beyond the domains': idempotency keys and scheduled statuses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kith.db import Base, new_id, utcnow


class IdempotencyKey(Base):
    """An `Idempotency-Key` a client sent with POST /api/v1/statuses, kept for a day: the same
    key and body returns the same status; the same key with another body is refused."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("account_id", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    post_id: Mapped[int | None] = mapped_column(default=None)
    scheduled_id: Mapped[int | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ScheduledStatus(Base):
    """A status to publish later (`scheduled_at`); a job publishes it."""

    __tablename__ = "scheduled_statuses"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    scheduled_at: Mapped[datetime]
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
