"""Outbound delivery, the sending half: the `federation.deliver` job.

One job POSTs one stored activity to one inbox, signed (draft-cavage, as Mastodon reads it)
with its actor's key, through the SSRF-safe client. What the answer means:
- 2xx: delivered;
- 408, 429, 401, 5xx, a timeout or a broken connection: tried again later, with exponential
  back-off and jitter, or when the server's `Retry-After` says (capped); given up after
  `MAX_ATTEMPTS` tries or `GIVE_UP_AFTER` (about three days, as Mastodon's ~2.6);
- any other answer (400, 403, 404, 410, a redirect…) or a refused address: given up at once;
  a 410 from a personal inbox forgets its actor (`gone.inbox_gone`). Nothing is sent to a
  suspended domain (`domain_blocks`), even by a job queued before the block.

A worker sends the deliveries of a claimed batch to different hosts at once and those to one
host one after another (the job's lane is its host; see `jobs/worker.py`). The activity's
body and the actor's parsed key are kept per process; the host's record is read once, before
the request, and the commit before the request ends that read.

The job writes nothing itself: it returns the writes that record the answer (`settle_answer`)
and the worker commits them with the job's removal, in one transaction with other
deliveries' answers (`jobs/settle.py`). A retry is a new job written in that transaction,
so a crash at any point leaves exactly one job behind (which may send once more: inboxes
take an activity id once).

**Breaker.** Each host's recent record is a `DeliveryHost` row shared by every worker.
After `BREAKER_THRESHOLD` consecutive failures (unreachable, 5xx, 429) the host is skipped
until `unavailable_until`: its jobs are moved past that moment without a request and without
counting an attempt. When the cool-down ends, the next job is the probe: a success closes the
breaker, a failure opens it again for longer."""

from __future__ import annotations

import json
import logging
import random
import weakref
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any, cast

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from sqlalchemy import Table, bindparam, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.communities.models import Community
from kith.config import Settings
from kith.db import new_id, utcnow
from kith.federation import keys
from kith.federation.delivery import DELIVER_JOB, DELIVER_MAX_CRASHES
from kith.federation.domain_blocks import domain_is_blocked
from kith.federation.gone import inbox_gone
from kith.federation.models import DeliveryHost, OutboundActivity
from kith.federation.origin import origin_of
from kith.federation.signatures import sign_request
from kith.jobs.models import Job
from kith.jobs.queue import Settle, job_handler
from kith.net import Fetched, FetchError, Signer, UnsafeUrl
from kith.runtime import runtime_of

log = logging.getLogger(__name__)

