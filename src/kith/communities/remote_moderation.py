"""What a remote community's own moderators decided, applied here: posts removed and
restored, threads locked and pinned, our people banned and unbanned.

A remote community (`Community.is_remote`) has no moderators here; its Group's server decides
and announces it (`federation.handlers.group_announces` checks that the Group itself says so,
for a moderator on its own host). These functions change the same rows local moderation
changes (`communities.post_moderation`, `communities.moderation`) — so feeds, the gate, the
composer's refusals and the community page follow unchanged — without a permission check
(nobody here has the power: the Group's word is the authority) and without telling other
servers (it happened on theirs).

Each change writes a moderation log entry naming the **remote moderator's own account** as
its actor (`moderator_id`, None when their server did not give it) and the community's host
in its detail: members here see why a post left or a thread closed, and nobody reads it as a
local moderator's act. Nothing here commits: the inbox job's transaction does."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from kith.communities import notices
from kith.communities.models import (
    Community,
    CommunityBan,
    CommunityPost,
    CommunityPostState,
    Membership,
    ModAction,
)
from kith.communities.modlog import MAX_REASON, log_action
from kith.db import utcnow


def _detail(community: Community, detail: str = "") -> str:
    where = f"decided on {community.domain}"
    return f"{detail}, {where}" if detail else where


async def _logged(
    db: AsyncSession,
    community: Community,
    moderator_id: int | None,
    action: ModAction,
    *,
    account_id: int | None,
    post_id: int | None = None,
    reason: str = "",
    detail: str = "",
) -> None:
    """Log the remote moderator's action and tell the local person it concerns, as a local
    moderator's would (the log is the community's story, wherever it was decided)."""
    assert community.is_remote, "only a remote community's server moderates it from afar"
    log_action(
        db,
        community,
        moderator_id,
        action,
        target_account_id=account_id,
        target_post_id=post_id,
        reason=reason.strip()[:MAX_REASON],
        detail=_detail(community, detail),
    )
    if moderator_id is not None:
        await notices.moderator_acted(db, community.id, moderator_id, action, account_id, post_id)


async def move_post(
    db: AsyncSession,
    community: Community,
    row: CommunityPost,
    author_id: int | None,
    *,
    removed: bool,
    moderator_id: int | None,
    reason: str = "",
) -> bool:
    """Take a post out of the remote community (`removed`) or put it back; its gate follows.
    False when it already stood so (a repeated Announce changes nothing)."""
    from kith.communities.posting import refresh_gate  # posting imports posts: import late

    to_state = CommunityPostState.REMOVED if removed else CommunityPostState.APPROVED
    if row.state == to_state or (not removed and row.state != CommunityPostState.REMOVED):
        return False
    done = await db.execute(
        update(CommunityPost)
        .where(
            CommunityPost.community_id == community.id,
            CommunityPost.post_id == row.post_id,
            CommunityPost.state == row.state,
        )
        .values(state=to_state, decided_by_id=moderator_id, decided_at=utcnow())
        .execution_options(synchronize_session="fetch")
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        return False
    await refresh_gate(db, row.post_id)
    await _logged(
        db,
        community,
        moderator_id,
        ModAction.REMOVE_POST if removed else ModAction.RESTORE_POST,
        account_id=author_id,
        post_id=row.post_id,
        reason=reason,
    )
    return True


async def lock_thread(
    db: AsyncSession,
    community: Community,
    row: CommunityPost,
    author_id: int | None,
    *,
    locked: bool,
    moderator_id: int | None,
    reason: str = "",
) -> bool:
    """Lock a thread of the remote community (replies from here are refused, as in a locked
    thread of ours) or unlock it. False when it already stood so."""
    if not row.is_thread or (row.locked_at is not None) == locked:
        return False
    row.locked_at = utcnow() if locked else None
    await _logged(
        db,
        community,
        moderator_id,
        ModAction.LOCK if locked else ModAction.UNLOCK,
        account_id=author_id,
        post_id=row.post_id,
        reason=reason,
    )
    return True


async def pin_thread(
    db: AsyncSession,
    community: Community,
    row: CommunityPost,
    author_id: int | None,
    *,
    pinned: bool,
    moderator_id: int | None,
) -> bool:
    """Pin (or unpin) a thread of the remote community above its feed here. Its server
    decides how many it pins: our own limit (`MAX_PINNED`) is for our communities. False
    when it already stood so, or the thread is not approved here."""
    if not row.is_thread or (row.pinned_at is not None) == pinned:
        return False
    if pinned and row.state != CommunityPostState.APPROVED:
        return False
    row.pinned_at = utcnow() if pinned else None
    await _logged(
        db,
        community,
        moderator_id,
        ModAction.PIN if pinned else ModAction.UNPIN,
        account_id=author_id,
        post_id=row.post_id,
    )
    return True


async def ban(
    db: AsyncSession,
    community: Community,
    account_id: int,
    *,
    until: datetime | None,
    moderator_id: int | None,
    reason: str = "",
) -> None:
    """One of our people was banned from the remote community (until `until`, or for good):
    their membership or request ends and, while the ban lasts, they cannot join or post into
    it from here (`permissions.standing` reads the same ban rows as for our communities);
    the community page says so. Banning again replaces the earlier ban."""
    reason = reason.strip()[:MAX_REASON]
    row = await db.get(CommunityBan, (community.id, account_id))
    if row is None:
        row = CommunityBan(community_id=community.id, account_id=account_id)
        db.add(row)
    row.until, row.reason, row.by_id, row.created_at = until, reason, moderator_id, utcnow()
    await db.execute(
        delete(Membership).where(
            Membership.community_id == community.id, Membership.account_id == account_id
        )
    )
    detail = f"until {until:%Y-%m-%d %H:%M} UTC" if until else "for good"
    await _logged(
        db,
        community,
        moderator_id,
        ModAction.BAN,
        account_id=account_id,
        reason=reason,
        detail=detail,
    )


async def unban(
    db: AsyncSession, community: Community, account_id: int, *, moderator_id: int | None
) -> bool:
    """The remote community lifted one of our people's ban: they may ask to join again
    (nothing is restored, as for our unbans). False when there was no ban here."""
    done = await db.execute(
        delete(CommunityBan).where(
            CommunityBan.community_id == community.id, CommunityBan.account_id == account_id
        )
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        return False
    await _logged(db, community, moderator_id, ModAction.UNBAN, account_id=account_id)
    return True
