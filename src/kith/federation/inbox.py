"""The inbox: verify a delivery and store it, nothing more; a job does the rest.

`receive` accepts an activity only when all of this holds, and otherwise stores nothing:
- the body is an ActivityPub JSON object (≤ 1 MiB, not absurdly nested) with `id`, `type`
  and one `actor`;
- the request was sent to this host and its signature is well formed, fresh (Date or
  `created` within 12 h back / 1 h ahead) and covers a digest that matches the body;
- the signing key is on the actor's host, belongs to the actor (`owner`), and verifies the
  signature — an unknown key is fetched, a known one that fails is fetched again once (the
  actor may have rotated it);
- the actor's host is not blocked.
Then the activity is stored once per activity id (a repeated delivery takes effect once) and
a `federation.inbox` job is written in the same transaction.

Cost (bench/profile_inbox.py): a key that verified a delivery lately is kept in a copy per
process (`_cached_keys`); the next delivery it signs is verified with the copy and stored by
one statement that inserts only if the stored key is still that PEM and still the actor's
(PostgreSQL: item and job in that one statement; SQLite: the job in a second). Anything else
— no copy, a copy that fails, a stale copy, a repeat — takes the checked way above, so the
copy never accepts what the database would not. On SQLite, writers take turns in the driver
(`kith.sqlite_driver`), and the shared inbox (`receive_shared`) stores such a delivery
without a session: its two statements, with the deliveries that arrived meanwhile, in one
hand-off to SQLite's thread and one commit (`kith.sqlite_writes`)."""

from __future__ import annotations

import json
import logging
import sqlite3
import weakref
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from sqlalchemy import CursorResult, Insert, Table, bindparam, literal_column, select
from sqlalchemy import insert as sa_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from kith.accounts.models import Account
from kith.config import Settings
from kith.db import new_id, utcnow
from kith.db_plans import column_binds
from kith.federation.actors import ActorFetchFailed, ActorGone, fetch_actor_for_key, store_actor
from kith.federation.domain_blocks import cached_policy, domain_is_blocked
from kith.federation.gone import actor_gone
from kith.federation.models import ActorKey, InboxItem
from kith.federation.origin import first_id, origin_of, type_of
from kith.federation.signatures import (
    RequestParts,
    SignatureError,
    VerifiableSignature,
    parse_signature,
)
from kith.jobs.models import Job
from kith.runtime import Runtime, runtime_of
from kith.sqlite_writes import compiled_write, group_writer, is_one_hop

log = logging.getLogger(__name__)

MAX_INBOX_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32
MAX_ID_LENGTH = 1024
INBOX_JOB = "federation.inbox"
ACTIVITY_CONTENT_TYPES = frozenset({"application/activity+json", "application/ld+json"})


class InboxRejected(Exception):
    """A delivery the inbox refuses, with the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _depth_ok(value: Any) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return False
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return True


def parse_activity(content_type: str, body: bytes) -> dict[str, Any]:
    """The activity in a delivery's body, or InboxRejected (415/400)."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in ACTIVITY_CONTENT_TYPES:
        raise InboxRejected(415, "send application/activity+json or application/ld+json")
    try:
        activity = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InboxRejected(400, "the body is not valid JSON") from exc
    if not isinstance(activity, dict):
        raise InboxRejected(400, "the activity must be a JSON object")
    if not _depth_ok(activity):
        raise InboxRejected(400, "the activity is nested too deeply")
    activity_id, actor = activity.get("id"), first_id(activity.get("actor"))
    if not isinstance(activity_id, str) or not origin_of(activity_id):
        raise InboxRejected(400, "the activity needs an http(s) id")
    if len(activity_id) > MAX_ID_LENGTH:
        raise InboxRejected(400, "the activity id is too long")
    if not type_of(activity) or len(type_of(activity)) > 64:
        raise InboxRejected(400, "the activity needs a type")
    if actor is None or not origin_of(actor) or len(actor) > MAX_ID_LENGTH:
        raise InboxRejected(400, "the activity needs one http(s) actor")
    return activity