ACTIVITY_TYPE = 'application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
MAX_ATTEMPTS = 16
GIVE_UP_AFTER = timedelta(days=3)
MAX_BACKOFF = timedelta(hours=12)
RETRY_AFTER_CAP = timedelta(hours=12)
BREAKER_THRESHOLD = 5
BREAKER_MAX_COOL_DOWN = timedelta(hours=2)
# An inbox answers with a short body; more is not read.
MAX_ANSWER_BYTES = 64 * 1024
RETRYABLE_4XX = frozenset({401, 408, 429})
# A healthy host's row is refreshed at most this often (a write per delivery would cost
# throughput and lock contention for nothing).
HEALTHY_REFRESH = timedelta(minutes=5)


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: delivered, retry (maybe at the server's time), or give up.
    `host_failed` says whether it counts against the host's breaker."""

    kind: str  # "delivered" | "retry" | "give_up"
    status: int | None
    error: str = ""
    retry_after: timedelta | None = None
    host_failed: bool = False


def retry_seconds(settings: Settings) -> float:
    """The first retry's delay; each next one doubles (settable so that tests and local
    federation don't wait minutes)."""
    return settings.federation_delivery_retry_seconds


def backoff(settings: Settings, attempt: int) -> timedelta:
    """The wait after failed attempt number `attempt` (1-based): doubling from
    `retry_seconds`, capped at MAX_BACKOFF, ±20 % jitter so that a host's queue does not
    come back in one burst."""
    base = retry_seconds(settings) * 2 ** min(max(attempt - 1, 0), 30)
    seconds = min(base, MAX_BACKOFF.total_seconds())
    return timedelta(seconds=seconds * random.uniform(0.8, 1.2))


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """`Retry-After` as a wait (delta-seconds or an HTTP date), between 1 s and
    RETRY_AFTER_CAP; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        wait = timedelta(seconds=int(value[:9]))
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        wait = when - now
    return max(timedelta(seconds=1), min(wait, RETRY_AFTER_CAP))


def classify(fetched: Fetched, now: datetime) -> Outcome:
    """The outcome of an answered request."""
    status = fetched.status
    if 200 <= status < 300:
        return Outcome("delivered", status)
    retry_after = parse_retry_after(fetched.headers.get("retry-after"), now)
    if status >= 500 or status == 429:
        return Outcome("retry", status, f"HTTP {status}", retry_after, host_failed=True)
    if status in RETRYABLE_4XX:
        return Outcome("retry", status, f"HTTP {status}", retry_after)
    return Outcome("give_up", status, f"HTTP {status}")


def cool_down(settings: Settings, failures: int) -> timedelta:
    """How long a host with this many consecutive failures is skipped: from the first
    back-off delay at the threshold, doubling, capped at BREAKER_MAX_COOL_DOWN."""
    extra = min(max(failures - BREAKER_THRESHOLD, 0), 20)
    seconds = max(retry_seconds(settings), 1.0) * 2**extra
    return min(timedelta(seconds=seconds), BREAKER_MAX_COOL_DOWN)


# --- the job ------------------------------------------------------------------------------

# Per process and database: what every delivery of one activity, or by one actor, would
# otherwise read, parse or serialise again (500 jobs for one post are 500 times the same).
# Both are safe to keep: a stored activity is never changed, and a local actor's key is made
# once and never replaced. Bounded, oldest out first.
PROCESS_CACHE_SIZE = 256


@dataclass
class _Copies:
    bodies: dict[int, bytes] = field(default_factory=dict)
    keys: dict[int | str | None, tuple[str, RSAPrivateKey]] = field(default_factory=dict)


_COPIES: weakref.WeakKeyDictionary[Any, _Copies] = weakref.WeakKeyDictionary()


def _copies(db: AsyncSession) -> _Copies:
    engine = db.get_bind()
    copies = _COPIES.get(engine)
    if copies is None:
        copies = _COPIES[engine] = _Copies()
    return copies


def _keep(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= PROCESS_CACHE_SIZE:
        cache.pop(next(iter(cache)))
    cache[key] = value


@dataclass(frozen=True)
class _Context:
    """What a delivery reads before sending: its activity's actor and id, and the breaker
    record of the destination host as it was (`known_host` False: no row yet)."""

    actor_account_id: int | None
    activity_id: str
    known_host: bool
    consecutive_failures: int
    unavailable_until: datetime | None
    last_success_at: datetime | None
    community_id: int | None = None  # a community's Group signs (`federation.groups`)

    def breaker_open(self, now: datetime) -> bool:
        return self.unavailable_until is not None and self.unavailable_until > now

    def looked_healthy(self, now: datetime) -> bool:
        """No failure counted and a success recent enough that it needs no refresh."""
        return (
            self.consecutive_failures == 0
            and self.unavailable_until is None
            and self.last_success_at is not None
            and now - self.last_success_at < HEALTHY_REFRESH
        )


# Built once: a delivery's statements are the same every time but for their values, and
# building them costs more than running them.
_HOST_TABLE = cast(Table, DeliveryHost.__table__)
_HOSTS = _HOST_TABLE.c
_OUTBOUND = OutboundActivity.__table__.c
_CONTEXT = (
    select(
        _OUTBOUND.actor_account_id,
        _OUTBOUND.activity_id,
        _HOSTS.host,
        _HOSTS.consecutive_failures,
        _HOSTS.unavailable_until,
        _HOSTS.last_success_at,
        _OUTBOUND.community_id,
    )
    .select_from(OutboundActivity.__table__)
    .outerjoin(_HOST_TABLE, _HOSTS.host == bindparam("host"))
    .where(_OUTBOUND.id == bindparam("outbound_id"))
)


async def _context(db: AsyncSession, outbound_id: int, host: str) -> _Context | None:
    """The stored activity and the host's record in one statement (an outer join on the
    host); None when the activity was forgotten (its actor deleted, or too old)."""
    row = (await db.execute(_CONTEXT, {"host": host, "outbound_id": outbound_id})).first()
    if row is None:
        return None
    return _Context(
        actor_account_id=row[0],
        activity_id=row[1],
        known_host=row[2] is not None,
        consecutive_failures=row[3] or 0,
        unavailable_until=row[4],
        last_success_at=row[5],
        community_id=row[6],
    )


async def _body(db: AsyncSession, outbound_id: int) -> bytes | None:
    """The activity as sent: serialised once per process, not once per inbox (None: it was
    forgotten a moment ago)."""
    bodies = _copies(db).bodies
    body = bodies.get(outbound_id)
    if body is None:
        document = await db.scalar(
            select(OutboundActivity.document).where(OutboundActivity.id == outbound_id)
        )
        if document is None:
            return None
        body = json.dumps(document, separators=(",", ":")).encode()
        _keep(bodies, outbound_id, body)
    return body


async def _signer(
    db: AsyncSession, actor_account_id: int | None, community_id: int | None = None
) -> Signer:
    """Sign as the account (its key is made the first time), as a community's Group, or as
    the instance actor; the parsed key is kept for the next job."""
    kept = _copies(db).keys
    cache_key: int | str | None = (
        f"community:{community_id}" if community_id is not None else actor_account_id
    )
    found = kept.get(cache_key)
    if found is None:
        if community_id is not None:
            community = await db.get(Community, community_id)
            if community is None:
                raise LookupError(f"no community {community_id} to sign with")
            key = await keys.community_key(db, community)
        elif actor_account_id is None:
            key = await keys.instance_key(db)
        else:
            account = await db.get(Account, actor_account_id)
            if account is None or not account.is_local:
                raise LookupError(f"no local actor {actor_account_id} to sign with")
            key = await keys.local_key(db, account)
        if key.private_key_pem is None:  # pragma: no cover - local keys always have one
            raise LookupError(f"no private key for {key.key_id}")
        found = (key.key_id, keys.load_private_key(key.private_key_pem))
        _keep(kept, cache_key, found)
    key_id, private = found
    return lambda request: sign_request(request, key_id, private)


async def _send(db: AsyncSession, inbox: str, body: bytes, signer: Signer) -> Outcome:
    try:
        fetched = await runtime_of(db).http.post(
            inbox,
            headers={"Content-Type": ACTIVITY_TYPE, "Accept": "application/activity+json"},
            content=body,
            sign=signer,
            max_bytes=MAX_ANSWER_BYTES,
        )
    except UnsafeUrl as exc:
        return Outcome("give_up", None, str(exc)[:500])
    except FetchError as exc:
        return Outcome("retry", None, str(exc)[:500], host_failed=True)
    return classify(fetched, utcnow())


async def _requeue(db: AsyncSession, *, payload: dict[str, Any], run_at: datetime) -> None:
    """Write the job's successor (same activity and inbox) due at `run_at`."""
    now = utcnow()
    await db.execute(
        insert(Job).values(
            id=new_id(),
            kind=DELIVER_JOB,
            payload=payload,
            run_at=run_at,
            attempts=0,
            max_attempts=DELIVER_MAX_CRASHES,
            dedupe_key=None,
            created_at=now,
        )
    )


