"""Undo: take back an earlier activity of the same actor (origin.check_origin has checked
that the undone activity is the actor's). Each family registers what undoing its type means."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.federation.handlers.common import actor_of, undone_activity
from kith.federation.models import InboxItem
from kith.federation.origin import first_id, type_of
from kith.federation.processing import activity_handler

UndoHandler = Callable[[AsyncSession, Account, dict[str, Any]], Awaitable[str]]
UNDO_HANDLERS: dict[str, UndoHandler] = {}


def undo_handler(kind: str) -> Callable[[UndoHandler], UndoHandler]:
    """Register what an Undo of a `kind` activity does (idempotently)."""

    def register(fn: UndoHandler) -> UndoHandler:
        UNDO_HANDLERS[kind] = fn
        return fn

    return register


@activity_handler("Undo")
async def on_undo(db: AsyncSession, item: InboxItem) -> str:
    actor = await actor_of(db, item)
    undone = await undone_activity(db, item)
    if actor is None or undone is None:
        return "ignored: nothing known to undo"
    if first_id(undone.get("actor")) not in (None, actor.uri):
        return "refused: Undo of another actor's activity"
    handler = UNDO_HANDLERS.get(type_of(undone))
    if handler is None:
        return f"ignored: Undo of {type_of(undone) or 'an untyped activity'}"
    return await handler(db, actor, undone)
