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
from kith.federation import domain_blocks, keys
from kith.federation.models import ActorKey, RemoteActor
from kith.federation.origin import ACTOR_TYPES, id_of, origin_of, type_of
from kith.federation.signatures import sign_request
from kith.net import Fetched, FetchError, Signer
from kith.runtime import runtime_of
from kith.text import html_to_text, sanitize_remote_html

log = logging.getLogger(__name__)

ACTIVITY_ACCEPT = 'application/activity+json, application/ld+json; profile="https://www.w3.org/ns/activitystreams"'
JSON_TYPES = ("application/activity+json", "application/ld+json", "application/json")
MAX_ACTOR_BYTES = 1024 * 1024
_USERNAME_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")


class ActorFetchFailed(Exception):
    """The actor or key could not be fetched, or the document is not a valid actor."""


class ActorGone(ActorFetchFailed):
    """The server answered 410 Gone: the object (an actor, when an actor was asked for) was
    deleted there for good."""

    def __init__(self, url: str) -> None:
        super().__init__(f"{url[:200]} is gone (410)")
        self.url = url


@dataclass
class FetchedActor:
    """An actor document that passed the checks, with the key that was asked for."""

    uri: str
    document: dict[str, Any]
    key_id: str
    public_key_pem: str


async def fetch_signer(db: AsyncSession, account: Account | None = None) -> Signer | None:
    """A signer for outbound GETs (servers in "authorized fetch" mode require one): the local
    `account`'s key, for a fetch on its behalf, or the instance actor's. None when no key can
    be had, and the fetch goes unsigned. On SQLite call it before the session writes: a first
    key is committed on a session of its own (`keys`)."""
    try:
        if account is not None and account.is_local:
            key = await keys.local_key(db, account)
        else:
            key = await keys.instance_key(db)
        if key.private_key_pem is None:
            return None
        private = keys.load_private_key(key.private_key_pem)
    except Exception:  # an unsigned fetch still works on most servers
        log.exception("no key to sign fetches with")
        return None
    key_id = key.key_id
    return lambda request: sign_request(request, key_id, private)


async def instance_signer(db: AsyncSession) -> Signer | None:
    """`fetch_signer` as the instance actor (fetches made on nobody's behalf)."""
    return await fetch_signer(db)


async def signed_get(
    db: AsyncSession,
    url: str,
    *,
    accept: str,
    max_bytes: int | None = None,
    on_behalf_of: Account | None = None,
) -> Fetched:
    """GET through the SSRF-safe client, signed (as `on_behalf_of`, else the instance actor).
    Every GET Kith sends to another server goes through here. Raises FetchError."""
    return await runtime_of(db).http.get(
        url,
        headers={"Accept": accept},
        sign=await fetch_signer(db, on_behalf_of),
        max_bytes=max_bytes,
    )


async def fetch_json(
    db: AsyncSession, url: str, *, on_behalf_of: Account | None = None
) -> tuple[str, dict[str, Any]]:
    """GET an ActivityPub document, signed (`signed_get`): (final URL, JSON object). Its
    `id` must be on the same host as the URL it was finally served from. Nothing is
    fetched from a suspended domain; a 410 raises ActorGone."""
    if await domain_blocks.uri_is_blocked(db, url):
        raise ActorFetchFailed(f"{url[:200]} is on a suspended domain")
    try:
        fetched = await signed_get(
            db, url, accept=ACTIVITY_ACCEPT, max_bytes=MAX_ACTOR_BYTES, on_behalf_of=on_behalf_of
        )
    except FetchError as exc:
        raise ActorFetchFailed(f"could not fetch {url}: {exc}") from exc
    if fetched.status == 410:
        raise ActorGone(url)
    if fetched.status != 200:
        raise ActorFetchFailed(f"{url} answered {fetched.status}")
    if fetched.url != url and await domain_blocks.uri_is_blocked(db, fetched.url):
        raise ActorFetchFailed(f"{url[:200]} redirected to a suspended domain")
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
        await domain_blocks.limit_new_account(db, account)
        db.add(account)
    account.uri = fetched.uri
    account.display_name = _text(doc.get("name"), 100)
    account.bio_html = sanitize_remote_html(_text(doc.get("summary"), 10_000))
    account.locked = doc.get("manuallyApprovesFollowers") is True
    account.discoverable = doc.get("discoverable") is True
    account.fields = _fields(doc)
    account.also_known_as = [
        uri[:1024] for uri in (id_of(v) for v in _as_list(doc.get("alsoKnownAs"))[:20]) if uri
    ]
    await db.flush()
    was_suspended = await _store_endpoints(db, account, doc)
    await _follow_origin_suspension(db, account, was_suspended, doc.get("suspended") is True)
    await _store_key(db, account, fetched)
    await db.flush()
    from kith.emojis import remote as remote_emojis  # emoji images build on federation
    from kith.emojis.activitypub import parse_emoji_tags

    await remote_emojis.remember(db, domain, parse_emoji_tags(doc.get("tag")))
    return account


