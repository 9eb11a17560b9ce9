"""Who is in a community and what its moderators did, as lists to read: members with their
roles, join requests, bans, invites and the moderation log. Each list asks who may read it —
`communities.permissions` for the moderators' lists, `kith.policy` for what members and
visitors see — before reading anything."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.communities import moderation, permissions
from kith.communities.models import (
    Community,
    CommunityBan,
    CommunityInvite,
    CommunityPost,
    CommunityPostState,
    Membership,
    MemberState,
    ModerationLogEntry,
    Role,
)
from kith.communities.permissions import MODERATOR_ROLES, CommunityAction
from kith.db import utcnow
from kith.errors import Forbidden
from kith.posts.models import Post

MAX_LIST = 200
_ROLE_ORDER = case(
    (Membership.role == Role.OWNER, 0), (Membership.role == Role.MODERATOR, 1), else_=2
)


@dataclass
class Member:
    account: Account
    membership: Membership

    @property
    def role(self) -> Role:
        return Role(self.membership.role)


@dataclass
class Ban:
    account: Account
    ban: CommunityBan
    by: Account | None


@dataclass
class Invite:
    invite: CommunityInvite
    by: Account | None

    @property
    def active(self) -> bool:
        """Can the code still let someone in (not expired, not used up)?"""
        i = self.invite
        expired = i.expires_at is not None and i.expires_at <= utcnow()
        used_up = i.max_uses is not None and i.uses >= i.max_uses
        return not expired and not used_up


@dataclass
class LogLine:
    entry: ModerationLogEntry
    actor: Account | None
    target: Account | None


async def member_count(db: AsyncSession, community: Community) -> int:
    """Active members (a pending request does not count): public, as on the card."""
    n = await db.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.community_id == community.id, Membership.state == MemberState.ACTIVE)
    )
    return int(n or 0)


async def _members(
    db: AsyncSession, community: Community, *, state: MemberState, roles: tuple[Role, ...] = ()
) -> list[Member]:
    stmt = (
        select(Account, Membership)
        .join(Membership, Membership.account_id == Account.id)
        .where(Membership.community_id == community.id, Membership.state == state)
    )
    if roles:
        stmt = stmt.where(Membership.role.in_(roles))
    stmt = stmt.order_by(_ROLE_ORDER, Membership.requested_at, Account.id).limit(MAX_LIST)
    return [Member(a, m) for a, m in (await db.execute(stmt)).all()]


async def moderators(db: AsyncSession, viewer: policy.Viewer, community: Community) -> list[Member]:
    """The owner and moderators, for the community's page: for whoever may see its members
    (everyone, but a private community's members only); empty otherwise."""
    if not await policy.can_see_community(db, viewer, community):
        return []
    return await _members(db, community, state=MemberState.ACTIVE, roles=MODERATOR_ROLES)


async def waiting_counts(db: AsyncSession, actor_id: int, community: Community) -> tuple[int, int]:
    """(join requests, threads) waiting for its moderators (them only), for their links."""
    await permissions.require(db, actor_id, community, CommunityAction.MODERATE)
    requests = await db.scalar(
        select(func.count())
        .select_from(Membership)
        .where(Membership.community_id == community.id, Membership.state == MemberState.PENDING)
    )
    threads = await db.scalar(
        select(func.count())
        .select_from(CommunityPost)
        .where(
            CommunityPost.community_id == community.id,
            CommunityPost.state == CommunityPostState.PENDING,
            CommunityPost.is_thread.is_(True),
        )
    )
    return int(requests or 0), int(threads or 0)


async def members(db: AsyncSession, actor_id: int, community: Community) -> list[Member]:
    """Active members with their roles, owner and moderators first (its moderators only)."""
    await permissions.require(db, actor_id, community, CommunityAction.MODERATE)
    return await _members(db, community, state=MemberState.ACTIVE)


async def requests(db: AsyncSession, actor_id: int, community: Community) -> list[Member]:
    """Join requests waiting, oldest first, with their answers (its moderators only)."""
    await permissions.require(db, actor_id, community, CommunityAction.MODERATE)
    return await _members(db, community, state=MemberState.PENDING)


async def bans(db: AsyncSession, actor_id: int, community: Community) -> list[Ban]:
    """Bans that hold now, newest first (its moderators only)."""
    await permissions.require(db, actor_id, community, CommunityAction.MODERATE)
    rows = await db.execute(
        select(Account, CommunityBan)
        .join(CommunityBan, CommunityBan.account_id == Account.id)
        .where(
            CommunityBan.community_id == community.id,
            or_(CommunityBan.until.is_(None), CommunityBan.until > utcnow()),
        )
        .order_by(CommunityBan.created_at.desc())
        .limit(MAX_LIST)
    )
    found = rows.all()
    by = await _accounts(db, {b.by_id for _, b in found})
    return [Ban(a, b, by.get(b.by_id or 0)) for a, b in found]


async def invites(db: AsyncSession, actor_id: int, community: Community) -> list[Invite]:
    """The community's invites, newest first (who may make them only). The codes themselves
    are not kept: only their hashes."""
    await permissions.require(db, actor_id, community, CommunityAction.INVITE)
    rows = (
        await db.scalars(
            select(CommunityInvite)
            .where(CommunityInvite.community_id == community.id)
            .order_by(CommunityInvite.id.desc())
            .limit(MAX_LIST)
        )
    ).all()
    by = await _accounts(db, {i.created_by_id for i in rows})
    return [Invite(i, by.get(i.created_by_id or 0)) for i in rows]


async def moderation_log(
    db: AsyncSession,
    viewer: policy.Viewer,
    community: Community,
    *,
    before: int | None = None,
    limit: int = 50,
) -> list[LogLine]:
    """The public moderation log, newest first: for whoever may see the community's content
    (anyone for an open, approval or invite community; a private one's members only)."""
    if not await policy.can_see_community(db, viewer, community):
        raise Forbidden("Only members see this community's moderation log.")
    stmt = select(ModerationLogEntry).where(ModerationLogEntry.community_id == community.id)
    if before is not None:
        stmt = stmt.where(ModerationLogEntry.id < before)
    stmt = stmt.order_by(ModerationLogEntry.id.desc()).limit(max(1, min(limit, MAX_LIST)))
    entries = (await db.scalars(stmt)).all()
    people = await _accounts(
        db, {e.actor_id for e in entries} | {e.target_account_id for e in entries}
    )
    return [
        LogLine(e, people.get(e.actor_id or 0), people.get(e.target_account_id or 0))
        for e in entries
    ]


async def _accounts(db: AsyncSession, ids: set[int | None]) -> dict[int, Account]:
    wanted = [i for i in ids if i is not None]
    if not wanted:
        return {}
    rows = await db.scalars(select(Account).where(Account.id.in_(wanted)))
    return {a.id: a for a in rows.all()}


async def thread_states(
    db: AsyncSession, community: Community, post_ids: list[int]
) -> dict[int, CommunityPost]:
    """Where each of these posts stands in the community (pinned, locked, state), for the
    marks and moderators' buttons on its page."""
    if not post_ids:
        return {}
    rows = await db.scalars(
        select(CommunityPost).where(
            CommunityPost.community_id == community.id, CommunityPost.post_id.in_(post_ids)
        )
    )
    return {r.post_id: r for r in rows.all()}


async def approval_queue(
    db: AsyncSession, actor_id: int, community: Community
) -> list[tuple[Post, Account]]:
    """The threads waiting for approval, oldest first, with their authors (its moderators)."""
    waiting = await moderation.approval_queue(db, actor_id, community)
    ids = [w.post_id for w in waiting]
    if not ids:
        return []
    rows = await db.execute(
        select(Post, Account).join(Account, Account.id == Post.account_id).where(Post.id.in_(ids))
    )
    by_id = {p.id: (p, a) for p, a in rows.all()}
    return [by_id[i] for i in ids if i in by_id]
