"""A community's moderation log: every moderator's action writes one entry in its own
transaction (`log_action`), and members read them newest first (`log_entries`). The entry's
id also names what the action sends to other servers (`federation.group_moderation`)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.communities.models import Community, ModAction, ModerationLogEntry
from kith.db import new_id
from kith.errors import ValidationFailed

MAX_REASON = 1000


def log_action(
    db: AsyncSession,
    community: Community,
    actor_id: int | None,
    action: ModAction,
    *,
    target_account_id: int | None = None,
    target_post_id: int | None = None,
    reason: str = "",
    detail: str = "",
) -> ModerationLogEntry:
    """Add a log entry to the session (the caller's commit writes it with the action) and
    return it, its id already set."""
    entry = ModerationLogEntry(
        id=new_id(),
        community_id=community.id,
        actor_id=actor_id,
        action=action,
        target_account_id=target_account_id,
        target_post_id=target_post_id,
        reason=reason,
        detail=detail[:200],
    )
    db.add(entry)
    return entry


async def log_entries(
    db: AsyncSession, community: Community, *, limit: int = 50
) -> Sequence[ModerationLogEntry]:
    """The community's moderation log, newest first."""
    rows = await db.scalars(
        select(ModerationLogEntry)
        .where(ModerationLogEntry.community_id == community.id)
        .order_by(ModerationLogEntry.id.desc())
        .limit(limit)
    )
    return rows.all()


def check_reason(reason: str) -> str:
    """A moderator's reason, trimmed and bounded."""
    reason = reason.strip()
    if len(reason) > MAX_REASON:
        raise ValidationFailed(f"Keep the reason under {MAX_REASON} characters.", field="reason")
    return reason
