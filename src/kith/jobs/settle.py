"""Group commit of finished jobs: the writes of every job that finished while the previous
commit ran, and the removal of their rows, in one transaction.

A handler that returns a `queue.Settle` did its work (reading, and for a delivery the
request) without writing; its writes are handed to the batch's `GroupSettler`. A finished
job waits for the batch's jobs still running, at most `GATHER_SECONDS`, and those that
finished meanwhile are committed together (jobs that finish during that commit go in the
next one) — with ten deliveries in flight, one transaction settles the ten answers instead
of one each. Each job's writes and the deletion of its row
are still in the same transaction, so a worker killed at any moment loses nothing and leaves
each job either done or still queued (run again once its lease ends, as before). A job
whose lease passed to another worker meanwhile has its writes dropped, as `worker._run_in`
does. If the group's transaction fails, its jobs are settled again one by one, so one bad job
cannot fail the others."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from kith.jobs import queue
from kith.jobs.models import Job
from kith.runtime import drop_after_commit, run_after_commit

log = logging.getLogger(__name__)


# How long finished jobs wait for jobs still running (a delivery's answer on its way) before
# they are committed without them.
GATHER_SECONDS = 0.05


class GroupSettler:
    """Settles one batch's finished jobs in shared transactions (one commit at a time)."""

    def __init__(self, factory: async_sessionmaker[AsyncSession], worker_id: str) -> None:
        self.factory = factory
        self.worker_id = worker_id
        self.running = 0  # jobs started and not yet finished or handed over
        self._waiting: list[tuple[Job, queue.Settle, asyncio.Future[bool]]] = []
        self._arrived = asyncio.Event()
        self._committing: asyncio.Task[None] | None = None

    async def settle(self, job: Job, work: queue.Settle) -> bool:
        """Commit `work` and the removal of `job` (with whatever else is waiting); True if
        committed, False if the job's lease was lost or its writes failed (then retried).
        The caller counted the job in `running`; it is counted out here."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((job, work, done))
        self.running -= 1
        self._arrived.set()
        if self._committing is None or self._committing.done():
            self._committing = asyncio.create_task(self._commit_waiting())
        return await done

    def left(self) -> None:
        """A job counted in `running` ended without writes to settle here."""
        self.running -= 1
        self._arrived.set()

    async def abandon(self) -> None:
        """Stop a commit under way (the batch was cancelled: the worker is stopping); its
        transaction is rolled back, so its jobs run again once their leases end."""
        task = self._committing
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except BaseException:  # noqa: S110 (its own cancellation, or what stopped it)
                pass

    async def _gather(self) -> None:
        """Wait a little for jobs still running, so that they join this commit."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GATHER_SECONDS
        while self.running > 0:
            self._arrived.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._arrived.wait()
            except TimeoutError:
                return

    async def _commit_waiting(self) -> None:
        while self._waiting:
            await self._gather()
            group, self._waiting = self._waiting, []
            try:
                try:
                    results = await self._commit_group(group)
                except Exception:  # one by one, so that one job's failure is only its own
                    log.warning("settling %d jobs together failed; one by one", len(group))
                    results = [await self._commit_alone(job, work) for job, work, _ in group]
            except BaseException as exc:  # database gone, or shutting down: nothing committed
                for _, _, done in group:
                    if not done.done():
                        done.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for (_, _, done), ok in zip(group, results, strict=True):
                if not done.done():
                    done.set_result(ok)

    async def _commit_group(
        self, group: list[tuple[Job, queue.Settle, asyncio.Future[bool]]]
    ) -> list[bool]:
        async with self.factory() as db:
            try:
                held = await queue.release_many(db, [job for job, _, _ in group], self.worker_id)
                for job, work, _ in group:
                    if job.id in held:
                        await work(db)
                await db.commit()
            except BaseException:
                await db.rollback()
                drop_after_commit(db)
                raise
            await run_after_commit(db)
        for job, _, _ in group:
            if job.id not in held:
                log.warning("job %s (%s) outlived its lease; not committed", job.id, job.kind)
        return [job.id in held for job, _, _ in group]

    async def _commit_alone(self, job: Job, work: queue.Settle) -> bool:
        async with self.factory() as db:
            return await settle_in(db, job, work, self.worker_id)


async def settle_in(db: AsyncSession, job: Job, work: queue.Settle, worker_id: str) -> bool:
    """Commit one job's writes with its removal in `db`; on failure, record it for a retry."""
    try:
        await work(db)
        if not await queue.release(db, job, worker_id):
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
    await run_after_commit(db)
    return True
