"""The durable job queue: enqueue in the caller's transaction, dedupe, leases, retries with
back-off, giving up, periodic jobs, a worker killed mid-job, and the poll-ended job."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kith.db import utcnow
from kith.jobs import queue, worker
from kith.jobs.models import Job
from kith.notifications.models import Notification
from kith.posts import service as posts
from kith.posts.models import Poll, Tag
from kith.posts.service import PollInput
from kith.runtime import Runtime
from tests.world import person, post, viewer

REPO = Path(__file__).resolve().parent.parent


async def jobs(db: AsyncSession, kind: str | None = None) -> list[Job]:
    stmt = select(Job).order_by(Job.id).execution_options(populate_existing=True)
    if kind is not None:
        stmt = stmt.where(Job.kind == kind)
    return list((await db.scalars(stmt)).all())


@pytest.fixture
def handlers(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Register test-only job kinds for one test."""
    calls: dict[str, Any] = {"n": 0}

    async def fail(db: AsyncSession, payload: dict[str, Any]) -> None:
        calls["n"] += 1
        raise RuntimeError(f"the mail server said no ({calls['n']})")

    async def add_tag(db: AsyncSession, payload: dict[str, Any]) -> None:
        calls["n"] += 1
        db.add(Tag(name=payload["name"], display_name=payload["name"]))

    monkeypatch.setitem(queue.HANDLERS, "test.fail", fail)
    monkeypatch.setitem(queue.HANDLERS, "test.add_tag", add_tag)
    yield calls


async def test_enqueue__in_a_rolled_back_transaction__leaves_no_job(db: AsyncSession) -> None:
    # Given a change that enqueues a job and then fails
    await queue.enqueue(db, "test.add_tag", {"name": "x"})
    # When the transaction rolls back
    await db.rollback()
    # Then the job is gone with it
    assert await jobs(db) == []


async def test_enqueue__committed__is_due_now(db: AsyncSession) -> None:
    await queue.enqueue(db, "test.add_tag", {"name": "x"})
    await db.commit()
    (job,) = await jobs(db)
    assert job.kind == "test.add_tag" and job.payload == {"name": "x"}
    assert job.attempts == 0 and job.run_at <= utcnow()


async def test_enqueue__same_dedupe_key__is_one_job(db: AsyncSession) -> None:
    # Given a job with a dedupe key
    await queue.enqueue(db, "test.add_tag", {"name": "a"}, dedupe_key="tag:a")
    await db.commit()
    # When the same logical job is enqueued again (another transaction, a different payload)
    await queue.enqueue(db, "test.add_tag", {"name": "b"}, dedupe_key="tag:a")
    await queue.enqueue(db, "test.add_tag", {"name": "c"}, dedupe_key="tag:c")
    await db.commit()
    # Then there is one job per key, and the first one's payload stands
    assert sorted((j.dedupe_key, j.payload["name"]) for j in await jobs(db)) == [
        ("tag:a", "a"),
        ("tag:c", "c"),
    ]


async def test_claim__leases_a_job_to_one_worker_until_the_lease_ends(rt: Runtime) -> None:
    # Given one due job
    async with rt.sessions() as db:
        await queue.enqueue(db, "test.add_tag", {"name": "x"})
        await db.commit()
        # When worker A claims it with a short lease
        (claimed,) = await queue.claim(db, "A", lease=1.0)
        assert claimed.locked_by == "A" and claimed.attempts == 1
        # Then worker B finds nothing while the lease holds
        assert await queue.claim(db, "B") == []
        # And once the lease has run out (A died, say), B gets it, as a second attempt
        await asyncio.sleep(1.1)
        (again,) = await queue.claim(db, "B")
    assert again.id == claimed.id and again.locked_by == "B" and again.attempts == 2


async def test_claim__by_workers_at_once__never_hands_out_a_job_twice(rt: Runtime) -> None:
    # Given 30 due jobs
    async with rt.sessions() as db:
        for i in range(30):
            await queue.enqueue(db, "test.add_tag", {"name": f"t{i}"})
        await db.commit()

    async def worker_claims(name: str) -> list[int]:
        got: list[int] = []
        async with rt.sessions() as db:
            while batch := await queue.claim(db, name, limit=4):
                got += [j.id for j in batch]
        return got

    # When three workers claim at the same time until nothing is left
    claimed = await asyncio.gather(*(worker_claims(n) for n in "ABC"))
    # Then every job went to exactly one of them
    everything = [i for ids in claimed for i in ids]
    assert len(everything) == len(set(everything)) == 30


