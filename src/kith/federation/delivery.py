"""Outbound delivery, the enqueueing half: which inboxes an activity goes to, and one durable
job per inbox written in the caller's transaction (transactional outbox).

`deliver(db, actor, activity, inboxes)` stores the activity once (`OutboundActivity`) and a
`federation.deliver` job per distinct destination; nothing is sent before the caller commits,
and nothing is lost if the process dies after. The job itself (sign, POST, retry, breaker)
is `federation/sending.py`.

Remote accounts are reached through their shared inbox when they advertise one (one request
per server, not per person, as every fediverse server does), else their own inbox. Who may
receive an activity is the caller's question (`federation/outbound.py`); this module only
addresses the envelopes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.db import new_id, utcnow
from kith.federation.domain_blocks import domain_is_blocked
from kith.federation.models import OutboundActivity, RemoteActor
from kith.federation.origin import origin_of
from kith.graph.models import Follow
from kith.jobs.models import Job
from kith.runtime import runtime_of

DELIVER_JOB = "federation.deliver"
# The job retries itself (Retry-After, the host breaker), so the queue's own counter only
# catches a job that keeps killing its worker.
DELIVER_MAX_CRASHES = 5
# Longer than any delivery keeps trying (sending.GIVE_UP_AFTER plus its last back-off).
KEEP_OUTBOUND = timedelta(days=7)

_PREFERRED_INBOX = func.coalesce(RemoteActor.shared_inbox_url, RemoteActor.inbox_url)


async def inboxes_of_followers(db: AsyncSession, account: Account) -> set[str]:
    """The inboxes (shared when advertised) of the account's remote followers that are not
    suspended here. One indexed query; an empty set when all followers are local."""
    rows = await db.execute(
        select(_PREFERRED_INBOX)
        .select_from(Follow)
        .join(RemoteActor, RemoteActor.account_id == Follow.follower_id)
        .join(Account, Account.id == Follow.follower_id)
        .where(Follow.followee_id == account.id, Account.suspended_at.is_(None))
        .distinct()
    )
    return {inbox for inbox in rows.scalars() if inbox}


async def inboxes_of(db: AsyncSession, accounts: Iterable[Account | int]) -> set[str]:
    """The inboxes (shared when advertised) of these accounts' remote ones that are not
    suspended here. Local accounts are skipped without a query (Account rows given)."""
    ids = {
        a if isinstance(a, int) else a.id for a in accounts if isinstance(a, int) or not a.is_local
    }
    if not ids:
        return set()
    rows = await db.execute(
        select(_PREFERRED_INBOX)
        .join(Account, Account.id == RemoteActor.account_id)
        .where(RemoteActor.account_id.in_(ids), Account.suspended_at.is_(None))
        .distinct()
    )
    return {inbox for inbox in rows.scalars() if inbox}


async def deliverable(db: AsyncSession, inboxes: Iterable[str]) -> list[str]:
    """The distinct inboxes worth a job: http(s), not on this instance, host not blocked."""
    own = origin_of(runtime_of(db).settings.base_url)
    by_host: dict[str, list[str]] = {}
    for inbox in dict.fromkeys(inboxes):
        host = origin_of(inbox) if inbox else ""
        if host and host != own:
            by_host.setdefault(host, []).append(inbox)
    kept: list[str] = []
    for host, urls in by_host.items():
        if not await domain_is_blocked(db, host):
            kept.extend(urls)
    return sorted(kept)


async def deliver(
    db: AsyncSession,
    actor: Account | None,
    activity: dict[str, Any],
    inboxes: Iterable[str],
    *,
    community_id: int | None = None,
) -> int:
    """Queue `activity` for each distinct inbox, in the caller's transaction, signed later
    by `actor` (None: the instance actor, or the community's `Group` when `community_id` is
    given). Returns the number of jobs written (0: nothing stored at all, e.g. no remote
    recipient)."""
    targets = await deliverable(db, inboxes)
    if not targets:
        return 0
    now = utcnow()
    outbound_id = new_id()
    await db.execute(
        insert(OutboundActivity).values(
            id=outbound_id,
            activity_id=str(activity.get("id", ""))[:1024],
            actor_account_id=actor.id if actor is not None else None,
            community_id=community_id,
            document=activity,
            created_at=now,
        )
    )
    await db.execute(insert(Job), _job_rows(outbound_id, targets, now))
    return len(targets)


def _job_rows(outbound_id: int, targets: Sequence[str], now: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": new_id(),
            "kind": DELIVER_JOB,
            "payload": {
                "activity": outbound_id,
                "inbox": inbox,
                "attempt": 1,
                "first_at": now.timestamp(),
            },
            "run_at": now,
            "attempts": 0,
            "max_attempts": DELIVER_MAX_CRASHES,
            "dedupe_key": None,
            "created_at": now,
        }
        for inbox in targets
    ]


async def forget_old_activities(db: AsyncSession) -> None:
    """Delete stored outbound activities older than any delivery of them can be (run by the
    periodic clean-up job); a job that still names one finds nothing and ends."""
    await db.execute(
        delete(OutboundActivity).where(OutboundActivity.created_at < utcnow() - KEEP_OUTBOUND)
    )
