"""Local actors' keys: made lazily, once, even when two requests ask at the same moment."""

from __future__ import annotations

import asyncio
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.federation import keys
from kith.federation.models import ActorKey
from kith.runtime import Runtime
from tests.world import person


async def _count(db: AsyncSession) -> int:
    return int(await db.scalar(select(func.count()).select_from(ActorKey)) or 0)


async def test_sign_up__makes_no_key(db: AsyncSession) -> None:
    # Given a new account, then no key was generated for it (keys cost 50-100 ms each)
    await person(db, "alice")
    assert await _count(db) == 0


async def test_local_key__made_on_first_use_then_the_same(db: AsyncSession) -> None:
    # Given alice, when her key is asked for twice
    alice = await person(db, "alice")
    first = await keys.local_key(db, alice)
    second = await keys.local_key(db, alice)
    # Then it is one 2048-bit RSA key, named after her actor, and it is kept
    assert first.id == second.id
    assert first.key_id == "http://kith.test/users/alice#main-key"
    assert first.account_id == alice.id
    assert await _count(db) == 1
    assert first.private_key_pem is not None
    private = keys.load_private_key(first.private_key_pem)
    assert private.key_size == 2048
    # And its public half verifies what its private half signed
    public = serialization.load_pem_public_key(first.public_key_pem.encode())
    assert isinstance(public, rsa.RSAPublicKey)
    signature = private.sign(b"hello", padding.PKCS1v15(), hashes.SHA256())
    public.verify(signature, b"hello", padding.PKCS1v15(), hashes.SHA256())


async def test_local_key__survives_a_caller_that_never_commits(rt: Runtime) -> None:
    # Given a request that reads alice's key and ends without committing
    async with rt.sessions() as db:
        alice = await person(db, "alice")
    async with rt.sessions() as db:
        made_id = (await keys.local_key(db, alice)).id
        await db.rollback()
    # Then the key is still there for the next request
    async with rt.sessions() as db:
        assert (await keys.local_key(db, alice)).id == made_id
        assert await _count(db) == 1


async def test_local_key__concurrent_first_calls__end_with_one_key(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given alice, who has no key yet, and key generation slow enough that requests overlap
    async with rt.sessions() as db:
        alice = await person(db, "alice")
    generated = 0
    real_generate = keys._generate_pem_pair

    def slow_generate() -> tuple[str, str]:
        nonlocal generated
        generated += 1
        time.sleep(0.2)
        return real_generate()

    monkeypatch.setattr(keys, "_generate_pem_pair", slow_generate)

    async def ask() -> ActorKey:
        async with rt.sessions() as db:
            return await keys.local_key(db, alice)

    # When five requests ask for her key at the same moment
    got = await asyncio.gather(*(ask() for _ in range(5)))
    # Then several of them raced to make one (the race really happened) …
    assert generated > 1
    # … yet they all got the same key, and only one row exists
    assert len({k.id for k in got}) == 1
    assert len({k.public_key_pem for k in got}) == 1
    async with rt.sessions() as db:
        assert await _count(db) == 1


async def test_local_key__refused_for_a_remote_account(db: AsyncSession) -> None:
    from kith.accounts.models import Account

    remote = Account(username="bob", username_key="bob", domain="elsewhere.example")
    db.add(remote)
    await db.commit()
    with pytest.raises(ValueError):
        await keys.local_key(db, remote)


async def test_instance_key__one_key_without_an_account(db: AsyncSession) -> None:
    first = await keys.instance_key(db)
    second = await keys.instance_key(db)
    assert first.id == second.id
    assert first.account_id is None
    assert first.key_id == "http://kith.test/actor#main-key"