async def _known_key(db: AsyncSession, key_id: str) -> tuple[ActorKey, Account] | None:
    """A remote key and its account as ORM objects (for signed fetches)."""
    row = (
        await db.execute(
            select(ActorKey, Account)
            .join(Account, Account.id == ActorKey.account_id)
            .where(ActorKey.key_id == key_id, Account.domain != "")
        )
    ).first()
    return (row[0], row[1]) if row else None


@dataclass(frozen=True)
class SigningKey:
    """A stored remote key as the inbox needs it: the PEM and who owns it (no ORM objects:
    every delivery reads one, and loading an Account costs more than the query)."""

    public_key_pem: str
    account_id: int
    actor_uri: str | None


_KEYS = cast(Table, ActorKey.__table__)
_ACCOUNTS = cast(Table, Account.__table__)
_ITEMS = cast(Table, InboxItem.__table__)
_JOBS = cast(Table, Job.__table__)

# The statements every delivery runs are built once per process (building one costs more
# than running it); `_store_params` gives their values.
_SIGNING_KEY = (
    select(_KEYS.c.public_key_pem, _ACCOUNTS.c.id, _ACCOUNTS.c.uri)
    .join_from(_KEYS, _ACCOUNTS, _ACCOUNTS.c.id == _KEYS.c.account_id)
    .where(_KEYS.c.key_id == bindparam("key_id"), _ACCOUNTS.c.domain != "")
)
_ITEM_COLUMNS = (
    "id",
    "activity_id",
    "activity_type",
    "actor_uri",
    "actor_account_id",
    "recipient_account_id",
    "activity",
    "received_at",
    "outcome",
)
_JOB_COLUMNS = ("id", "kind", "payload", "run_at", "attempts", "max_attempts", "created_at")


def _store_item(insert: Any, key_checked: bool) -> Any:
    """INSERT the item unless its activity id is stored already (the unique index decides:
    no separate SELECT, and two concurrent deliveries cannot both insert). `key_checked`:
    and only if the signing key is still, in the database, the one the signature was
    verified with (`key_id`, `key_pem`) and still its actor's (see `receive`)."""
    values = column_binds(_ITEMS, _ITEM_COLUMNS, prefix="item_")
    if not key_checked:
        stmt = insert(_ITEMS).values(values)
    else:
        current_key = (
            select(*values.values())
            .select_from(_KEYS.join(_ACCOUNTS, _ACCOUNTS.c.id == _KEYS.c.account_id))
            .where(
                _KEYS.c.key_id == bindparam("key_id"),
                _KEYS.c.public_key_pem == bindparam("key_pem"),
                _ACCOUNTS.c.id == bindparam("item_actor_account_id"),
                _ACCOUNTS.c.uri == bindparam("item_actor_uri"),
                _ACCOUNTS.c.domain != "",
            )
        )
        stmt = insert(_ITEMS).from_select(list(_ITEM_COLUMNS), current_key)
    return stmt.on_conflict_do_nothing(index_elements=["activity_id"])


def _store_postgres(key_checked: bool) -> Insert:
    """PostgreSQL: one round trip; the job is inserted only if the item was, and returned."""
    new_item = _store_item(pg_insert, key_checked).returning(_ITEMS.c.id).cte("new_item")
    job = select(*column_binds(_JOBS, _JOB_COLUMNS, prefix="job_").values()).select_from(new_item)
    return sa_insert(_JOBS).from_select(list(_JOB_COLUMNS), job).returning(literal_column("1"))


# SQLite: two statements (it has no INSERT in a WITH); the first's row count says if new.
_STORE_ITEM_SQLITE = {checked: _store_item(sqlite_insert, checked) for checked in (False, True)}
_ENQUEUE_SQLITE: Insert = sa_insert(_JOBS).values(column_binds(_JOBS, _JOB_COLUMNS, prefix="job_"))
_STORE_POSTGRES = {checked: _store_postgres(checked) for checked in (False, True)}


