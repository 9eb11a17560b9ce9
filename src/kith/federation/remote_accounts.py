"""Remote accounts: find `@user@host` through WebFinger, fetch or refresh an actor by its id.

A WebFinger answer is only a pointer: the actor it names is then fetched from its own host,
whose document must carry that very id (`actors.fetch_json` checks the host). When the pointer
leads to another host (a split-domain setup, or a lie), that host's WebFinger must point back
to the same actor before the account is believed. Every request goes through the SSRF-safe
client (`Runtime.http`), signed as the instance actor."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.db import utcnow
from kith.federation import keys
from kith.federation.actors import (
    ActorFetchFailed,
    ActorGone,
    FetchedActor,
    _check_actor,
    fetch_json,
    signed_get,
    store_actor,
)
from kith.federation.domain_blocks import domain_is_blocked
from kith.federation.gone import actor_gone
from kith.federation.local_objects import is_local, local_account
from kith.federation.models import RemoteActor
from kith.federation.origin import id_of, origin_of
from kith.net import FetchError, UnsafeUrl
from kith.runtime import runtime_of

# A known actor is used as stored for this long before a mention or search fetches it again.
REFRESH_AFTER = timedelta(days=1)
MAX_WEBFINGER_BYTES = 64 * 1024
ACTIVITY_TYPES = frozenset(
    {
        "application/activity+json",
        'application/ld+json; profile="https://www.w3.org/ns/activitystreams"',
        "application/ld+json",
    }
)
_USER_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_HOST_RE = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
    r"(?::\d{1,5})?$|^\[[0-9a-f:.]+\](?::\d{1,5})?$"
)


def split_handle(handle: str) -> tuple[str, str] | None:
    """`@user@host` (or `user@host`, or `acct:user@host`) → (user, lowercase host); None when
    it is not a well-formed remote handle."""
    handle = handle.strip().removeprefix("acct:").lstrip("@")
    user, sep, host = handle.partition("@")
    host = host.lower()
    if not sep or not _USER_RE.match(user) or not _HOST_RE.match(host) or len(host) > 255:
        return None
    return user, host


def _scheme_for(db: AsyncSession, host: str) -> str:
    """https, except for hosts the settings allow over plain http (local federation setups,
    whose peers speak http only)."""
    try:
        runtime_of(db).http.policy.check_url(f"http://{host}/")
    except UnsafeUrl:
        return "https"
    return "http"


async def _prepare_signing(db: AsyncSession) -> None:
    """Make sure the instance key exists before anything is written in this session (on
    SQLite its first creation commits on a connection of its own, see `keys`)."""
    await keys.instance_key(db)


async def webfinger(db: AsyncSession, user: str, host: str) -> str:
    """The actor id that `host`'s WebFinger gives for `user@host`; ActorFetchFailed if none."""
    url = (
        f"{_scheme_for(db, host)}://{host}/.well-known/webfinger"
        f"?resource={quote(f'acct:{user}@{host}', safe=':@')}"
    )
    try:
        fetched = await signed_get(
            db, url, accept="application/jrd+json, application/json", max_bytes=MAX_WEBFINGER_BYTES
        )
    except FetchError as exc:
        raise ActorFetchFailed(f"WebFinger of {user}@{host} failed: {exc}") from exc
    if fetched.status != 200:
        raise ActorFetchFailed(f"WebFinger of {user}@{host} answered {fetched.status}")
    try:
        jrd = json.loads(fetched.content)
    except (ValueError, RecursionError) as exc:
        raise ActorFetchFailed(f"WebFinger of {user}@{host} is not JSON") from exc
    links = jrd.get("links") if isinstance(jrd, dict) else None
    for link in links if isinstance(links, list) else []:
        if (
            isinstance(link, dict)
            and link.get("rel") == "self"
            and link.get("type") in ACTIVITY_TYPES
            and isinstance(link.get("href"), str)
            and origin_of(link["href"])
        ):
            return str(link["href"])
    raise ActorFetchFailed(f"WebFinger of {user}@{host} names no ActivityPub actor")


def _key_of(doc: dict[str, Any]) -> tuple[str, str]:
    """(key id, PEM) of the actor's own key on its own host; ActorFetchFailed if it has none."""
    entries = doc.get("publicKey")
    for entry in entries if isinstance(entries, list) else [entries]:
        if not isinstance(entry, dict):
            continue
        key_id, pem = entry.get("id"), entry.get("publicKeyPem")
        if (
            isinstance(key_id, str)
            and isinstance(pem, str)
            and origin_of(key_id) == origin_of(doc["id"])
            and id_of(entry.get("owner")) in (None, doc["id"])
        ):
            return key_id, pem
    raise ActorFetchFailed(f"{doc['id'][:200]} has no public key of its own")


