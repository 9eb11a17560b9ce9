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
a `federation.inbox` job is written in the same transaction."""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.db import new_id, utcnow
from kith.federation.actors import ActorFetchFailed, fetch_actor_for_key, store_actor
from kith.federation.domain_blocks import domain_is_blocked
from kith.federation.models import ActorKey, InboxItem
from kith.federation.origin import first_id, origin_of, type_of
from kith.federation.signatures import (
    RequestParts,
    SignatureError,
    VerifiableSignature,
    parse_signature,
)
from kith.jobs.queue import enqueue
from kith.runtime import runtime_of

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
    row = (
        await db.execute(
            select(ActorKey, Account)
            .join(Account, Account.id == ActorKey.account_id)
            .where(ActorKey.key_id == key_id, Account.domain != "")
        )
    ).first()
    return (row[0], row[1]) if row else None


async def verified_actor(db: AsyncSession, signature: VerifiableSignature, actor: str) -> Account:
    """The remote account of `actor`, once the signature is proven to be its own; stores a
    newly fetched actor and key (flushed, not committed). Raises InboxRejected(401)."""
    known = await _known_key(db, signature.key_id)
    if known is not None:
        key, owner = known
        if owner.uri != actor:
            raise InboxRejected(401, "the signing key belongs to another actor")
        if signature.verify(key.public_key_pem):
            return owner
    try:
        fetched = await fetch_actor_for_key(db, signature.key_id)
    except ActorFetchFailed as exc:
        raise InboxRejected(401, f"could not get the signing key: {exc}") from exc
    if fetched.uri != actor:
        raise InboxRejected(401, "the signing key belongs to another actor")
    if not signature.verify(fetched.public_key_pem):
        raise InboxRejected(401, "the signature does not verify")
    try:
        return await store_actor(db, fetched)
    except ActorFetchFailed as exc:
        raise InboxRejected(401, str(exc)) from exc


async def _store(
    db: AsyncSession, activity: dict[str, Any], actor: Account, recipient: Account | None
) -> bool:
    """Store the activity and its job; False (and nothing written) if it was seen before."""
    insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(InboxItem)
        .values(
            id=new_id(),
            activity_id=activity["id"],
            activity_type=type_of(activity),
            actor_uri=first_id(activity["actor"]),
            actor_account_id=actor.id,
            recipient_account_id=recipient.id if recipient else None,
            activity=activity,
            received_at=utcnow(),
            outcome="",
        )
        .on_conflict_do_nothing(index_elements=["activity_id"])
        .returning(InboxItem.id)
    )
    item_id = (await db.execute(stmt)).scalar_one_or_none()
    if item_id is None:
        return False
    await enqueue(db, INBOX_JOB, {"item_id": item_id})
    return True


async def receive(
    db: AsyncSession, request: RequestParts, recipient: Account | None = None
) -> bool:
    """Verify and store one delivery (see the module docstring). True if it was new, False
    for a repeat; raises InboxRejected with the status to answer."""
    settings = runtime_of(db).settings
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
    if await domain_is_blocked(db, actor_host):
        raise InboxRejected(403, "this instance does not federate with that host")
    for attempt in (1, 2):
        try:
            account = await verified_actor(db, signature, actor)
            stored = await _store(db, activity, account, recipient)
            await db.commit()
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