async def _signing_key(db: AsyncSession, key_id: str) -> SigningKey | None:
    row = (await db.execute(_SIGNING_KEY, {"key_id": key_id})).first()
    return SigningKey(row[0], row[1], row[2]) if row else None


async def verified_actor(
    db: AsyncSession, signature: VerifiableSignature, actor: str
) -> SigningKey:
    """The key that proves the signature is `actor`'s own (with its remote account's id);
    stores a newly fetched actor and key (flushed, not committed). Raises InboxRejected(401)."""
    known = await _signing_key(db, signature.key_id)
    if known is not None:
        if known.actor_uri != actor:
            raise InboxRejected(401, "the signing key belongs to another actor")
        if signature.verify(known.public_key_pem):
            return known
    try:
        fetched = await fetch_actor_for_key(db, signature.key_id)
    except ActorGone as exc:
        if signature.key_id.split("#", 1)[0] != actor:
            raise InboxRejected(401, f"could not get the signing key: {exc}") from exc
        # The actor's own server says it is deleted (typically this is its Delete, sent
        # after its actor began answering 410): forget it if we knew it, as a Delete would,
        # and take the delivery as done, so the sender stops retrying.
        await actor_gone(db, actor)
        await db.commit()
        raise InboxRejected(202, "the actor is gone; forgotten here") from exc
    except ActorFetchFailed as exc:
        raise InboxRejected(401, f"could not get the signing key: {exc}") from exc
    if fetched.uri != actor:
        raise InboxRejected(401, "the signing key belongs to another actor")
    if not signature.verify(fetched.public_key_pem):
        raise InboxRejected(401, "the signature does not verify")
    try:
        account = await store_actor(db, fetched)
    except ActorFetchFailed as exc:
        raise InboxRejected(401, str(exc)) from exc
    return SigningKey(fetched.public_key_pem, account.id, fetched.uri)


# --- this process's copy of the keys that verified lately ----------------------------------

MAX_CACHED_KEYS = 10_000
_CACHED_KEYS: weakref.WeakKeyDictionary[Any, dict[str, SigningKey]] = weakref.WeakKeyDictionary()


def _cached_keys(engine: Engine) -> dict[str, SigningKey]:
    """Key id → the key that last verified a delivery here (per database engine)."""
    keys = _CACHED_KEYS.get(engine)
    if keys is None:
        keys = _CACHED_KEYS[engine] = {}
    return keys


def _remember_key(engine: Engine, key_id: str, key: SigningKey) -> None:
    keys = _cached_keys(engine)
    if len(keys) >= MAX_CACHED_KEYS:
        keys.clear()
    keys[key_id] = key


def _store_params(
    activity: dict[str, Any], actor_id: int, recipient: Account | None
) -> dict[str, Any]:
    item_id, now = new_id(), utcnow()
    return {
        "item_id": item_id,
        "item_activity_id": activity["id"],
        "item_activity_type": type_of(activity),
        "item_actor_uri": first_id(activity["actor"]),
        "item_actor_account_id": actor_id,
        "item_recipient_account_id": recipient.id if recipient else None,
        "item_activity": activity,
        "item_received_at": now,
        "item_outcome": "",
        "job_id": new_id(),
        "job_kind": INBOX_JOB,
        "job_payload": {"item_id": item_id},
        "job_run_at": now,
        "job_attempts": 0,
        "job_max_attempts": 10,
        "job_created_at": now,
    }