async def _follow_origin_suspension(
    db: AsyncSession, account: Account, was: bool, now: bool
) -> None:
    """Mirror a suspension the actor's own server announces (`suspended: true`, as Mastodon
    and Kith send in `Update(Person)`): the account is hidden here until its server lifts it.
    Lifting it clears only a suspension its server had announced, and never the stamp of a
    domain block. (A moderator's suspension made here while the server's own lasted is not
    told apart, and ends with it.)"""
    if now and account.suspended_at is None:
        account.suspended_at = utcnow()
    elif was and not now and account.suspended_at is not None:
        rule = await domain_blocks.policy_for(db, account.domain)
        if not rule.suspend:
            account.suspended_at = None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else ([] if value is None else [value])


def _fields(doc: dict[str, Any]) -> list[dict[str, str]]:
    """Profile fields (Mastodon's `PropertyValue` attachments), sanitized, at most 8."""
    found: list[dict[str, str]] = []
    for item in _as_list(doc.get("attachment")):
        if not isinstance(item, dict) or type_of(item) != "PropertyValue":
            continue
        name, value = item.get("name"), item.get("value")
        if isinstance(name, str) and isinstance(value, str):
            found.append(
                {
                    "name": name.strip()[:255],
                    "value": html_to_text(value[:2048])[:255],
                    "value_html": sanitize_remote_html(value[:2048]),
                }
            )
        if len(found) == 8:
            break
    return found


async def _store_endpoints(db: AsyncSession, account: Account, doc: dict[str, Any]) -> bool:
    """Store the actor's endpoints and document; returns whether the document it replaces
    said the actor was suspended."""
    remote = await db.scalar(select(RemoteActor).where(RemoteActor.account_id == account.id))
    if remote is None:
        remote = RemoteActor(account_id=account.id, document={})
        db.add(remote)
    was_suspended = isinstance(remote.document, dict) and remote.document.get("suspended") is True
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
    await _note_images(db, remote, _image_url(doc.get("icon")), _image_url(doc.get("image")))
    return was_suspended


def _image_url(value: Any) -> str | None:
    """The URL of an actor's `icon` / `image`: a URL, a Link or Image (whose `url` may itself
    be a list), or a list of those; the first usable http(s) URL."""
    for item in value if isinstance(value, list) else [value]:
        url = item.get("url") if isinstance(item, dict) else item
        for candidate in url if isinstance(url, list) else [url]:
            if isinstance(candidate, dict):
                candidate = candidate.get("href")
            if isinstance(candidate, str) and origin_of(candidate) and len(candidate) <= 1024:
                return candidate
    return None


async def _note_images(
    db: AsyncSession, remote: RemoteActor, avatar: str | None, header: str | None
) -> None:
    """Remember where the avatar and header are, and have the media cache fetch them when
    they changed or were never fetched (never linked to from our pages)."""
    changed = (avatar, header) != (remote.avatar_url, remote.header_url)
    remote.avatar_url, remote.header_url = avatar, header
    if changed or (remote.images_fetched_at is None and (avatar or header)):
        from kith.media import remote as remote_media  # the media cache builds on federation

        await db.flush()
        await remote_media.actor_images_changed(db, remote)


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
