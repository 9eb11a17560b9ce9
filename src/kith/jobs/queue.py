"""Enqueue, claim, finish and retry jobs. Enqueue inside the caller's transaction."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, or_, select, update
from sqlalchemy import insert as sa_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from kith.db import new_id, utcnow
from kith.jobs.models import Job

Settle = Callable[[AsyncSession], Awaitable[None]]
"""The writes that finish a job, returned by a handler that did its work without writing:
the worker runs them in one transaction with other jobs' writes and the jobs' removal."""

JobHandler = Callable[[AsyncSession, dict[str, Any]], Awaitable[Settle | None]]

JobLane = Callable[[dict[str, Any]], str]

HANDLERS: dict[str, JobHandler] = {}
LANES: dict[str, JobLane] = {}


def job_handler(kind: str, *, lane: JobLane | None = None) -> Callable[[JobHandler], JobHandler]:
    """Register the function that performs jobs of `kind` (it must be idempotent).

    A handler writes its effects in the session it is given, and the worker commits them
    with the job's removal; or, having written nothing there, it returns a `Settle` with
    those writes, which the worker commits together with other finished jobs' (one
    transaction for several jobs: see worker.py).

    `lane` (optional) names a job's lane from its payload: a worker runs the jobs of a batch
    that are in different lanes at the same time and those of one lane one after another.
    Only for handlers that hold no database write open while they wait (see worker.py)."""

    def register(fn: JobHandler) -> JobHandler:
        HANDLERS[kind] = fn
        if lane is not None:
            LANES[kind] = lane
        return fn

    return register


async def enqueue(
    db: AsyncSession,
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    run_at: datetime | None = None,
    dedupe_key: str | None = None,
    max_attempts: int = 10,
) -> None:
    """Add a job in the caller's transaction; it exists only if the caller commits.

    With `dedupe_key`, a job with the same key already waiting makes this a no-op."""
    values = {
        "id": new_id(),
        "kind": kind,
        "payload": payload or {},
        "run_at": run_at or utcnow(),
        "attempts": 0,
        "max_attempts": max_attempts,
        "dedupe_key": dedupe_key,
        "created_at": utcnow(),
    }
    dialect = db.get_bind().dialect.name
    if dedupe_key is None:
        await db.execute(sa_insert(Job).values(**values))
        return
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(Job).values(**values).on_conflict_do_nothing(index_elements=["dedupe_key"])
    await db.execute(stmt)


async def claim(
    db: AsyncSession, worker_id: str, *, limit: int = 10, lease: float = 60.0
) -> list[Job]:
    """Lease up to `limit` due jobs to this worker and commit the lease; oldest first.

    PostgreSQL: FOR UPDATE SKIP LOCKED, so workers never wait on each other. SQLite: the
    UPDATE is one short write transaction, which SQLite serializes anyway."""
    now = utcnow()
    due = (
        select(Job.id)
        .where(
            Job.failed_at.is_(None),
            Job.run_at <= now,
            or_(Job.locked_until.is_(None), Job.locked_until < now),
        )
        .order_by(Job.run_at)
        .limit(limit)
    )
    if db.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    stmt = (
        update(Job)
        .where(Job.id.in_(due.scalar_subquery()))
        .values(
            locked_until=now + timedelta(seconds=lease),
            locked_by=worker_id,
            attempts=Job.attempts + 1,
        )
        .returning(Job)
        # populate_existing: a session that saw these jobs before gets the new lease, not
        # its stale copy.
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    jobs = list((await db.execute(stmt)).scalars().all())
    await db.commit()
    # RETURNING keeps no order: oldest first, so that a lane runs its jobs as they came.
    jobs.sort(key=lambda job: (job.run_at, job.id))
    return jobs


async def release(db: AsyncSession, job: Job, worker_id: str) -> bool:
    """Delete a job that ran, in the caller's transaction, if this worker still holds its
    lease; False when it doesn't (the caller must then not commit the job's effects)."""
    result = await db.execute(_RELEASE, {"job_id": job.id, "worker_id": worker_id})
    return bool(getattr(result, "rowcount", 0))


_JOBS = cast(Table, Job.__table__)
# Built once (every finished job runs it; building costs more than running it).
_RELEASE = delete(_JOBS).where(
    _JOBS.c.id == bindparam("job_id"), _JOBS.c.locked_by == bindparam("worker_id")
)


async def release_many(db: AsyncSession, jobs: list[Job], worker_id: str) -> set[int]:
    """Delete jobs that ran, in the caller's transaction, where this worker still holds
    their lease; returns the ids deleted (the others' effects must not be committed)."""
    if not jobs:
        return set()
    result = await db.execute(
        _RELEASE_MANY, {"job_ids": [job.id for job in jobs], "worker_id": worker_id}
    )
    return set(result.scalars().all())


_RELEASE_MANY = (
    delete(_JOBS)
    .where(
        _JOBS.c.id.in_(bindparam("job_ids", expanding=True)),
        _JOBS.c.locked_by == bindparam("worker_id"),
    )
    .returning(_JOBS.c.id)
)


async def finish(db: AsyncSession, job: Job, worker_id: str) -> None:
    """Remove a job that ran (only if this worker still holds its lease) and commit."""
    await release(db, job, worker_id)
    await db.commit()


def backoff_seconds(attempts: int) -> float:
    """Exponential back-off with full jitter: ~30 s, 1 min, 2 min … capped at 6 h."""
    base = min(30 * 2 ** max(attempts - 1, 0), 6 * 3600)
    return base / 2 + random.uniform(0, base / 2)


async def retry_later(db: AsyncSession, job: Job, error: str) -> None:
    """Record a failure; schedule the next try, or give up after max_attempts. Does nothing
    if the job's lease passed to another worker meanwhile (that worker decides)."""
    now = utcnow()
    values: dict[str, Any] = {"last_error": error[:2000], "locked_until": None, "locked_by": None}
    if job.attempts >= job.max_attempts:
        values["failed_at"] = now
    else:
        values["run_at"] = now + timedelta(seconds=backoff_seconds(job.attempts))
    held = Job.locked_by.is_(None) if job.locked_by is None else Job.locked_by == job.locked_by
    await db.execute(update(Job).where(Job.id == job.id, held).values(**values))
    await db.commit()
