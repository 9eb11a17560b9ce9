"""What the admins' federation page shows: the remote instances this one knows (hosts with
accounts here, hosts deliveries went to, hosts with queued deliveries), each with its
delivery record (`delivery_hosts`: last answer, failures, breaker), the deliveries waiting for
it and the domain block that applies; and the "re-deliver now" action."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.db import utcnow
from kith.federation.delivery import DELIVER_JOB
from kith.federation.domain_blocks import DomainPolicy, policy_for
from kith.federation.models import DeliveryHost
from kith.federation.origin import origin_of
from kith.jobs.models import Job
from kith.moderation.roles import require_moderator


@dataclass
class KnownInstance:
    """One remote host as the admins see it."""

    host: str
    accounts: int
    delivery: DeliveryHost | None
    queued: int
    policy: DomainPolicy

    @property
    def breaker_open(self) -> bool:
        until = self.delivery.unavailable_until if self.delivery else None
        return until is not None and until > utcnow()


async def queued_by_host(db: AsyncSession) -> Counter[str]:
    """Deliveries waiting (not given up) per host: one `federation.deliver` job per inbox."""
    inbox = Job.payload["inbox"].as_string()
    rows = await db.execute(
        select(inbox, func.count())
        .where(Job.kind == DELIVER_JOB, Job.failed_at.is_(None))
        .group_by(inbox)
    )
    counts: Counter[str] = Counter()
    for url, n in rows.all():
        counts[origin_of(url or "")] += int(n)
    counts.pop("", None)
    return counts


async def known_instances(db: AsyncSession, moderator: policy.Viewer) -> list[KnownInstance]:
    """Every remote host known here, those with deliveries waiting or failing first, then
    by number of accounts."""
    require_moderator(moderator)
    rows = await db.execute(
        select(Account.domain, func.count()).where(Account.domain != "").group_by(Account.domain)
    )
    accounts = {domain: int(n) for domain, n in rows.all()}
    hosts = {h.host: h for h in (await db.scalars(select(DeliveryHost))).all()}
    queued = await queued_by_host(db)
    out = [
        KnownInstance(
            host=host,
            accounts=int(accounts.get(host, 0)),
            delivery=hosts.get(host),
            queued=queued.get(host, 0),
            policy=await policy_for(db, host),
        )
        for host in set(accounts) | set(hosts) | set(queued)
    ]
    out.sort(
        key=lambda i: (
            -i.queued,
            -(i.delivery.consecutive_failures if i.delivery else 0),
            -i.accounts,
            i.host,
        )
    )
    return out


async def redeliver_now(db: AsyncSession, moderator: policy.Viewer, host: str) -> int:
    """Close the host's breaker and make its waiting deliveries due now (committed); returns
    how many were. Jobs a worker holds right now are left to it."""
    require_moderator(moderator)
    now = utcnow()
    await db.execute(
        update(DeliveryHost)
        .where(DeliveryHost.host == host)
        .values(consecutive_failures=0, unavailable_until=None)
    )
    rows = await db.execute(
        select(Job.id, Job.payload["inbox"].as_string()).where(
            Job.kind == DELIVER_JOB,
            Job.failed_at.is_(None),
            Job.run_at > now,
            or_(Job.locked_until.is_(None), Job.locked_until < now),
        )
    )
    ids = [job_id for job_id, inbox in rows.all() if origin_of(inbox or "") == host]
    for start in range(0, len(ids), 500):
        await db.execute(
            update(Job)
            .where(
                Job.id.in_(ids[start : start + 500]),
                Job.locked_until.is_(None) | (Job.locked_until < now),
            )
            .values(run_at=now)
            .execution_options(synchronize_session=False)
        )
    await db.commit()
    return len(ids)
