"""The worker loop: claim due jobs, run their handlers, finish or retry them."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kith.db import utcnow
from kith.jobs import queue
from kith.jobs.models import Job
from kith.jobs.settle import GroupSettler, settle_in
from kith.runtime import drop_after_commit, run_after_commit

log = logging.getLogger(__name__)

PERIODIC_JOBS: dict[str, timedelta] = {
    "cleanup": timedelta(minutes=10),
    "trends.refresh": timedelta(minutes=10),
    "media.prune_remote": timedelta(hours=1),
    "federation.prune_posts": timedelta(hours=1),
    "timelines.trim_feeds": timedelta(hours=1),
}
# How long a claimed job stays a worker's: if the worker dies, another runs the job after this.
# Longer than any job should take (a delivery times out well before), short enough that a
# crash delays work by a minute at most.
DEFAULT_LEASE_SECONDS = 60.0


def new_worker_id() -> str:
    """host:pid:random — shows in `jobs.locked_by` which process holds a lease."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


async def run_job(
    factory: async_sessionmaker[AsyncSession],
    job: Job,
    worker_id: str,
    settler: GroupSettler | None = None,
) -> bool:
    """Run one claimed job in its own session; True if it succeeded. A handler's `Settle`
    goes to `settler` (committed with other jobs' writes), or is committed here without
    one. (On SQLite, concurrent lanes take turns to write in the driver:
    `kith.sqlite_driver`.)"""
    if settler is not None:
        settler.running += 1
    handed_over = False
    try:
        async with factory() as db:
            work = await _run_in(db, job, worker_id)
            if isinstance(work, bool):
                return work
            if settler is None:
                return await settle_in(db, job, work, worker_id)
        handed_over = True
        return await settler.settle(job, work)  # this job's session is closed meanwhile
    finally:
        if settler is not None and not handed_over:
            settler.left()


async def _run_in(db: AsyncSession, job: Job, worker_id: str) -> bool | queue.Settle:
    """Run the handler; commit its effects with the job's removal (True if done), or
    return its `Settle` (it wrote nothing in `db`) for the caller to commit."""
    handler = queue.HANDLERS.get(job.kind)
    if handler is None:
        await queue.retry_later(db, job, f"no handler for job kind {job.kind!r}")
        return False
    try:
        work = await handler(db, job.payload)
        if work is not None:
            await db.rollback()  # ends the handler's reads; it wrote nothing
            return work
        # Remove the job in the transaction that holds its effects: a crash before the
        # commit loses both (the job runs again), never only one of them.
        if not await queue.release(db, job, worker_id):
            # The lease ran out and another worker has the job: leave it to that one.
            await db.rollback()
            drop_after_commit(db)
            log.warning("job %s (%s) outlived its lease; not committed", job.id, job.kind)
            return False
        await db.commit()
    except Exception as exc:  # a job's failure must not kill the worker
        await db.rollback()
        drop_after_commit(db)
        log.warning("job %s (%s) failed: %r", job.id, job.kind, exc)
        await queue.retry_later(db, job, repr(exc))
        return False
    await run_after_commit(db)  # e.g. a stored remote post or a like's notification, live
    return True


async def schedule_periodic(factory: async_sessionmaker[AsyncSession]) -> None:
    """Make sure each periodic job has one pending row (dedupe_key per time slot)."""
    async with factory() as db:
        now = utcnow()
        for kind, every in PERIODIC_JOBS.items():
            slot = int(now.timestamp() // every.total_seconds())
            await queue.enqueue(db, kind, {}, dedupe_key=f"periodic:{kind}:{slot}")
        await db.commit()


async def run_once(
    factory: async_sessionmaker[AsyncSession],
    worker_id: str,
    limit: int = 10,
    *,
    lease: float = DEFAULT_LEASE_SECONDS,
) -> int:
    """Claim and run one batch of due jobs; returns how many ran (tests call this directly)."""
    async with factory() as db:
        jobs = await queue.claim(db, worker_id, limit=limit, lease=lease)
    await run_batch(factory, jobs, worker_id)
    return len(jobs)


def _lane_of(job: Job) -> str | None:
    lane = queue.LANES.get(job.kind)
    if lane is None:
        return None
    try:
        return f"{job.kind}:{lane(job.payload)}"
    except Exception:  # a malformed payload: its handler will fail and say why
        return None


async def run_batch(
    factory: async_sessionmaker[AsyncSession], jobs: list[Job], worker_id: str
) -> None:
    """Run a claimed batch. Jobs without a lane run one after another, first (a handler may
    keep a write open while it waits, which would stall the others on SQLite); then the
    lanes run concurrently, each lane's jobs in order: deliveries to 10 hosts wait for 10
    answers at once instead of one after another. A job's effects commit with its removal;
    jobs whose handlers return their writes share transactions (`settle.GroupSettler`), and
    a lane's next job starts only once the previous one is committed."""
    settler = GroupSettler(factory, worker_id)
    lanes: dict[str, list[Job]] = {}
    try:
        for job in jobs:
            lane = _lane_of(job)
            if lane is None:
                await run_job(factory, job, worker_id, settler)
            else:
                lanes.setdefault(lane, []).append(job)
        results = await asyncio.gather(
            *(_run_lane(factory, lane, worker_id, settler) for lane in lanes.values()),
            return_exceptions=True,
        )
    except BaseException:
        await settler.abandon()
        raise
    for result in results:
        if isinstance(result, BaseException):
            raise result  # after every lane ended: the loop logs it, leases expire as usual


async def _run_lane(
    factory: async_sessionmaker[AsyncSession],
    jobs: list[Job],
    worker_id: str,
    settler: GroupSettler,
) -> None:
    for job in jobs:
        await run_job(factory, job, worker_id, settler)


async def work_forever(
    factory: async_sessionmaker[AsyncSession],
    *,
    idle_sleep: float = 1.0,
    worker_id: str | None = None,
    lease: float = DEFAULT_LEASE_SECONDS,
) -> None:
    """Run jobs until cancelled. Sleeps `idle_sleep` when nothing is due; each claimed job is
    leased for `lease` seconds."""
    from kith import handlers  # noqa: F401  (registers every job handler)

    worker_id = worker_id or new_worker_id()
    log.info("worker %s started", worker_id)
    last_periodic = 0.0
    loop = asyncio.get_running_loop()
    while True:
        try:
            if loop.time() - last_periodic > 60:
                await schedule_periodic(factory)
                last_periodic = loop.time()
            ran = await run_once(factory, worker_id, lease=lease)
        except asyncio.CancelledError:
            raise
        except Exception:  # database briefly unavailable, say: keep the worker alive
            log.exception("worker loop error")
            ran = 0
        if not ran:
            await asyncio.sleep(idle_sleep)
