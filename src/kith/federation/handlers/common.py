"""What every activity handler needs: the actor's account, the object, the undone activity."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.federation import keys
from kith.federation.models import InboxItem
from kith.federation.origin import first_id, type_of


async def actor_of(db: AsyncSession, item: InboxItem) -> Account | None:
    """The remote account that sent the activity (stored by the inbox when it verified the
    signature); None when it has been removed or deleted since (a Delete of the actor ends
    what it can do here, even with activities that were waiting)."""
    if item.actor_account_id is None:
        return None
    actor = await db.get(Account, item.actor_account_id)
    return actor if actor is not None and actor.deleted_at is None else None


def object_id(activity: dict[str, Any]) -> str | None:
    """The id of the activity's single object."""
    return first_id(activity.get("object"))


async def undone_activity(db: AsyncSession, item: InboxItem) -> dict[str, Any] | None:
    """The activity an Undo takes back: embedded (most servers), or named by id and then
    found among the activities this actor delivered before."""
    obj = item.activity.get("object")
    if isinstance(obj, dict) and type_of(obj):
        return obj
    undone_id = first_id(obj)
    if undone_id is None:
        return None
    earlier = await db.scalar(
        select(InboxItem.activity).where(
            InboxItem.activity_id == undone_id, InboxItem.actor_uri == item.actor_uri
        )
    )
    return earlier if isinstance(earlier, dict) else None


async def ready_to_fetch(db: AsyncSession) -> None:
    """Call before a handler writes anything if it may fetch: the instance key that signs
    fetches is then made (its first creation commits on its own connection, see `keys`)."""
    await keys.instance_key(db)