async def test_claim__leaves_jobs_that_are_not_due_yet(db: AsyncSession) -> None:
    await queue.enqueue(db, "test.add_tag", {"name": "x"}, run_at=utcnow() + timedelta(hours=1))
    await db.commit()
    assert await queue.claim(db, "A") == []


async def test_claim__takes_at_most_limit_oldest_first(db: AsyncSession) -> None:
    now = utcnow()
    for i in range(5):
        await queue.enqueue(db, "test.add_tag", {"name": f"t{i}"}, run_at=now - timedelta(i))
    await db.commit()
    claimed = await queue.claim(db, "A", limit=2)
    assert sorted(j.payload["name"] for j in claimed) == ["t3", "t4"]


async def test_run_once__success__commits_the_effect_and_removes_the_job(
    rt: Runtime, handlers: dict[str, Any]
) -> None:
    async with rt.sessions() as db:
        await queue.enqueue(db, "test.add_tag", {"name": "done"})
        await db.commit()
    assert await worker.run_once(rt.sessions, "A") == 1
    async with rt.sessions() as db:
        assert await jobs(db) == []
        assert await db.scalar(select(Tag.name)) == "done"
    # Nothing is left to run
    assert await worker.run_once(rt.sessions, "A") == 0


async def test_failing_job__is_retried_later_with_the_error_recorded(
    rt: Runtime, handlers: dict[str, Any]
) -> None:
    # Given a job whose handler raises
    async with rt.sessions() as db:
        await queue.enqueue(db, "test.fail")
        await db.commit()
    # When a worker runs it
    before = utcnow()
    await worker.run_once(rt.sessions, "A")
    # Then it stays, unlocked, with its error, and is due again after a back-off (15–30 s)
    async with rt.sessions() as db:
        (job,) = await jobs(db)
    assert job.attempts == 1 and job.failed_at is None and job.locked_until is None
    assert job.last_error is not None and "the mail server said no (1)" in job.last_error
    assert before + timedelta(seconds=15) <= job.run_at <= utcnow() + timedelta(seconds=30)
    # And a worker passing by right away leaves it alone
    assert await worker.run_once(rt.sessions, "B") == 0


async def test_failing_job__gives_up_after_max_attempts(
    rt: Runtime, handlers: dict[str, Any]
) -> None:
    # Given a job that always fails and may be tried 3 times
    async with rt.sessions() as db:
        await queue.enqueue(db, "test.fail", max_attempts=3)
        await db.commit()
    for attempt in range(1, 4):
        # When its back-off is over and a worker runs it again
        async with rt.sessions() as db:
            await db.execute(update(Job).values(run_at=utcnow()))
            await db.commit()
        assert await worker.run_once(rt.sessions, "A") == 1
        async with rt.sessions() as db:
            (job,) = await jobs(db)
        assert job.attempts == attempt
        # Then it failed for good on the last try only
        assert (job.failed_at is not None) == (attempt == 3)
    assert job.last_error is not None and "(3)" in job.last_error
    # And a failed job is never claimed again
    async with rt.sessions() as db:
        await db.execute(update(Job).values(run_at=utcnow() - timedelta(hours=1)))
        await db.commit()
    assert await worker.run_once(rt.sessions, "A") == 0
    assert handlers["n"] == 3


async def test_job_of_unknown_kind__is_kept_with_an_error(rt: Runtime) -> None:
    async with rt.sessions() as db:
        await queue.enqueue(db, "test.nobody_handles_this")
        await db.commit()
    await worker.run_once(rt.sessions, "A")
    async with rt.sessions() as db:
        (job,) = await jobs(db)
    assert job.last_error is not None and "no handler" in job.last_error


def test_backoff__grows_exponentially_with_jitter_and_is_capped() -> None:
    for attempts, base in ((1, 30), (2, 60), (3, 120), (6, 960)):
        samples = [queue.backoff_seconds(attempts) for _ in range(50)]
        assert all(base / 2 <= s <= base for s in samples)
        assert len(set(samples)) > 1  # jitter: retries of many jobs don't stampede together
    assert queue.backoff_seconds(40) <= 6 * 3600


async def test_job_that_outlived_its_lease__commits_nothing(
    rt: Runtime, handlers: dict[str, Any]
) -> None:
    # Given worker A claimed a job, then took so long that its lease ran out and B claimed it
    async with rt.sessions() as db:
        await queue.enqueue(db, "test.add_tag", {"name": "twice"})
        await db.commit()
        (job,) = await queue.claim(db, "A", lease=0.1)
        await asyncio.sleep(0.2)
        (taken,) = await queue.claim(db, "B")
    # When A finally finishes its run
    assert not await worker.run_job(rt.sessions, job, "A")
    # Then A's effects are rolled back and the job is still B's
    async with rt.sessions() as db:
        assert await db.scalar(select(func.count()).select_from(Tag)) == 0
        (still,) = await jobs(db)
    assert still.locked_by == "B"
    # And B runs it exactly once
    assert await worker.run_job(rt.sessions, taken, "B")
    async with rt.sessions() as db:
        assert await db.scalar(select(func.count()).select_from(Tag)) == 1
        assert await jobs(db) == []