async def _store(
    db: AsyncSession,
    activity: dict[str, Any],
    actor_id: int,
    recipient: Account | None,
    checked_key: tuple[str, SigningKey] | None = None,
) -> bool:
    """Store the activity and its job; False (and nothing written) if it was seen before —
    or, with `checked_key` (key id, key), if that key is not the stored one any more."""
    params = _store_params(activity, actor_id, recipient)
    if checked_key is not None:
        params["key_id"], params["key_pem"] = checked_key[0], checked_key[1].public_key_pem
    checked = checked_key is not None
    if db.get_bind().dialect.name == "postgresql":
        return (await db.execute(_STORE_POSTGRES[checked], params)).first() is not None
    inserted = cast(CursorResult[Any], await db.execute(_STORE_ITEM_SQLITE[checked], params))
    if inserted.rowcount != 1:
        return False
    await db.execute(_ENQUEUE_SQLITE, params)
    return True


def _item_and_job(
    item_sql: str,
    item: tuple[Any, ...],
    job_sql: str,
    job: tuple[Any, ...],
    conn: sqlite3.Connection,
) -> bool:
    """On SQLite's thread (`kith.sqlite_writes`): `_store`'s two statements; False if the
    item was not inserted (a repeat, or the key check failed)."""
    if conn.execute(item_sql, item).rowcount != 1:
        return False
    conn.execute(job_sql, job)
    return True


async def _store_in_one_hop(engine: AsyncEngine, params: dict[str, Any]) -> bool:
    """SQLite: `_store`'s statements with the key check, in one hand-off to SQLite's thread
    with the deliveries that arrived meanwhile, and one commit (`kith.sqlite_writes`)."""
    item = compiled_write(_STORE_ITEM_SQLITE[True], engine)
    job = compiled_write(_ENQUEUE_SQLITE, engine)
    work = partial(
        _item_and_job, item.sql, item.parameters(params), job.sql, job.parameters(params)
    )
    try:
        return await group_writer(engine).write(work)
    except sqlite3.IntegrityError:
        return False


