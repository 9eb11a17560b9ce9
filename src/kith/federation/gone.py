"""Actors that answer 410 Gone: deleted on their server for good, so they are forgotten here
as if they had sent Delete(Person) (`handlers.people.delete_actor`), and their endpoints and
keys go, so nothing is delivered to them and their old key verifies nothing."""

from __future__ import annotations

import logging

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.federation.models import ActorKey, RemoteActor

log = logging.getLogger(__name__)


async def forget_actor(db: AsyncSession, account: Account) -> str:
    """Remove a remote actor that is gone (not committed: the caller's transaction)."""
    from kith.federation.handlers.people import delete_actor  # the handlers import us

    outcome = await delete_actor(db, account)
    await db.execute(delete(RemoteActor).where(RemoteActor.account_id == account.id))
    await db.execute(delete(ActorKey).where(ActorKey.account_id == account.id))
    log.info("remote actor %s is gone (410): %s", account.uri, outcome)
    return outcome


async def actor_gone(db: AsyncSession, uri: str) -> bool:
    """A fetch of the actor `uri` answered 410: forget it if we know it."""
    account = await db.scalar(select(Account).where(Account.uri == uri, Account.domain != ""))
    if account is None:
        return False
    await forget_actor(db, account)
    return True


async def inbox_gone(db: AsyncSession, inbox: str) -> int:
    """A delivery to `inbox` answered 410. A personal inbox belongs to one actor, who is
    gone; a shared inbox says nothing about any one actor, so nobody is forgotten then."""
    owners = (
        await db.scalars(
            select(Account)
            .join(RemoteActor, RemoteActor.account_id == Account.id)
            .where(
                RemoteActor.inbox_url == inbox,
                (RemoteActor.shared_inbox_url.is_(None)) | (RemoteActor.shared_inbox_url != inbox),
            )
        )
    ).all()
    for account in owners:
        await forget_actor(db, account)
    return len(owners)
