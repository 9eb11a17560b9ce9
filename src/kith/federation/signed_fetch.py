"""Signed GETs, both ways.

Out: every GET Kith sends to another server carries an HTTP signature — the instance actor's,
or the key of the local account on whose behalf it fetches (`actors.fetch_signer`, used by
`actors.signed_get`) — so servers in "authorized fetch" mode answer it.

In: a GET of one of our ActivityPub documents that carries a signature is answered for the
signer (`signer_of`): the key is checked as the inbox checks it (fresh, covering the request
target and host, sent to this host, on a host we federate with, verifying), then the key's
owner is the viewer `kith.policy` decides for. With `KITH_AUTHORIZED_FETCH` on, a document
GET without a valid signature is refused (401)."""

from __future__ import annotations

import logging

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.federation.actors import ActorFetchFailed, fetch_actor_for_key, store_actor
from kith.federation.domain_blocks import domain_is_blocked
from kith.federation.inbox import _known_key
from kith.federation.origin import origin_of
from kith.federation.signatures import RequestParts, SignatureError, parse_signature
from kith.runtime import runtime_of

log = logging.getLogger(__name__)


class BadFetchSignature(Exception):
    """A GET carries a signature that does not prove who sent it; the message says why."""


def is_signed(request: RequestParts) -> bool:
    """The request carries a signature header (valid or not)."""
    return bool(request.values("signature") or request.values("signature-input"))


async def signer_of(db: AsyncSession, request: RequestParts) -> Account | None:
    """The remote account whose key signed this GET; None when it is not signed. Raises
    BadFetchSignature when it is signed but the signature proves nothing. A newly fetched
    signer is stored and committed (the request is a read: nothing else is pending)."""
    if not is_signed(request):
        return None
    settings = runtime_of(db).settings
    if request.authority.strip().lower() != settings.domain.lower():
        raise BadFetchSignature("the request was signed for another host")
    try:
        signature = parse_signature(request)
    except SignatureError as exc:
        raise BadFetchSignature(str(exc)) from exc
    host = origin_of(signature.key_id)
    if not host or host == origin_of(settings.base_url):
        raise BadFetchSignature("the keyId is not a remote http(s) URI")
    if await domain_is_blocked(db, host):
        raise BadFetchSignature("this instance does not federate with that host")
    known = await _known_key(db, signature.key_id)
    if known is not None and signature.verify(known[0].public_key_pem):
        return known[1]
    try:
        fetched = await fetch_actor_for_key(db, signature.key_id)  # once: the key may be new
    except ActorFetchFailed as exc:
        raise BadFetchSignature(f"could not get the signing key: {exc}") from exc
    if origin_of(fetched.uri) != host:
        raise BadFetchSignature("the signing key belongs to an actor on another host")
    if not signature.verify(fetched.public_key_pem):
        raise BadFetchSignature("the signature does not verify")
    try:
        account = await store_actor(db, fetched)
        await db.commit()
    except IntegrityError:
        # A concurrent request stored this actor or key first: theirs is the same key.
        await db.rollback()
        known = await _known_key(db, signature.key_id)
        if known is None or known[1].uri != fetched.uri:
            raise BadFetchSignature("the signing key changed hands meanwhile") from None
        return known[1]
    except ActorFetchFailed as exc:
        await db.rollback()
        raise BadFetchSignature(str(exc)) from exc
    except Exception:
        await db.rollback()
        raise
    return account
