"""The jobs table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kith.db import Base, new_id, utcnow


class Job(Base):
    """One piece of work. A worker claims it by setting `locked_until` (a lease); a crashed
    worker's lease runs out and another worker claims it again, so handlers are idempotent.
    `dedupe_key`, when set, makes enqueueing the same logical job twice a no-op."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    run_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=10)
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    locked_by: Mapped[str | None] = mapped_column(String(64), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    dedupe_key: Mapped[str | None] = mapped_column(String(200), default=None, unique=True)
    failed_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


Index("ix_jobs_run_at", Job.failed_at, Job.run_at)