async def store_document(db: AsyncSession, doc: dict[str, Any]) -> Account:
    """Store (create or refresh) a remote actor from a document that is known to come from
    its own server: fetched from there, or carried by an activity the actor signed."""
    if is_local(db, doc["id"]):
        raise ActorFetchFailed("a remote document claims to be one of our actors")
    _check_actor(doc)
    key_id, pem = _key_of(doc)
    return await store_actor(db, FetchedActor(doc["id"], doc, key_id, pem))


async def _fresh(db: AsyncSession, uri: str) -> Account | None:
    row = (
        await db.execute(
            select(Account, RemoteActor.fetched_at)
            .join(RemoteActor, RemoteActor.account_id == Account.id)
            .where(Account.uri == uri, Account.domain != "")
        )
    ).first()
    if row is None or row[1] < utcnow() - REFRESH_AFTER:
        return None
    return row[0]


async def fetch_actor_document(
    db: AsyncSession, uri: str, *, refresh: bool = False
) -> dict[str, Any] | None:
    """The network half of `fetch_account`: the actor document of `uri`, or None when the
    account is ours or was fetched recently (nothing to store). Writes nothing, so a job can
    fetch everything it needs before it opens its write transaction. Raises ActorFetchFailed."""
    if is_local(db, uri):
        if await local_account(db, uri) is None:
            raise ActorFetchFailed("no such local account")
        return None
    if not refresh and await _fresh(db, uri) is not None:
        return None
    host = origin_of(uri)
    if not host or await domain_is_blocked(db, host):
        raise ActorFetchFailed(f"{uri[:200]} is not on a host we federate with")
    await _prepare_signing(db)
    _, doc = await fetch_json(db, uri)
    _check_actor(doc)
    return doc


async def fetch_account(db: AsyncSession, uri: str, *, refresh: bool = False) -> Account:
    """The account of the actor `uri`: ours, a recently fetched remote one, or fetched now
    (with `refresh`, always fetched again) and stored. Raises ActorFetchFailed; an actor
    that answers 410 Gone is forgotten first (`gone.actor_gone`)."""
    try:
        doc = await fetch_actor_document(db, uri, refresh=refresh)
    except ActorGone:
        await actor_gone(db, uri)
        raise
    if doc is not None:
        return await store_document(db, doc)
    account = await (local_account(db, uri) if is_local(db, uri) else _fresh(db, uri))
    if account is None:  # pragma: no cover - just found by fetch_actor_document
        raise ActorFetchFailed(f"{uri[:200]} vanished")
    return account


async def find_handle(db: AsyncSession, user: str, host: str) -> Account | dict[str, Any]:
    """The network half of `resolve_handle`: the account `@user@host` when it is ours or
    known and fresh, else the actor document WebFinger led to (checked, not stored yet).
    Writes nothing, so a caller can look up several handles before it writes (on SQLite, no
    fetch may wait while a session holds the write lock). Raises ActorFetchFailed."""
    settings = runtime_of(db).settings
    if host in (settings.domain.lower(), origin_of(settings.base_url)):
        account = await db.scalar(
            select(Account).where(Account.username_key == user.casefold(), Account.domain == "")
        )
        if account is None:
            raise ActorFetchFailed(f"no account {user} here")
        return account
    known = await db.scalar(
        select(Account).where(Account.username_key == user.casefold(), Account.domain == host)
    )
    if known is not None and known.uri and (fresh := await _fresh(db, known.uri)):
        return fresh
    if await domain_is_blocked(db, host):
        raise ActorFetchFailed(f"{host} is not a host we federate with")
    await _prepare_signing(db)
    actor = await webfinger(db, user, host)
    if origin_of(actor) != host:
        # The pointer leads elsewhere: believe it only if that host claims the actor too.
        _, doc = await fetch_json(db, actor)
        name = doc.get("preferredUsername")
        if not isinstance(name, str) or not _USER_RE.match(name):
            raise ActorFetchFailed(f"{actor[:200]} has no usable preferredUsername")
        if await webfinger(db, name, origin_of(actor)) != doc["id"]:
            raise ActorFetchFailed(f"{host} points at an actor its own host does not confirm")
        if is_local(db, doc["id"]):
            raise ActorFetchFailed("a remote document claims to be one of our actors")
        _check_actor(doc)
        return doc
    doc_or_none = await fetch_actor_document(db, actor, refresh=True)
    if doc_or_none is None:  # the WebFinger of another host pointed at one of ours
        raise ActorFetchFailed(f"{host} points at an actor of this instance")
    return doc_or_none


async def resolve_handle(db: AsyncSession, user: str, host: str) -> Account:
    """The account `@user@host`: a local one when `host` is ours, a known remote one, or one
    found through WebFinger now (stored: flushed, not committed). Raises ActorFetchFailed."""
    found = await find_handle(db, user, host)
    return found if isinstance(found, Account) else await store_document(db, found)


async def profile_url(db: AsyncSession, account: Account) -> str:
    """Where a link to a remote account goes: its profile page (`url`), else its actor id."""
    page = await db.scalar(
        select(RemoteActor.profile_url).where(RemoteActor.account_id == account.id)
    )
    return page or account.uri or ""
