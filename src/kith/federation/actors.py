"""Remote actors: fetch an actor (by one of its keys) through the SSRF-safe client, check
that the document is what it claims to be, and remember it as a remote `Account` with its
endpoints (`RemoteActor`) and public key (`ActorKey`).

Fetching and storing are separate steps so that the inbox stores nothing for a request
whose signature then fails to verify."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.db import utcnow
from kith.federation import keys
from kith.federation.models import ActorKey, RemoteActor
from kith.federation.origin import ACTOR_TYPES, id_of, origin_of, type_of
from kith.federation.signatures import sign_request
from kith.net import FetchError, Signer
from kith.runtime import runtime_of
from kith.text import sanitize_remote_html

log = logging.getLogger(__name__)

ACTIVITY_ACCEPT = 'application/activity+json, application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
JSON_TYPES = ("application/activity+json", "application/ld+json", "application/json")
MAX_ACTOR_BYTES = 1024 * 1024
_USERNAME_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")


class ActorFetchFailed(Exception):
    """The actor or key could not be fetched, or the document is not a valid actor."""


@dataclass
class FetchedActor:
    """An actor document that passed the checks, with the key that was asked for."""

    uri: str
    document: dict[str, Any]
    key_id: str
    public_key_pem: str


async def instance_signer(db: AsyncSession) -> Signer | None:
    """Sign fetches as the instance actor (servers in "authorized fetch" mode require a
    signature); None if no instance key can be had, and the fetch goes unsigned."""
    try:
        key = await keys.instance_key(db)
        if key.private_key_pem is None:
            return None
        private = keys.load_private_key(key.private_key_pem)
    except Exception:  # an unsigned fetch still works on most servers
        log.exception("no instance key to sign fetches with")
        return None
    return lambda request: sign_request(request, key.key_id, private)


async def fetch_json(db: AsyncSession, url: str) -> tuple[str, dict[str, Any]]:
    """GET an ActivityPub document: (final URL, JSON object). Its `id` must be on the same
    host as the URL it was finally served from."""
    http = runtime_of(db).http
    try:
        fetched = await http.get(
            url,
            headers={"Accept": ACTIVITY_ACCEPT},
            sign=await instance_signer(db),
            max_bytes=MAX_ACTOR_BYTES,
        )
    except FetchError as exc:
        raise ActorFetchFailed(f"could not fetch {url}: {exc}") from exc
    if fetched.status != 200:
        raise ActorFetchFailed(f"{url} answered {fetched.status}")
    content_type = fetched.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type not in JSON_TYPES:
        raise ActorFetchFailed(f"{url} is not ActivityPub JSON ({content_type or 'no type'})")
    try:
        doc = json.loads(fetched.content)
    except (ValueError, RecursionError) as exc:
        raise ActorFetchFailed(f"{url} is not valid JSON") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
        raise ActorFetchFailed(f"{url} is not an object with an id")
    if origin_of(doc["id"]) != origin_of(fetched.url):
        raise ActorFetchFailed(f"{url} served a document of another host ({doc['id'][:200]})")
    return fetched.url, doc


def _key_in(actor: dict[str, Any], key_id: str) -> str | None:
    """The PEM of the key `key_id` listed (and owned) by this actor document."""
    entries = actor.get("publicKey")
    for entry in entries if isinstance(entries, list) else [entries]:
        if not isinstance(entry, dict) or entry.get("id") != key_id:
            continue
        owner = id_of(entry.get("owner"))
        pem = entry.get("publicKeyPem")
        if owner in (None, actor["id"]) and isinstance(pem, str):
            return pem
    return None


def _check_actor(doc: dict[str, Any]) -> None:
    if type_of(doc) not in ACTOR_TYPES:
        raise ActorFetchFailed(f"{doc['id'][:200]} is not an actor")
    if not isinstance(doc.get("inbox"), str) or not origin_of(doc["inbox"]):
        raise ActorFetchFailed(f"{doc['id'][:200]} has no inbox")


async def fetch_actor_for_key(db: AsyncSession, key_id: str) -> FetchedActor:
    """Fetch the actor that owns `key_id`: the key's URL serves either the actor itself
    (`…/users/ana#main-key`) or a key document whose owner then has to list the key back."""
    if not origin_of(key_id):
        raise ActorFetchFailed("the keyId is not an http(s) URI")
    _, doc = await fetch_json(db, key_id.split("#", 1)[0])
    if "publicKey" not in doc and isinstance(doc.get("publicKeyPem"), str):
        owner = id_of(doc.get("owner"))
        if owner is None or origin_of(owner) != origin_of(key_id):
            raise ActorFetchFailed("the key's owner is missing or on another host")
        _, doc = await fetch_json(db, owner)
    _check_actor(doc)
    pem = _key_in(doc, key_id)
    if pem is None:
        raise ActorFetchFailed(f"{doc['id'][:200]} does not list the key {key_id[:200]}")
    return FetchedActor(doc["id"], doc, key_id, pem)


def _text(value: Any, limit: int) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


def _username(doc: dict[str, Any]) -> str:
    name = _text(doc.get("preferredUsername"), 64)
    if not name:
        name = doc["id"].rstrip("/").rsplit("/", 1)[-1]
    return _USERNAME_CHARS.sub("", name)[:64] or "actor"


def _url(value: Any) -> str | None:
    url = id_of(value)
    return url[:1024] if url and origin_of(url) else None


async def store_actor(db: AsyncSession, fetched: FetchedActor) -> Account:
    """Create or update the remote Account, its RemoteActor and its key (flushed, not
    committed: the caller's transaction decides)."""
    doc = fetched.document
    domain = origin_of(fetched.uri)
    username = _username(doc)
    account = await db.scalar(select(Account).where(Account.uri == fetched.uri))
    if account is None:
        # Same name on the same host, another id: the actor was recreated there.
        account = await db.scalar(
            select(Account).where(
                Account.username_key == username.casefold(), Account.domain == domain
            )
        )
    if account is None:
        account = Account(username=username, username_key=username.casefold(), domain=domain)
        db.add(account)
    account.uri = fetched.uri
    account.display_name = _text(doc.get("name"), 100)
    account.bio_html = sanitize_remote_html(_text(doc.get("summary"), 10_000))
    account.locked = doc.get("manuallyApprovesFollowers") is True
    account.discoverable = doc.get("discoverable") is True
    await db.flush()
    await _store_endpoints(db, account, doc)
    await _store_key(db, account, fetched)
    await db.flush()
    return account


async def _store_endpoints(db: AsyncSession, account: Account, doc: dict[str, Any]) -> None:
    remote = await db.scalar(select(RemoteActor).where(RemoteActor.account_id == account.id))
    if remote is None:
        remote = RemoteActor(account_id=account.id)
        db.add(remote)
    endpoints = doc.get("endpoints")
    if not isinstance(endpoints, dict):
        endpoints = {}
    remote.actor_type = type_of(doc)[:32]
    remote.inbox_url = doc["inbox"][:1024]
    remote.shared_inbox_url = _url(endpoints.get("sharedInbox"))
    remote.outbox_url = _url(doc.get("outbox"))
    remote.followers_url = _url(doc.get("followers"))
    remote.following_url = _url(doc.get("following"))
    remote.featured_url = _url(doc.get("featured"))
    remote.profile_url = _url(doc.get("url"))
    remote.document = doc
    remote.fetched_at = utcnow()


async def _store_key(db: AsyncSession, account: Account, fetched: FetchedActor) -> None:
    key = await db.scalar(select(ActorKey).where(ActorKey.key_id == fetched.key_id))
    if key is None:
        key = ActorKey(key_id=fetched.key_id, public_key_pem=fetched.public_key_pem)
        db.add(key)
    elif key.private_key_pem is not None:
        raise ActorFetchFailed("a remote actor claims one of this instance's keys")
    key.account_id = account.id
    key.public_key_pem = fetched.public_key_pem
    key.fetched_at = utcnow()
