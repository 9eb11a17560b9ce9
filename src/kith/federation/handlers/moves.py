"""Move: an account migrated; its local followers follow the new account (rules in
`federation.moves`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from kith.federation.handlers.common import actor_of, object_id, ready_to_fetch
from kith.federation.models import InboxItem
from kith.federation.moves import MoveRefused, receive_move
from kith.federation.origin import first_id
from kith.federation.processing import activity_handler


@activity_handler("Move")
async def on_move(db: AsyncSession, item: InboxItem) -> str:
    """Only an actor can move itself (object = actor), and only to an account that lists it
    in `alsoKnownAs` (checked on a fresh fetch of the target)."""
    actor = await actor_of(db, item)
    if actor is None:
        return "ignored: unknown actor"
    if object_id(item.activity) != actor.uri:
        return "refused: an actor can only move itself"
    target = first_id(item.activity.get("target"))
    if target is None:
        return "refused: no target"
    await ready_to_fetch(db)
    try:
        return await receive_move(db, actor, target)
    except MoveRefused as exc:
        return f"refused: {exc}"
