"""What a community's moderators and owner do to people and posts: settle join requests, ban
and unban, make and remove moderators, hand ownership over; approve or reject waiting posts,
remove and restore posts, lock and pin threads. Each action is checked by
`communities.permissions` and writes a ModerationLogEntry in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.communities import notices, permissions
from kith.communities.models import (
    Community,
    CommunityBan,
    CommunityPost,
    CommunityPostState,
    Membership,
    MemberState,
    ModAction,
    ModerationLogEntry,
    Role,
)
from kith.communities.permissions import CommunityAction
from kith.db import utcnow
from kith.errors import Forbidden, NotFound, ValidationFailed
from kith.notifications import service as notifications

MAX_REASON = 1000
MAX_BAN = timedelta(days=3650)
MAX_PINNED = 5


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
) -> None:
    """Add a log entry to the session: the caller's commit writes it with the action."""
    db.add(
        ModerationLogEntry(
            community_id=community.id,
            actor_id=actor_id,
            action=action,
            target_account_id=target_account_id,
            target_post_id=target_post_id,
            reason=reason,
            detail=detail[:200],
        )
    )


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


async def _membership(db: AsyncSession, community: Community, account_id: int) -> Membership:
    row = await db.get(Membership, (community.id, account_id))
    if row is None:
        raise NotFound("This person is not in the community and has not asked to join.")
    return row


