"""Local actors' RSA keys: made the first time one is needed, then kept.

Generating a 2048-bit key costs 50-100 ms, so it is not done at sign-up (tests and imports
create many accounts that never federate) but lazily, in a thread, by `local_key`. The key is
written and committed on a connection of its own, so it survives even when the caller's
request only reads, and two concurrent first calls end with one key: the loser's insert hits
the unique `key_id` and it reads the winner's row instead.

On SQLite, don't call `local_key` / `instance_key` while the same session holds uncommitted
writes: the key's own short write transaction would wait for the caller's lock."""

from __future__ import annotations

import asyncio
from functools import lru_cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.communities.models import Community
from kith.federation import uris
from kith.federation.models import ActorKey
from kith.runtime import runtime_of

KEY_BITS = 2048


def _generate_pem_pair() -> tuple[str, str]:
    """A fresh RSA key as (private PKCS#8 PEM, public SubjectPublicKeyInfo PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


async def _find(db: AsyncSession, key_id: str) -> ActorKey | None:
    return (
        await db.execute(select(ActorKey).where(ActorKey.key_id == key_id))
    ).scalar_one_or_none()


async def _get_or_create(
    db: AsyncSession, key_id: str, account_id: int | None, community_id: int | None = None
) -> ActorKey:
    found = await _find(db, key_id)
    if found is not None:
        return found
    private_pem, public_pem = await asyncio.to_thread(_generate_pem_pair)
    async with runtime_of(db).sessions() as own:
        own.add(
            ActorKey(
                account_id=account_id,
                community_id=community_id,
                key_id=key_id,
                public_key_pem=public_pem,
                private_key_pem=private_pem,
            )
        )
        try:
            await own.commit()
        except IntegrityError:
            await own.rollback()  # another request made it first: use theirs
    found = await _find(db, key_id)
    if found is None:  # pragma: no cover - the row was committed just above
        raise RuntimeError(f"actor key {key_id} vanished after it was written")
    return found


async def local_key(db: AsyncSession, account: Account) -> ActorKey:
    """The key of a local account (made and committed the first time it is asked for)."""
    if not account.is_local:
        raise ValueError("only local accounts have a private key here")
    settings = runtime_of(db).settings
    return await _get_or_create(db, uris.key_id(settings, account.username), account.id)


async def instance_key(db: AsyncSession) -> ActorKey:
    """The instance actor's key (`/actor#main-key`), made the first time it is asked for."""
    return await _get_or_create(db, uris.instance_key_id(runtime_of(db).settings), None)


async def community_key(db: AsyncSession, community: Community) -> ActorKey:
    """The key of a community's `Group` actor (made the first time it is asked for; it goes
    with the community)."""
    settings = runtime_of(db).settings
    return await _get_or_create(
        db, uris.group_key_id(settings, community.handle), None, community.id
    )


@lru_cache(maxsize=1024)
def load_private_key(private_pem: str) -> rsa.RSAPrivateKey:
    """The parsed private key of a PEM (cached: parsing costs more than signing)."""
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key
