"""Idempotent status creation and scheduled statuses (rules for POST /api/v1/statuses)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.db import utcnow
from kith.errors import KithError, NotFound, ValidationFailed
from kith.jobs.queue import enqueue, job_handler
from kith.mastodon_api.models import IdempotencyKey, ScheduledStatus

IDEMPOTENCY_WINDOW = timedelta(hours=24)
MIN_SCHEDULE_AHEAD = timedelta(minutes=5)
MAX_SCHEDULED = 300


class RequestInProgress(KithError):
    status = 409

    def __init__(self) -> None:
        super().__init__("A request with this Idempotency-Key is still being processed")


def request_hash(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()


async def claim_key(
    db: AsyncSession, account_id: int, key: str, digest: str
) -> IdempotencyKey | None:
    """Reserve an Idempotency-Key. Returns the earlier completed use of it (the caller answers
    with its result), or None when this request is the first and should go ahead."""
    if not key or len(key) > 200:
        raise ValidationFailed("Idempotency-Key must be 1–200 characters", field="Idempotency-Key")
    await db.execute(
        delete(IdempotencyKey).where(IdempotencyKey.created_at < utcnow() - IDEMPOTENCY_WINDOW)
    )
    existing = await db.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.account_id == account_id, IdempotencyKey.key == key
        )
    )
    if existing is None:
        db.add(IdempotencyKey(account_id=account_id, key=key, request_hash=digest))
        try:
            await db.commit()
            return None
        except IntegrityError:  # the same key raced in from another request
            await db.rollback()
            existing = await db.scalar(
                select(IdempotencyKey).where(
                    IdempotencyKey.account_id == account_id, IdempotencyKey.key == key
                )
            )
            assert existing is not None
    if existing.request_hash != digest:
        raise ValidationFailed(
            "This Idempotency-Key was used with a different request", field="Idempotency-Key"
        )
    if existing.post_id is None and existing.scheduled_id is None:
        raise RequestInProgress()
    return existing


async def complete_key(
    db: AsyncSession,
    account_id: int,
    key: str,
    *,
    post_id: int | None = None,
    scheduled_id: int | None = None,
) -> None:
    row = await db.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.account_id == account_id, IdempotencyKey.key == key
        )
    )
    if row is not None:
        row.post_id, row.scheduled_id = post_id, scheduled_id
        await db.commit()


async def release_key(db: AsyncSession, account_id: int, key: str) -> None:
    """The request failed: let the client retry with the same key."""
    await db.rollback()
    await db.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.account_id == account_id, IdempotencyKey.key == key
        )
    )
    await db.commit()


def parse_time(raw: str) -> datetime:
    """An ISO 8601 date-time with a time zone, in UTC; ValidationFailed otherwise."""
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(
            "scheduled_at must be an ISO 8601 date-time", field="scheduled_at"
        ) from None
    if moment.tzinfo is None:
        raise ValidationFailed("scheduled_at needs a time zone", field="scheduled_at")
    try:
        # Kept in UTC: other offsets were stored as if they were UTC.
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-14:00 is past the year 9999 in UTC
        raise ValidationFailed("scheduled_at is out of range", field="scheduled_at") from None


async def schedule(
    db: AsyncSession, account: Account, when: datetime, params: dict[str, Any]
) -> ScheduledStatus:
    """Keep a status to publish at `when` (≥ 5 minutes ahead), with a job to publish it."""
    if when < utcnow() + MIN_SCHEDULE_AHEAD:
        raise ValidationFailed(
            "scheduled_at must be at least 5 minutes in the future", field="scheduled_at"
        )
    count = len(
        (
            await db.scalars(
                select(ScheduledStatus.id).where(ScheduledStatus.account_id == account.id)
            )
        ).all()
    )
    if count >= MAX_SCHEDULED:
        raise ValidationFailed(f"At most {MAX_SCHEDULED} scheduled statuses", field="scheduled_at")
    row = ScheduledStatus(account_id=account.id, scheduled_at=when, params=params)
    db.add(row)
    await db.flush()
    await enqueue(db, "status.scheduled", {"id": row.id}, run_at=when)
    await db.commit()
    return row


async def my_scheduled(db: AsyncSession, account_id: int) -> list[ScheduledStatus]:
    rows = await db.scalars(
        select(ScheduledStatus)
        .where(ScheduledStatus.account_id == account_id)
        .order_by(ScheduledStatus.scheduled_at)
    )
    return list(rows.all())


async def get_scheduled(db: AsyncSession, account_id: int, scheduled_id: int) -> ScheduledStatus:
    row = await db.get(ScheduledStatus, scheduled_id)
    if row is None or row.account_id != account_id:
        raise NotFound("Record not found")
    return row


async def reschedule(
    db: AsyncSession, account_id: int, scheduled_id: int, when: datetime
) -> ScheduledStatus:
    row = await get_scheduled(db, account_id, scheduled_id)
    if when < utcnow() + MIN_SCHEDULE_AHEAD:
        raise ValidationFailed(
            "scheduled_at must be at least 5 minutes in the future", field="scheduled_at"
        )
    row.scheduled_at = when
    await enqueue(db, "status.scheduled", {"id": row.id}, run_at=when)
    await db.commit()
    return row


async def cancel(db: AsyncSession, account_id: int, scheduled_id: int) -> None:
    row = await get_scheduled(db, account_id, scheduled_id)
    await db.delete(row)
    await db.commit()


@job_handler("status.scheduled")
async def publish_scheduled(db: AsyncSession, payload: dict[str, Any]) -> None:
    """Publish a scheduled status when its time has come (a rescheduled one waits for its
    own job; a cancelled one is gone). Deleting the row in the same transaction as the post
    makes a re-run of this job a no-op."""
    from kith.mastodon_api.params import Params
    from kith.mastodon_api.statuses import post_input_from
    from kith.posts import service as posts

    row = await db.get(ScheduledStatus, int(payload["id"]))
    if row is None or row.scheduled_at > utcnow() + timedelta(seconds=1):
        return
    author = await db.get(Account, row.account_id)
    if author is None or author.suspended_at is not None:
        await db.delete(row)
        return
    await db.delete(row)
    try:
        await posts.create_post(db, author, post_input_from(Params(row.params)))
    except KithError:
        # The post became invalid (its reply target was deleted, say): drop it, as Mastodon does.
        await db.rollback()
        stale = await db.get(ScheduledStatus, int(payload["id"]))
        if stale is not None:
            await db.delete(stale)


def scheduled_entity(row: ScheduledStatus) -> dict[str, Any]:
    from kith.mastodon_api.entities import iso

    params = dict(row.params)
    return {
        "id": str(row.id),
        "scheduled_at": iso(row.scheduled_at),
        "media_attachments": [],
        "params": {
            "text": params.get("status", ""),
            "poll": params.get("poll"),
            "media_ids": None,
            "sensitive": params.get("sensitive"),
            "spoiler_text": params.get("spoiler_text"),
            "visibility": params.get("visibility", "public"),
            "in_reply_to_id": params.get("in_reply_to_id"),
            "language": params.get("language"),
            "application_id": None,
            "scheduled_at": None,
            "idempotency": None,
            "with_rate_limit": False,
        },
    }
