"""The `federation.inbox` job: act on one stored activity.

Every activity passes the origin rule first (`origin.check_origin`); then it goes to the
handler registered for its type; a type without one is marked "not handled yet" and logged.
The job is idempotent: an item already processed is left alone. The handlers live in
`federation/handlers/` (imported at the end of this module, so they can register)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kith.db import utcnow
from kith.federation.domain_blocks import uri_is_blocked
from kith.federation.inbox import INBOX_JOB
from kith.federation.models import InboxItem
from kith.federation.origin import OriginViolation, check_origin
from kith.jobs.queue import job_handler

log = logging.getLogger(__name__)

# A handler acts on one activity and returns a short outcome for `InboxItem.outcome`.
ActivityHandler = Callable[[AsyncSession, InboxItem], Awaitable[str]]
ACTIVITY_HANDLERS: dict[str, ActivityHandler] = {}
NOT_HANDLED = "not handled yet"


def activity_handler(kind: str) -> Callable[[ActivityHandler], ActivityHandler]:
    """Register the function that acts on activities of type `kind` (idempotently)."""

    def register(fn: ActivityHandler) -> ActivityHandler:
        ACTIVITY_HANDLERS[kind] = fn
        return fn

    return register


async def process(db: AsyncSession, item: InboxItem) -> str:
    """Check the origin rule, then dispatch by type; returns the outcome."""
    if await uri_is_blocked(db, item.actor_uri):  # stored before its domain was suspended
        return "refused: the actor's domain is suspended"
    try:
        check_origin(item.activity)
    except OriginViolation as exc:
        log.warning("inbox: refused %s from %s: %s", item.activity_id, item.actor_uri, exc)
        return f"refused: {exc}"
    handler = ACTIVITY_HANDLERS.get(item.activity_type)
    if handler is None:
        log.info("inbox: %s activities are %s (%s)", item.activity_type, NOT_HANDLED, item.id)
        return NOT_HANDLED
    return await handler(db, item)


@job_handler(INBOX_JOB)
async def process_inbox_item(db: AsyncSession, payload: dict[str, Any]) -> None:
    """Process the InboxItem `payload["item_id"]` once."""
    item = await db.get(InboxItem, int(payload["item_id"]))
    if item is None or item.processed_at is not None:
        return
    item.outcome = (await process(db, item))[:500]
    item.processed_at = utcnow()


# The handlers register themselves in ACTIVITY_HANDLERS when imported (they import this module).
from kith.federation import handlers as _handlers  # noqa: E402, F401