async def approve(
    db: AsyncSession, actor_id: int, community: Community, account_id: int
) -> Membership:
    """Let a pending request in. Approving twice, or approving a banned person, is refused
    with nothing changed. Commits."""
    await permissions.require(db, actor_id, community, CommunityAction.MODERATE)
    row = await _membership(db, community, account_id)
    if row.state != MemberState.PENDING:
        raise ValidationFailed("This person is already a member.", field="account_id")
    if await permissions.active_ban(db, community.id, account_id) is not None:
        raise Forbidden("This person is banned from the community.")
    # Conditional, so two moderators approving at once cannot both log an approval.
    done = await db.execute(
        update(Membership)
        .where(
            Membership.community_id == community.id,
            Membership.account_id == account_id,
            Membership.state == MemberState.PENDING,
        )
        .values(state=MemberState.ACTIVE, joined_at=utcnow())
        .execution_options(synchronize_session="fetch")
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        await db.rollback()
        raise ValidationFailed("This person is already a member.", field="account_id")
    log_action(db, community, actor_id, ModAction.APPROVE, target_account_id=account_id)
    await notices.moderator_acted(db, community.id, actor_id, ModAction.APPROVE, account_id)
    await _tell_remote_server(db, community, account_id, accepted=True)
    await db.commit()
    await notifications.publish_notifications(db)
    await db.refresh(row)
    return row


async def reject(
    db: AsyncSession, actor_id: int, community: Community, account_id: int, reason: str = ""
) -> None:
    """Turn a pending request down (they may ask again; ban them to stop that). Commits."""
    await permissions.require(db, actor_id, community, CommunityAction.MODERATE)
    reason = check_reason(reason)
    row = await _membership(db, community, account_id)
    if row.state != MemberState.PENDING:
        raise ValidationFailed("This person is a member: there is no request.", field="account_id")
    await db.delete(row)
    log_action(
        db, community, actor_id, ModAction.REJECT, target_account_id=account_id, reason=reason
    )
    await notices.moderator_acted(db, community.id, actor_id, ModAction.REJECT, account_id)
    await _tell_remote_server(db, community, account_id, accepted=False)
    await db.commit()
    await notifications.publish_notifications(db)


async def _tell_remote_server(
    db: AsyncSession, community: Community, account_id: int, *, accepted: bool
) -> None:
    """A remote person asked to join with a Follow of the community's Group: their server
    gets its Accept or Reject, in this transaction (nothing for local people)."""
    from kith.federation import groups  # federation imports this domain: import late

    await groups.join_settled(db, community, account_id, accepted=accepted)


def _check_duration(duration: timedelta | None) -> None:
    if duration is not None and not timedelta(minutes=1) <= duration <= MAX_BAN:
        raise ValidationFailed(
            "Ban for between a minute and ten years, or for good.", field="duration"
        )


async def ban(
    db: AsyncSession,
    actor_id: int,
    community: Community,
    account_id: int,
    *,
    duration: timedelta | None = None,
    reason: str = "",
) -> CommunityBan:
    """Ban someone (a member, someone asking to join, or anyone) for `duration`, or for good
    when None. Their membership or request goes; they cannot join again while it lasts.
    Banning again replaces the earlier ban. Commits."""
    actor = await permissions.require(db, actor_id, community, CommunityAction.MODERATE)
    reason = check_reason(reason)
    _check_duration(duration)
    if account_id == actor_id:
        raise ValidationFailed("You can't ban yourself.", field="account_id")
    if await db.get(Account, account_id) is None:
        raise NotFound("No such account.")
    target = await permissions.standing(db, account_id, community)
    if account_id == community.owner_id or not permissions.outranks(actor, target):
        raise Forbidden("Only someone above them in the community can ban this person.")
    until = utcnow() + duration if duration is not None else None
    row = await db.get(CommunityBan, (community.id, account_id))
    if row is None:
        row = CommunityBan(community_id=community.id, account_id=account_id)
        db.add(row)
    row.until, row.reason, row.by_id, row.created_at = until, reason, actor_id, utcnow()
    await db.execute(
        delete(Membership).where(
            Membership.community_id == community.id, Membership.account_id == account_id
        )
    )
    detail = f"until {until:%Y-%m-%d %H:%M} UTC" if until else "for good"
    log_action(
        db,
        community,
        actor_id,
        ModAction.BAN,
        target_account_id=account_id,
        reason=reason,
        detail=detail,
    )
    await notices.moderator_acted(db, community.id, actor_id, ModAction.BAN, account_id)
    await db.commit()
    await notifications.publish_notifications(db)
    return row


async def unban(
    db: AsyncSession, actor_id: int, community: Community, account_id: int, reason: str = ""
) -> None:
    """Lift a ban before it ends (they may join again; nothing is restored). Commits."""
    await permissions.require(db, actor_id, community, CommunityAction.MODERATE)
    reason = check_reason(reason)
    row = await permissions.active_ban(db, community.id, account_id)
    if row is None:
        raise ValidationFailed("This person is not banned.", field="account_id")
    await db.delete(row)
    log_action(
        db, community, actor_id, ModAction.UNBAN, target_account_id=account_id, reason=reason
    )
    await db.commit()


async def _active_member(db: AsyncSession, community: Community, account_id: int) -> Membership:
    row = await _membership(db, community, account_id)
    if row.state != MemberState.ACTIVE:
        raise ValidationFailed("This person has not been let in yet.", field="account_id")
    return row


async def set_role(
    db: AsyncSession,
    actor_id: int,
    community: Community,
    account_id: int,
    role: Role,
    reason: str = "",
) -> Membership:
    """Make a member a moderator or a moderator a member again (the owner only; ownership
    moves with `transfer_ownership`). Commits."""
    await permissions.require(db, actor_id, community, CommunityAction.MANAGE_ROLES)
    reason = check_reason(reason)
    if role == Role.OWNER:
        raise ValidationFailed("Hand ownership over instead.", field="role")
    if account_id == actor_id:
        raise ValidationFailed("You can't change your own role.", field="account_id")
    row = await _active_member(db, community, account_id)
    if row.role == role:
        raise ValidationFailed(f"This person is already a {role.value}.", field="role")
    row.role = role
    action = ModAction.MAKE_MODERATOR if role == Role.MODERATOR else ModAction.REMOVE_MODERATOR
    log_action(db, community, actor_id, action, target_account_id=account_id, reason=reason)
    await db.commit()
    return row


async def transfer_ownership(
    db: AsyncSession, actor_id: int, community: Community, account_id: int
) -> None:
    """Make another active member the owner; the old owner stays on as a moderator. Commits."""
    await permissions.require(db, actor_id, community, CommunityAction.MANAGE_ROLES)
    if account_id == actor_id:
        raise ValidationFailed("You already own this community.", field="account_id")
    new_owner = await _active_member(db, community, account_id)
    old_owner = await _active_member(db, community, actor_id)
    old_owner.role = Role.MODERATOR
    new_owner.role = Role.OWNER
    community.owner_id = account_id
    log_action(db, community, actor_id, ModAction.TRANSFER_OWNERSHIP, target_account_id=account_id)
    await db.commit()


# --- posts ---------------------------------------------------------------------------------


async def _community_post(db: AsyncSession, community: Community, post_id: int) -> CommunityPost:
    row = await db.get(CommunityPost, (community.id, post_id))
    if row is None:
        raise NotFound("This post is not in the community.")
    return row


async def _author_of(db: AsyncSession, post_id: int) -> int | None:
    from kith.posts.models import Post  # posts.service imports this package: import late

    return await db.scalar(select(Post.account_id).where(Post.id == post_id))


async def _move_post(
    db: AsyncSession,
    actor_id: int,
    community: Community,
    post_id: int,
    *,
    from_states: tuple[CommunityPostState, ...],
    to_state: CommunityPostState,
    action: ModAction,
    refusal: str,
    reason: str = "",
) -> CommunityPost:
    """Move a post's row from one of `from_states` to `to_state` (conditionally: two
    moderators at once cannot both do it), refresh the post's gate, log. Commits."""
    from kith.communities.posting import refresh_gate  # posting imports posts: import late

    await permissions.require(db, actor_id, community, CommunityAction.MODERATE)
    reason = check_reason(reason)
    row = await _community_post(db, community, post_id)
    if row.state not in from_states:
        raise ValidationFailed(refusal, field="post_id")
    done = await db.execute(
        update(CommunityPost)
        .where(
            CommunityPost.community_id == community.id,
            CommunityPost.post_id == post_id,
            CommunityPost.state.in_(from_states),
        )
        .values(state=to_state, decided_by_id=actor_id, decided_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        await db.rollback()
        raise ValidationFailed(refusal, field="post_id")
    await refresh_gate(db, post_id)
    author_id = await _author_of(db, post_id)
    log_action(
        db,
        community,
        actor_id,
        action,
        target_account_id=author_id,
        target_post_id=post_id,
        reason=reason,
    )
    await notices.moderator_acted(db, community.id, actor_id, action, author_id, post_id)
    if to_state == CommunityPostState.APPROVED:
        from kith.federation import groups  # federation imports this domain: import late

        # In now: the community's Group passes it on to its remote members.
        await groups.announce_approved(db, community.id, post_id)
    await db.commit()
    await notifications.publish_notifications(db)
    await db.refresh(row)
    return row


async def approve_post(
    db: AsyncSession, actor_id: int, community: Community, post_id: int
) -> CommunityPost:
    """Let a waiting post into the community's feeds. Approving twice is refused with
    nothing changed. Commits."""
    return await _move_post(
        db,
        actor_id,
        community,
        post_id,
        from_states=(CommunityPostState.PENDING,),
        to_state=CommunityPostState.APPROVED,
        action=ModAction.APPROVE_POST,
        refusal="This post is not waiting for approval.",
    )


async def reject_post(
    db: AsyncSession, actor_id: int, community: Community, post_id: int, reason: str = ""
) -> CommunityPost:
    """Turn a waiting post down: it stays its author's, out of the community. Commits."""
    return await _move_post(
        db,
        actor_id,
        community,
        post_id,
        from_states=(CommunityPostState.PENDING,),
        to_state=CommunityPostState.REMOVED,
        action=ModAction.REJECT_POST,
        refusal="This post is not waiting for approval.",
        reason=reason,
    )


async def remove_post(
    db: AsyncSession, actor_id: int, community: Community, post_id: int, reason: str = ""
) -> CommunityPost:
    """Take a post (a thread or a reply in one) out of the community: it leaves its feeds,
    and, when it is approved in no other community, everyone but its author and the
    moderators stops seeing it. Commits."""
    return await _move_post(
        db,
        actor_id,
        community,
        post_id,
        from_states=(CommunityPostState.APPROVED, CommunityPostState.PENDING),
        to_state=CommunityPostState.REMOVED,
        action=ModAction.REMOVE_POST,
        refusal="This post has already been removed.",
        reason=reason,
    )


async def restore_post(
    db: AsyncSession, actor_id: int, community: Community, post_id: int, reason: str = ""
) -> CommunityPost:
    """Undo a removal (or a rejection): the post is back in the community. Commits."""
    return await _move_post(
        db,
        actor_id,
        community,
        post_id,
        from_states=(CommunityPostState.REMOVED,),
        to_state=CommunityPostState.APPROVED,
        action=ModAction.RESTORE_POST,
        refusal="This post has not been removed.",
        reason=reason,
    )


async def _thread(db: AsyncSession, community: Community, post_id: int) -> CommunityPost:
    row = await _community_post(db, community, post_id)
    if not row.is_thread:
        raise ValidationFailed(
            "Only a thread's first post can be locked or pinned.", field="post_id"
        )
    return row


async def lock_thread(
    db: AsyncSession,
    actor_id: int,
    community: Community,
    post_id: int,
    *,
    locked: bool = True,
    reason: str = "",
) -> CommunityPost:
    """Lock a thread (no new replies, in any of its communities: it is one conversation) or
    unlock it. Locking a locked thread is refused. Commits."""
    await permissions.require(db, actor_id, community, CommunityAction.MODERATE)
    reason = check_reason(reason)
    row = await _thread(db, community, post_id)
    if (row.locked_at is not None) == locked:
        raise ValidationFailed(
            "This thread is already locked." if locked else "This thread is not locked.",
            field="post_id",
        )
    row.locked_at = utcnow() if locked else None
    log_action(
        db,
        community,
        actor_id,
        ModAction.LOCK if locked else ModAction.UNLOCK,
        target_account_id=await _author_of(db, post_id),
        target_post_id=post_id,
        reason=reason,
    )
    await db.commit()
    return row


async def pin_thread(
    db: AsyncSession, actor_id: int, community: Community, post_id: int, *, pinned: bool = True
) -> CommunityPost:
    """Pin an approved thread to the top of the community (at most MAX_PINNED), or unpin
    it. Commits."""
    await permissions.require(db, actor_id, community, CommunityAction.MODERATE)
    row = await _thread(db, community, post_id)
    if (row.pinned_at is not None) == pinned:
        raise ValidationFailed(
            "This thread is already pinned." if pinned else "This thread is not pinned.",
            field="post_id",
        )
    if pinned:
        if row.state != CommunityPostState.APPROVED:
            raise ValidationFailed("Only approved posts can be pinned.", field="post_id")
        count = await db.scalar(
            select(func.count())
            .select_from(CommunityPost)
            .where(CommunityPost.community_id == community.id, CommunityPost.pinned_at.isnot(None))
        )
        if (count or 0) >= MAX_PINNED:
            raise ValidationFailed(f"Pin at most {MAX_PINNED} threads.", field="post_id")
    row.pinned_at = utcnow() if pinned else None
    log_action(
        db,
        community,
        actor_id,
        ModAction.PIN if pinned else ModAction.UNPIN,
        target_account_id=await _author_of(db, post_id),
        target_post_id=post_id,
    )
    await db.commit()
    return row


async def approval_queue(
    db: AsyncSession, actor_id: int, community: Community, *, limit: int = 40
) -> Sequence[CommunityPost]:
    """The community's waiting posts, oldest first (its moderators only)."""
    await permissions.require(db, actor_id, community, CommunityAction.MODERATE)
    rows = await db.scalars(
        select(CommunityPost)
        .where(
            CommunityPost.community_id == community.id,
            CommunityPost.state == CommunityPostState.PENDING,
            CommunityPost.is_thread.is_(True),
        )
        .order_by(CommunityPost.post_id)
        .limit(max(1, min(limit, 200)))
    )
    return rows.all()