async def test_periodic_jobs__scheduled_by_many_workers__exist_once_per_slot(
    rt: Runtime,
) -> None:
    # Given three workers starting at the same moment
    for _ in range(3):
        await worker.schedule_periodic(rt.sessions)
    # Then each periodic job is waiting once
    async with rt.sessions() as db:
        kinds = [j.kind for j in await jobs(db)]
    assert sorted(kinds) == sorted(worker.PERIODIC_JOBS)
    # And the clean-up job runs
    assert await worker.run_once(rt.sessions, "A") == len(kinds)
    async with rt.sessions() as db:
        assert await jobs(db) == []


# --- lanes: a batch's jobs at once ------------------------------------------------------


async def test_laned_jobs__other_lanes_at_once__one_lane_in_order__unlaned_first(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a kind whose jobs name a lane, and one without lanes, all in one batch
    events: list[str] = []
    running = {"now": 0, "most": 0}

    async def laned(db: AsyncSession, payload: dict[str, Any]) -> None:
        events.append(f"start {payload['name']}")
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        await asyncio.sleep(0.05)  # waiting on another server, say
        running["now"] -= 1
        db.add(Tag(name=payload["name"], display_name=payload["name"]))
        events.append(f"end {payload['name']}")

    async def unlaned(db: AsyncSession, payload: dict[str, Any]) -> None:
        events.append("start serial")
        await asyncio.sleep(0.05)
        events.append("end serial")

    monkeypatch.setitem(queue.HANDLERS, "test.laned", laned)
    monkeypatch.setitem(queue.LANES, "test.laned", lambda payload: str(payload["lane"]))
    monkeypatch.setitem(queue.HANDLERS, "test.serial", unlaned)
    names = [("a", "a1"), ("b", "b1"), ("a", "a2"), ("c", "c1"), ("a", "a3"), ("d", "d1")]
    async with rt.sessions() as db:
        for lane, name in names:
            await queue.enqueue(db, "test.laned", {"lane": lane, "name": name})
        await queue.enqueue(db, "test.serial", {})
        await db.commit()
    # When one worker runs the batch
    assert await worker.run_once(rt.sessions, "A", limit=10) == len(names) + 1
    # Then the job without a lane ran alone, before any other
    assert events[:2] == ["start serial", "end serial"]
    # And the four lanes ran at once, lane a's jobs one after another, in order
    assert running["most"] == 4
    lane_a = [e for e in events if e.endswith(("a1", "a2", "a3"))]
    assert lane_a == ["start a1", "end a1", "start a2", "end a2", "start a3", "end a3"]
    # And every job committed its effect and was removed (concurrent writers on SQLite too)
    async with rt.sessions() as db:
        assert await db.scalar(select(func.count()).select_from(Tag)) == len(names)
        assert await jobs(db) == []


# --- jobs that hand their writes to the worker (group commit) ---------------------------


@pytest.fixture
def settling(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A laned kind whose handler waits (a request, say), writes nothing, and returns its
    writes — a tag — for the worker to commit; `fail` names the one whose writes raise.
    Counts the transactions that settled jobs."""
    seen: dict[str, Any] = {"groups": [], "fail": None}

    async def answer(db: AsyncSession, payload: dict[str, Any]) -> queue.Settle:
        await asyncio.sleep(0.01)
        name = str(payload["name"])

        async def write(db: AsyncSession) -> None:
            if name == seen["fail"]:
                raise RuntimeError(f"cannot record {name}")
            db.add(Tag(name=name, display_name=name))
            await db.flush()

        return write

    real_release_many = queue.release_many

    async def counted(db: AsyncSession, group: list[Job], worker_id: str) -> set[int]:
        seen["groups"].append(len(group))
        return await real_release_many(db, group, worker_id)

    monkeypatch.setitem(queue.HANDLERS, "test.settled", answer)
    monkeypatch.setitem(queue.LANES, "test.settled", lambda payload: str(payload["name"]))
    monkeypatch.setattr(queue, "release_many", counted)
    return seen


async def _enqueue_settled(rt: Runtime, names: list[str]) -> None:
    async with rt.sessions() as db:
        for name in names:
            await queue.enqueue(db, "test.settled", {"name": name})
        await db.commit()


async def test_settled_jobs__of_one_batch__commit_together_and_are_removed(
    rt: Runtime, settling: dict[str, Any]
) -> None:
    # Given five jobs in five lanes whose handlers return their writes
    names = ["a", "b", "c", "d", "e"]
    await _enqueue_settled(rt, names)
    # When one worker runs them as a batch
    assert await worker.run_once(rt.sessions, "A") == 5
    # Then one transaction settled all five: every effect is there and every job is gone
    assert settling["groups"] == [5]
    async with rt.sessions() as db:
        assert sorted((await db.scalars(select(Tag.name))).all()) == names
        assert await jobs(db) == []


async def test_settled_jobs__one_failing_write__fails_only_its_own_job(
    rt: Runtime, settling: dict[str, Any]
) -> None:
    # Given three jobs settled together, one of whose writes fails
    settling["fail"] = "b"
    await _enqueue_settled(rt, ["a", "b", "c"])
    # When the worker runs them
    await worker.run_once(rt.sessions, "A")
    # Then the others' effects are committed and their jobs removed
    async with rt.sessions() as db:
        assert sorted((await db.scalars(select(Tag.name))).all()) == ["a", "c"]
        (left,) = await jobs(db)
    # And the failing one is kept for a retry, with its error
    assert left.payload == {"name": "b"} and "cannot record b" in (left.last_error or "")
    assert left.locked_by is None and left.run_at > utcnow()


async def test_settled_job__whose_lease_passed_to_another_worker__commits_nothing(
    rt: Runtime, settling: dict[str, Any]
) -> None:
    # Given worker A claimed two jobs and lost one of them to B (its lease ran out)
    await _enqueue_settled(rt, ["kept", "lost"])
    async with rt.sessions() as db:
        claimed = await queue.claim(db, "A", lease=60)
        lost = next(j for j in claimed if j.payload["name"] == "lost")
        await db.execute(update(Job).where(Job.id == lost.id).values(locked_by="B"))
        await db.commit()
    # When A runs its batch
    await worker.run_batch(rt.sessions, claimed, "A")
    # Then only the job A still held is committed; B's job and its effect are untouched
    async with rt.sessions() as db:
        assert (await db.scalars(select(Tag.name))).all() == ["kept"]
        (still,) = await jobs(db)
    assert still.id == lost.id and still.locked_by == "B"


async def test_settled_jobs__worker_stopped_before_their_commit__run_again_once(
    rt: Runtime, settling: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given worker A's batch of three whose group commit hangs (the process is about to die)
    await _enqueue_settled(rt, ["a", "b", "c"])
    hang = asyncio.Event()
    real_release_many = queue.release_many

    async def stuck(db: AsyncSession, group: list[Job], worker_id: str) -> set[int]:
        held = await real_release_many(db, group, worker_id)
        await hang.wait()  # the rows are deleted in the open transaction, not committed
        return held

    monkeypatch.setattr(queue, "release_many", stuck)
    async with rt.sessions() as db:
        claimed = await queue.claim(db, "A", lease=0.5)
    run = asyncio.create_task(worker.run_batch(rt.sessions, claimed, "A"))
    await asyncio.sleep(0.2)
    # When A is stopped there
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    # Then nothing of it was committed: no effect, and the three jobs are still queued
    async with rt.sessions() as db:
        assert (await db.scalars(select(Tag.name))).all() == []
        assert len(await jobs(db)) == 3
    # And once A's leases end, worker B runs each of them exactly once
    monkeypatch.setattr(queue, "release_many", real_release_many)
    await asyncio.sleep(0.5)
    assert await worker.run_once(rt.sessions, "B") == 3
    async with rt.sessions() as db:
        assert sorted((await db.scalars(select(Tag.name))).all()) == ["a", "b", "c"]
        assert await jobs(db) == []


# --- the poll-ended job -------------------------------------------------------------------


async def _ended_poll(db: AsyncSession) -> tuple[int, list[int]]:
    """A poll by alice with two voters whose time is up; returns (post id, [author, voters])."""
    alice, bob, carol = [await person(db, n) for n in ("alice", "bob", "carol")]
    p = await post(db, alice, "Tea or coffee?", poll=PollInput(["tea", "coffee"], 300))
    await posts.vote(db, viewer(bob), p.id, [0])
    await posts.vote(db, viewer(carol), p.id, [1])
    # Time passes: the poll is over and its job is due.
    await db.execute(
        update(Poll).where(Poll.post_id == p.id).values(expires_at=utcnow() - timedelta(1))
    )
    await db.execute(update(Job).where(Job.kind == "poll.ended").values(run_at=utcnow()))
    await db.commit()
    return p.id, [alice.id, bob.id, carol.id]


async def poll_notifications(db: AsyncSession, post_id: int) -> list[int]:
    rows = await db.scalars(
        select(Notification.account_id).where(
            Notification.type == "poll", Notification.post_id == post_id
        )
    )
    return sorted(rows.all())


async def test_poll_ended__notifies_author_and_voters_once(rt: Runtime) -> None:
    # Given a poll with two voters, created with its poll.ended job
    async with rt.sessions() as db:
        post_id, people = await _ended_poll(db)
        assert [j.payload for j in await jobs(db, "poll.ended")] == [{"post_id": post_id}]
    # When the worker runs the job
    assert await worker.run_once(rt.sessions, "A") == 1
    # Then the author and both voters are notified, once each
    async with rt.sessions() as db:
        assert await poll_notifications(db, post_id) == sorted(people)
        # And running the job again (a retry, a duplicate) notifies nobody twice
        await queue.enqueue(db, "poll.ended", {"post_id": post_id})
        await db.commit()
    assert await worker.run_once(rt.sessions, "A") == 1
    async with rt.sessions() as db:
        assert await poll_notifications(db, post_id) == sorted(people)
        assert await jobs(db) == []


async def test_poll_ended__job_due_before_the_poll_ends__waits(rt: Runtime) -> None:
    # Given a poll whose job runs early (a clock skew, an edit that extended it)
    async with rt.sessions() as db:
        alice, bob = await person(db, "alice"), await person(db, "bob")
        p = await post(db, alice, "Soon?", poll=PollInput(["yes", "no"], 300))
        await posts.vote(db, viewer(bob), p.id, [0])
        await db.execute(update(Job).values(run_at=utcnow()))
        await db.commit()
    # When it runs
    await worker.run_once(rt.sessions, "A")
    # Then nobody is told yet, and the job waits for the poll's end
    async with rt.sessions() as db:
        assert await poll_notifications(db, p.id) == []
        (job,) = await jobs(db, "poll.ended")
        poll = await db.get(Poll, p.id)
        assert poll is not None and job.run_at == poll.expires_at


# --- a worker killed mid-job --------------------------------------------------------------


def _start_worker(
    database_url: str, tmp: Path, marker: Path, lease: float
) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "KITH_DATABASE_URL": database_url,
        "KITH_VAR_DIR": str(tmp / "var"),
        "KITH_SECRET_KEY": "test-secret-key-not-for-production",
        "KITH_REDIS_URL": "",
        "KITH_LOG_LEVEL": "warning",
        "KITH_TEST_STALL_MARKER": str(marker),
        "KITH_TEST_LEASE": str(lease),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.jobs_fixture"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _wait_for(what: str, check: Any, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_worker_killed_mid_job__lease_expires_and_another_worker_runs_it_once(
    rt: Runtime, database_url: str, tmp_path: Path
) -> None:
    # Given an ended poll with two voters, its poll.ended job due
    async with rt.sessions() as db:
        post_id, people = await _ended_poll(db)
    marker = tmp_path / "stalled"
    lease = 3.0
    first = _start_worker(database_url, tmp_path, marker, lease)
    second: subprocess.Popen[str] | None = None
    try:
        # When a real worker process claims the job, does its work and, before committing…
        async def stalled() -> bool:
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            return marker.exists()

        await _wait_for("the first worker to reach the middle of the job", stalled)
        async with rt.sessions() as db:
            (job,) = await jobs(db, "poll.ended")
        assert job.locked_by is not None and f":{first.pid}:" in job.locked_by
        assert job.attempts == 1 and job.locked_until is not None
        # …is killed outright
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        # Then nothing of its half-done work is there
        async with rt.sessions() as db:
            assert await poll_notifications(db, post_id) == []
        # When a second worker starts
        second = _start_worker(database_url, tmp_path, marker, lease)

        async def job_done() -> bool:
            assert second is not None and second.poll() is None
            async with rt.sessions() as db:
                return not await jobs(db, "poll.ended")

        await _wait_for("the second worker to run the job", job_done)
        # Then it ran the job only after the dead worker's lease ran out…
        assert utcnow() >= job.locked_until
        # …and the author and both voters were notified exactly once
        async with rt.sessions() as db:
            assert await poll_notifications(db, post_id) == sorted(people)
            poll = await db.get(Poll, post_id)
            assert poll is not None and poll.ended_notified_at is not None
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