def destination_host(payload: dict[str, Any]) -> str:
    """A delivery job's lane in the worker: its host, so that a batch's deliveries to
    different hosts go out together and those to one host one after another (the breaker
    counts each answer before the next request)."""
    return origin_of(str(payload["inbox"]))


@job_handler(DELIVER_JOB, lane=destination_host)
async def deliver_one(db: AsyncSession, payload: dict[str, Any]) -> Settle:
    """POST one activity to one inbox; returns the writes that record the host's answer and
    schedule a retry or give up (see the module docstring), which the worker commits with
    the job's removal, together with other deliveries' answers."""
    settings = runtime_of(db).settings
    inbox = str(payload["inbox"])
    host = origin_of(inbox)
    outbound_id = int(payload["activity"])
    seen = await _context(db, outbound_id, host)
    if seen is None:  # forgotten (its actor was deleted, or it outlived GIVE_UP_AFTER)
        return _nothing
    if await domain_is_blocked(db, host):  # suspended after the job was written
        log.info("delivery of %s to %s dropped: the domain is suspended", outbound_id, inbox)
        return _nothing
    body = await _body(db, outbound_id)
    if body is None:
        return _nothing
    signer = await _signer(db, seen.actor_account_id, seen.community_id)
    # End the read transaction before waiting on another server (up to 30 s): no snapshot
    # is held open meanwhile, and on SQLite the writes start a fresh transaction (one that
    # had read first could not take the write lock once another connection committed after
    # its read: SQLITE_BUSY_SNAPSHOT, which no busy timeout waits out).
    await db.commit()
    if seen.breaker_open(utcnow()):
        # The breaker is open: come back after the cool-down, spread over a little while,
        # without a request and without spending an attempt.
        assert seen.unavailable_until is not None
        spread = timedelta(seconds=random.uniform(0, max(retry_seconds(settings), 1.0)))
        return partial(_requeue, payload=payload, run_at=seen.unavailable_until + spread)
    outcome = await _send(db, inbox, body, signer)
    return partial(settle_answer, settings=settings, payload=payload, outcome=outcome, seen=seen)


async def _nothing(db: AsyncSession) -> None:
    """Nothing to write: the job is only removed."""