async def _store_on_connection(engine: AsyncEngine, params: dict[str, Any]) -> bool:
    """PostgreSQL: `_store`'s one statement with the key check on a pooled connection without
    a session, in autocommit: one statement is its own transaction, so it costs one round
    trip instead of three (BEGIN, the INSERT, COMMIT), and no session's path."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        try:
            return (await conn.execute(_STORE_POSTGRES[True], params)).first() is not None
        except IntegrityError:  # (a unique index other than the activity id's)
            return False


async def _store_with_cached_key(
    db: AsyncSession | None,
    engine: AsyncEngine,
    delivery: Delivery,
    key: SigningKey,
    recipient: Account | None,
) -> bool:
    """Store a delivery whose signature verified with this process's copy of its key, by a
    statement that also checks the copy against the database (see `_store_item`). True if
    stored and committed; False, nothing written, if the copy or the id was stale. On
    SQLite in one hand-off, unless `db` has a transaction open (then in it); with no `db`
    on PostgreSQL, by the one statement on a connection of its own (no session)."""
    key_id = delivery.signature.key_id
    if db is None or (is_one_hop(engine) and not db.in_transaction()):
        params = _store_params(delivery.activity, key.account_id, recipient)
        params["key_id"], params["key_pem"] = key_id, key.public_key_pem
        if is_one_hop(engine):
            return await _store_in_one_hop(engine, params)
        return await _store_on_connection(engine, params)
    try:
        stored = await _store(db, delivery.activity, key.account_id, recipient, (key_id, key))
        if stored:
            await db.commit()
    except IntegrityError:
        stored = False
    except BaseException:
        await db.rollback()
        raise
    if not stored:
        await db.rollback()
    return stored


async def _stored_with_copy(
    db: AsyncSession | None, engine: AsyncEngine, delivery: Delivery, recipient: Account | None
) -> bool:
    """Try this process's copy of the signing key: True if it verified the signature and the
    delivery is stored; False if there is no copy, or it failed or was stale (then it is
    dropped, and the caller takes the checked way)."""
    keys = _cached_keys(engine.sync_engine)
    key_id = delivery.signature.key_id
    cached = keys.get(key_id)
    if cached is None:
        return False
    if (
        cached.actor_uri == delivery.actor
        and delivery.signature.verify(cached.public_key_pem)
        and await _store_with_cached_key(db, engine, delivery, cached, recipient)
    ):
        return True
    keys.pop(key_id, None)
    return False


@dataclass(frozen=True)
class Delivery:
    """A delivery that passed the checks that need no database."""

    activity: dict[str, Any]
    actor: str
    actor_host: str
    signature: VerifiableSignature


def check_delivery(settings: Settings, request: RequestParts) -> Delivery:
    """The body, host, signature (well formed, fresh, digest) and origin checks of
    `receive`; raises InboxRejected."""
    content_type = next(iter(request.values("content-type")), "")
    activity = parse_activity(content_type, request.body or b"")
    actor = first_id(activity["actor"])
    assert actor is not None  # parse_activity checked it
    if request.authority.strip().lower() != settings.domain.lower():
        raise InboxRejected(401, "the request was signed for another host")
    try:
        signature = parse_signature(request)
    except SignatureError as exc:
        raise InboxRejected(exc.status, str(exc)) from exc
    actor_host = origin_of(actor)
    if origin_of(signature.key_id) != actor_host:
        raise InboxRejected(401, "the signing key is not on the actor's host")
    if actor_host == origin_of(settings.base_url):
        raise InboxRejected(401, "this instance's own actors do not deliver over HTTP")
    return Delivery(activity, actor, actor_host, signature)


_BLOCKED = "this instance does not federate with that host"


async def receive(
    db: AsyncSession, request: RequestParts, recipient: Account | None = None
) -> bool:
    """Verify and store one delivery (see the module docstring). True if it was new, False
    for a repeat; raises InboxRejected with the status to answer."""
    delivery = check_delivery(runtime_of(db).settings, request)
    if await domain_is_blocked(db, delivery.actor_host):
        raise InboxRejected(403, _BLOCKED)
    if await _stored_with_copy(db, runtime_of(db).engine, delivery, recipient):
        return True
    return await _receive_checked(db, delivery, recipient)


async def receive_shared(rt: Runtime, request: RequestParts) -> bool:
    """`receive` for the shared inbox, opening a session only when it needs one: on SQLite,
    a delivery signed by a key this process verified lately, from a host its copy of the
    domain blocks knows, is verified and stored without one (the same checks and the same
    statements, in one hand-off to SQLite's thread)."""
    delivery = check_delivery(rt.settings, request)
    policy = cached_policy(rt.engine.sync_engine, delivery.actor_host)
    if policy is not None:
        if policy.suspend:
            raise InboxRejected(403, _BLOCKED)
        if await _stored_with_copy(None, rt.engine, delivery, None):
            return True
    async with rt.sessions() as db:
        if await domain_is_blocked(db, delivery.actor_host):
            raise InboxRejected(403, _BLOCKED)
        if await _stored_with_copy(db, rt.engine, delivery, None):
            return True
        return await _receive_checked(db, delivery, None)


async def _receive_checked(db: AsyncSession, delivery: Delivery, recipient: Account | None) -> bool:
    """The checked way, as for a first delivery: no copy of the key, one that failed
    (rotated?), or the store did not happen (a repeat, or the key changed in the database
    meanwhile)."""
    signature, actor = delivery.signature, delivery.actor
    for attempt in (1, 2):
        try:
            key = await verified_actor(db, signature, actor)
            stored = await _store(db, delivery.activity, key.account_id, recipient)
            await db.commit()
            _remember_key(runtime_of(db).engine.sync_engine, signature.key_id, key)
            return stored
        except IntegrityError:
            # A concurrent delivery stored the same actor or key first: use theirs.
            await db.rollback()
            if attempt == 2:
                raise InboxRejected(409, "conflicting concurrent delivery; try again") from None
        except BaseException:
            await db.rollback()
            raise
    raise AssertionError("unreachable")  # pragma: no cover
