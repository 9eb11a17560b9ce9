"""What a community's moderators do to posts: approve or reject waiting posts, remove and
restore posts, lock and pin threads. Each action is checked by `communities.permissions`,
writes a ModerationLogEntry and queues what the community's Group tells other servers
(`federation.group_moderation`), all in one transaction."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kith.communities import notices, permissions
from kith.communities.models import (
    Community,
    CommunityPost,
    CommunityPostState,
    ModAction,
    ModerationLogEntry,
)
from kith.communities.modlog import check_reason, log_action
from kith.communities.permissions import CommunityAction
from kith.db import utcnow
from kith.errors import NotFound, ValidationFailed
from kith.notifications import service as notifications
from kith.runtime import runtime_of

MAX_PINNED = 5


async def _federate(
    db: AsyncSession, community: Community, entry: ModerationLogEntry, row: CommunityPost
) -> None:
    """The Group tells its members' servers (only about a post it had announced)."""
    from kith.federation import group_moderation  # federation imports this domain: import late

    await group_moderation.post_moderated(db, community, entry, row)


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
    # Only what the Group announced was seen elsewhere: a removal of a waiting post (or a
    # rejection) is news to no other server.
    was_announced = row.state == CommunityPostState.APPROVED
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
    entry = log_action(
        db,
        community,
        actor_id,
        action,
        target_account_id=author_id,
        target_post_id=post_id,
        reason=reason,
    )
    await notices.moderator_acted(db, community.id, actor_id, action, author_id, post_id)
    if was_announced or action == ModAction.RESTORE_POST:
        await _federate(db, community, entry, row)
    if to_state == CommunityPostState.APPROVED:
        from kith.federation import groups  # federation imports this domain: import late

        # In now: the community's Group passes it on to its remote members.
        await groups.announce_approved(db, community.id, post_id)
    await db.commit()
    await notifications.publish_notifications(db)
    if to_state == CommunityPostState.APPROVED and author_id is not None:
        # In members' Home now (and its author's followers', unless private): live timelines
        # and `user` streams hear of it as of a new post.
        event = {"type": "post.created", "post_id": post_id, "account_id": author_id}
        await runtime_of(db).bus.publish("posts", event)
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
    entry = log_action(
        db,
        community,
        actor_id,
        ModAction.LOCK if locked else ModAction.UNLOCK,
        target_account_id=await _author_of(db, post_id),
        target_post_id=post_id,
        reason=reason,
    )
    if row.state == CommunityPostState.APPROVED:  # a waiting thread was never announced
        await _federate(db, community, entry, row)
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
    entry = log_action(
        db,
        community,
        actor_id,
        ModAction.PIN if pinned else ModAction.UNPIN,
        target_account_id=await _author_of(db, post_id),
        target_post_id=post_id,
    )
    if row.state == CommunityPostState.APPROVED:
        await _federate(db, community, entry, row)
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