async def settle_answer(
    db: AsyncSession,
    *,
    settings: Settings,
    payload: dict[str, Any],
    outcome: Outcome,
    seen: _Context,
) -> None:
    """Record the answer to one delivery (the host's record and breaker), and write the
    job's successor if it is to be tried again; in the worker's transaction."""
    inbox = str(payload["inbox"])
    attempt = int(payload.get("attempt", 1))
    first_at = (
        datetime.fromtimestamp(float(payload["first_at"]), UTC)
        if payload.get("first_at")
        else utcnow()
    )
    now = utcnow()
    await record_answer(db, settings, origin_of(inbox), outcome, now, seen)
    if outcome.kind == "delivered":
        return
    if outcome.status == 410:  # the actor of a personal inbox was deleted for good
        await inbox_gone(db, inbox)
    too_old = now - first_at >= GIVE_UP_AFTER
    if outcome.kind == "give_up" or attempt >= MAX_ATTEMPTS or too_old:
        log.warning(
            "delivery of %s to %s given up after %d attempt(s): %s",
            seen.activity_id,
            inbox,
            attempt,
            outcome.error,
        )
        return
    wait = outcome.retry_after or backoff(settings, attempt)
    await _requeue(db, payload={**payload, "attempt": attempt + 1}, run_at=now + wait)


async def record_answer(
    db: AsyncSession,
    settings: Settings,
    host: str,
    outcome: Outcome,
    now: datetime,
    seen: _Context | None = None,
) -> None:
    """Update the host's record and breaker: a failure of the host counts (and opens the
    breaker at the threshold), any answer from it resets the count. `seen`: the record as
    read before the request (not read again); a success on a host that looked healthy then
    writes only if another worker has counted a failure since."""
    if outcome.host_failed:
        await _count_failure(db, settings, host, outcome, now)
        return
    values: dict[str, Any] = {
        "consecutive_failures": 0,
        "unavailable_until": None,
        "last_status": outcome.status,
        "last_error": outcome.error[:500],
        "last_attempt_at": now,
    }
    if outcome.kind == "delivered":
        values["last_success_at"] = now
        if seen is not None and seen.known_host and seen.looked_healthy(now):
            await db.execute(_RESET_IF_FAILED, {"match_host": host, **values})
            return
    await _upsert(db, host, values, increment=False)


async def _count_failure(
    db: AsyncSession, settings: Settings, host: str, outcome: Outcome, now: datetime
) -> None:
    common = {
        "last_status": outcome.status,
        "last_error": outcome.error[:500],
        "last_attempt_at": now,
    }
    failures = await _upsert(db, host, {**common, "consecutive_failures": 1}, increment=True)
    if failures is not None and failures >= BREAKER_THRESHOLD:
        until = now + cool_down(settings, failures)
        await db.execute(
            update(DeliveryHost).where(DeliveryHost.host == host).values(unavailable_until=until)
        )
        log.warning("deliveries to %s paused until %s (%d failures)", host, until, failures)


_RESET_IF_FAILED = (
    update(_HOST_TABLE)
    .where(
        _HOSTS.host == bindparam("match_host"),
        or_(_HOSTS.consecutive_failures > 0, _HOSTS.unavailable_until.is_not(None)),
    )
    .execution_options(synchronize_session=False)
)
_UPSERTS: dict[tuple[str, tuple[str, ...], bool], Any] = {}


def _upsert_statement(dialect: str, columns: tuple[str, ...], increment: bool) -> Any:
    """INSERT … ON CONFLICT (host) DO UPDATE of these columns, taken from the values given
    (`increment`: the failure count goes up by one instead), built once per shape."""
    key = (dialect, columns, increment)
    stmt = _UPSERTS.get(key)
    if stmt is None:
        insert_ = (pg_insert if dialect == "postgresql" else sqlite_insert)(_HOST_TABLE)
        set_: dict[str, Any] = {c: insert_.excluded[c] for c in columns}
        if increment:
            set_["consecutive_failures"] = _HOSTS.consecutive_failures + 1
        stmt = insert_.on_conflict_do_update(index_elements=["host"], set_=set_).returning(
            _HOSTS.consecutive_failures
        )
        _UPSERTS[key] = stmt
    return stmt


async def _upsert(
    db: AsyncSession, host: str, values: dict[str, Any], *, increment: bool
) -> int | None:
    """Insert the host's row with `values`, or update it with them (`increment`: but add one
    to its failure count); returns its consecutive failures afterwards."""
    stmt = _upsert_statement(db.get_bind().dialect.name, tuple(sorted(values)), increment)
    return await db.scalar(stmt, {"host": host, **values})
