"""What a community's moderators and owner do to people: settle join requests, ban and
unban, make and remove moderators, hand ownership over. Each action is checked by
`communities.permissions` and writes a ModerationLogEntry (`communities.modlog`) in the same
transaction; join decisions and bans also queue what the community's Group tells other
servers. What moderators do to posts is `communities.post_moderation`, re-exported here."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.communities import notices, permissions
from kith.communities.models import (
    Community,
    CommunityBan,
    Membership,
    MemberState,
    ModAction,
    ModerationLogEntry,
    Role,
)
from kith.communities.modlog import MAX_REASON as MAX_REASON
from kith.communities.modlog import check_reason as check_reason
from kith.communities.modlog import log_action as log_action
from kith.communities.modlog import log_entries as log_entries
from kith.communities.permissions import CommunityAction
from kith.communities.post_moderation import MAX_PINNED as MAX_PINNED
from kith.communities.post_moderation import approval_queue as approval_queue
from kith.communities.post_moderation import approve_post as approve_post
from kith.communities.post_moderation import lock_thread as lock_thread
from kith.communities.post_moderation import pin_thread as pin_thread
from kith.communities.post_moderation import reject_post as reject_post
from kith.communities.post_moderation import remove_post as remove_post
from kith.communities.post_moderation import restore_post as restore_post
from kith.db import utcnow
from kith.errors import Forbidden, NotFound, ValidationFailed
from kith.notifications import service as notifications
from kith.timelines import feeds as home_feeds

MAX_BAN = timedelta(days=3650)


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
    await home_feeds.hold_build(db, account_id)  # the community's threads join their Home
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


async def _federate_ban(
    db: AsyncSession,
    community: Community,
    entry: ModerationLogEntry,
    *,
    until: datetime | None = None,
    was_in: bool = False,
) -> None:
    """The community's Group tells its members' servers and the person's of a ban (its end:
    `until`; `was_in`: they were a member or asking to join) or an unban."""
    from kith.federation import group_moderation  # federation imports this domain: import late

    await group_moderation.person_moderated(db, community, entry, until=until, was_in=was_in)


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
    left = await db.execute(
        delete(Membership).where(
            Membership.community_id == community.id, Membership.account_id == account_id
        )
    )
    detail = f"until {until:%Y-%m-%d %H:%M} UTC" if until else "for good"
    entry = log_action(
        db,
        community,
        actor_id,
        ModAction.BAN,
        target_account_id=account_id,
        reason=reason,
        detail=detail,
    )
    await notices.moderator_acted(db, community.id, actor_id, ModAction.BAN, account_id)
    was_in = left.rowcount == 1  # type: ignore[attr-defined]
    await _federate_ban(db, community, entry, until=until, was_in=was_in)
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
    entry = log_action(
        db, community, actor_id, ModAction.UNBAN, target_account_id=account_id, reason=reason
    )
    await _federate_ban(db, community, entry)
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
