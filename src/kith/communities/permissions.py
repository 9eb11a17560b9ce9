"""Who may do what in a community: the one place that reads roles and bans.

Services and, later, handlers ask `can` / `require`; nobody compares roles by hand. What a
person may *see* of a community (private ones, posts waiting for approval) is a visibility
rule and lives in `kith.policy` with the rest; the SQL it needs about membership and roles
is built here (`member_clause`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.communities.models import (
    Community,
    CommunityBan,
    Membership,
    MembershipModel,
    MemberState,
    Role,
)
from kith.db import utcnow
from kith.errors import Forbidden


class CommunityAction(enum.StrEnum):
    """Things a person may try to do in a community."""

    POST = "post"  # write in its feed (active members)
    UPDATE = "update"  # edit its name, description, rules, topics, membership model
    INVITE = "invite"  # make invite codes
    MODERATE = "moderate"  # approve or reject requests, ban and unban
    MANAGE_ROLES = "manage_roles"  # make or remove moderators, hand ownership over


# The least role each action needs (an active membership is always needed).
_LEAST_ROLE = {
    CommunityAction.POST: Role.MEMBER,
    CommunityAction.UPDATE: Role.MODERATOR,
    CommunityAction.INVITE: Role.MODERATOR,
    CommunityAction.MODERATE: Role.MODERATOR,
    CommunityAction.MANAGE_ROLES: Role.OWNER,
}
_RANK = {Role.MEMBER: 1, Role.MODERATOR: 2, Role.OWNER: 3}


@dataclass(frozen=True)
class Standing:
    """Where one person stands in one community."""

    role: Role | None  # None: not an active member (a pending request is not membership)
    pending: bool
    banned: bool
    suspended: bool  # by the instance: no community power at all

    @property
    def role_rank(self) -> int:
        """The rank of the role alone (what others must be above to act on this person)."""
        return 0 if self.role is None else _RANK[self.role]

    @property
    def rank(self) -> int:
        """The power this person has now: none when banned or suspended."""
        return 0 if self.banned or self.suspended else self.role_rank


NOBODY = Standing(role=None, pending=False, banned=False, suspended=False)


async def active_ban(db: AsyncSession, community_id: int, account_id: int) -> CommunityBan | None:
    """The ban that holds now, if any (a ban past its `until` no longer counts)."""
    ban = await db.get(CommunityBan, (community_id, account_id))
    if ban is None or (ban.until is not None and ban.until <= utcnow()):
        return None
    return ban


async def standing(db: AsyncSession, account_id: int | None, community: Community) -> Standing:
    """Role, request and ban of `account_id` in `community`, in one round trip."""
    if account_id is None:
        return NOBODY
    row = (
        await db.execute(
            select(Account.suspended_at, Membership.role, Membership.state, CommunityBan)
            .select_from(Account)
            .outerjoin(
                Membership,
                (Membership.account_id == Account.id) & (Membership.community_id == community.id),
            )
            .outerjoin(
                CommunityBan,
                (CommunityBan.account_id == Account.id)
                & (CommunityBan.community_id == community.id),
            )
            .where(Account.id == account_id)
        )
    ).first()
    if row is None:
        return NOBODY
    suspended_at, role, state, ban = row
    now = utcnow()
    return Standing(
        role=Role(role) if role is not None and state == MemberState.ACTIVE else None,
        pending=state == MemberState.PENDING,
        banned=ban is not None and (ban.until is None or ban.until > now),
        suspended=suspended_at is not None,
    )


def allows(who: Standing, action: CommunityAction) -> bool:
    """Does this standing allow the action? (Pure: for code that already has a Standing.)"""
    return who.rank >= _RANK[_LEAST_ROLE[action]]


async def can(
    db: AsyncSession, account_id: int | None, community: Community, action: CommunityAction
) -> bool:
    """May this person do `action` in this community? Roles count only in their own community;
    a ban or an instance suspension takes every power away."""
    return allows(await standing(db, account_id, community), action)


async def can_post(db: AsyncSession, account_id: int | None, community: Community) -> bool:
    """May this person write in the community (active member, not banned)?"""
    return await can(db, account_id, community, CommunityAction.POST)


async def can_reply(db: AsyncSession, account_id: int | None, community: Community) -> bool:
    """May this person reply in one of the community's threads? In an open community anyone
    not banned (its threads are open conversations, often reached from Home); in the others,
    as for posting, active members only."""
    who = await standing(db, account_id, community)
    if community.membership == MembershipModel.OPEN and account_id is not None:
        return not who.banned and not who.suspended
    return allows(who, CommunityAction.POST)


MODERATOR_ROLES = (Role.OWNER, Role.MODERATOR)


def moderators_of(community_id: Any) -> Select[int]:
    """SQL: the account ids of the community's owner and moderators (who decides on requests
    and queued posts; their notifications)."""
    return select(Membership.account_id).where(
        Membership.community_id == community_id,
        Membership.state == MemberState.ACTIVE,
        Membership.role.in_(MODERATOR_ROLES),
    )


def member_clause(
    account_id: Any, community_id_col: Any, *, moderators: bool = False
) -> ColumnElement[bool]:
    """SQL: the account (a value or a column) is an active member of the community in
    `community_id_col` — with `moderators`, one of its moderators or its owner. For the
    visibility clauses of `kith.policy`. (A ban deletes the membership, so none is needed.)"""
    clause = exists().where(
        Membership.community_id == community_id_col,
        Membership.account_id == account_id,
        Membership.state == MemberState.ACTIVE,
    )
    if moderators:
        clause = clause.where(Membership.role.in_(MODERATOR_ROLES))
    return clause.correlate_except(Membership)


async def require(
    db: AsyncSession, account_id: int, community: Community, action: CommunityAction
) -> Standing:
    """The actor's standing, or Forbidden when it does not allow the action."""
    who = await standing(db, account_id, community)
    if not allows(who, action):
        raise Forbidden(_REFUSALS[action])
    return who


def outranks(actor: Standing, target: Standing) -> bool:
    """May `actor` act on `target` (ban them, change their role)? Only from above: a moderator
    cannot ban the owner or another moderator."""
    return actor.rank > target.role_rank


_REFUSALS = {
    CommunityAction.POST: "Only members can post in this community.",
    CommunityAction.UPDATE: "Only the community's moderators can change it.",
    CommunityAction.INVITE: "Only the community's moderators can make invites.",
    CommunityAction.MODERATE: "Only the community's moderators can do that.",
    CommunityAction.MANAGE_ROLES: "Only the community's owner can do that.",
}
