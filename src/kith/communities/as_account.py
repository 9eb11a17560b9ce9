"""A community seen as an account, the way Mastodon clients see a group (`group: true`):
found by id, handle or search; followed to join and unfollowed to leave; with the figures of
its card and its newest threads as its statuses. Another server's community is its Group's
account, which apps see as `group: true` and follow to join it (`follow_group`).

Nothing here is a new rule: joining and leaving are `communities.service`'s, who may read
the threads is `kith.policy`'s (through `communities.feeds`). What this module adds is the
translation — a follow is a join, a member is a follower — and refusals an app can show."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.communities import feeds, permissions, rosters
from kith.communities import service as communities
from kith.communities.models import (
    Community,
    CommunityPost,
    CommunityPostState,
    Membership,
    MembershipModel,
    MemberState,
)
from kith.errors import ValidationFailed
from kith.graph import service as graph
from kith.runtime import runtime_of
from kith.timelines.service import Page

MAX_SEARCH = 40


class SearchRank(enum.IntEnum):
    """How well a community matches a search (lower first), as accounts are ranked."""

    EXACT = 0  # the handle itself
    HANDLE_PREFIX = 1
    NAME_PREFIX = 2
    CONTAINS = 3


@dataclass(frozen=True)
class Figures:
    """The counters of a community's Account entity."""

    members: int  # active members: its "followers"
    threads: int  # approved threads the viewer may count: its "statuses"
    last_thread_at: datetime | None


@dataclass(frozen=True)
class Following:
    """The viewer's relationship to a community, as a Relationship entity says it."""

    community_id: int
    member: bool  # an active member: "following"
    requested: bool  # a join request waits for a moderator


def _handle_key(db: AsyncSession, acct: str) -> str | None:
    """The handle key an acct names if it can be one of our communities: `bikes`, `@bikes`,
    `!bikes`, or any of those with `@our.domain`; None for another server's handle."""
    name, _, host = acct.strip().lstrip("@!").partition("@")
    domain = runtime_of(db).settings.domain.lower()
    if host and host.lower() not in (domain, domain.split(":")[0]):
        return None
    return name.lower() if name else None


async def by_id(db: AsyncSession, community_id: int) -> Community | None:
    """Our community with this id (ids come from the same generator as accounts', so an id
    names one or the other), or None. A remote community is not one: apps reach it as its
    Group's account."""
    community = await db.get(Community, community_id)
    return None if community is None or community.is_remote else community


async def by_acct(db: AsyncSession, acct: str) -> Community | None:
    """The community an acct names (see `_handle_key`), or None."""
    key = _handle_key(db, acct)
    return await communities.find_community(db, key) if key else None


async def search(
    db: AsyncSession, q: str, *, limit: int = 20
) -> list[tuple[SearchRank, Community]]:
    """Communities whose handle or name contains `q` (`!bikes` and `@bikes@our.domain` work
    too), best first: the handle itself, handles then names that start with it, the rest.
    Every community's card is public, so private ones are found too."""
    key = _handle_key(db, q)
    if not key or len(key) > 100:
        return []
    name_q = q.strip().lstrip("@!").lower()
    exact = Community.handle_key == key
    rank = case(
        (exact, SearchRank.EXACT.value),
        (Community.handle_key.startswith(key, autoescape=True), SearchRank.HANDLE_PREFIX.value),
        (
            func.lower(Community.name).startswith(name_q, autoescape=True),
            SearchRank.NAME_PREFIX.value,
        ),
        else_=SearchRank.CONTAINS.value,
    )
    stmt = (
        select(rank, Community)
        .where(
            Community.domain == "",
            or_(
                Community.handle_key.contains(key, autoescape=True),
                func.lower(Community.name).contains(name_q, autoescape=True),
            ),
        )
        .order_by(rank, Community.handle_key)
        .limit(max(1, min(limit, MAX_SEARCH)))
    )
    return [(SearchRank(r), c) for r, c in (await db.execute(stmt)).all()]


async def figures(db: AsyncSession, viewer: policy.Viewer, community: Community) -> Figures:
    """Members, threads and the newest thread's time. Someone who may not read a private
    community counts only what is not members-only (as the directory: its activity stays
    hidden), which is nothing posted while it was private."""
    where = [
        CommunityPost.community_id == community.id,
        CommunityPost.state == CommunityPostState.APPROVED,
        CommunityPost.is_thread.is_(True),
    ]
    if not await policy.can_see_community(db, viewer, community):
        where.append(CommunityPost.members_only.is_(False))
    n, newest = (
        await db.execute(select(func.count(), func.max(CommunityPost.created_at)).where(*where))
    ).one()
    return Figures(await rosters.member_count(db, community), int(n or 0), newest)


async def following(db: AsyncSession, account_id: int, ids: list[int]) -> dict[int, Following]:
    """The viewer's standing in each of these communities (those that exist), in one query."""
    if not ids:
        return {}
    rows = await db.execute(
        select(Community.id, Membership.state)
        .outerjoin(
            Membership,
            and_(Membership.community_id == Community.id, Membership.account_id == account_id),
        )
        .where(Community.id.in_(ids), Community.domain == "")
    )
    return {
        cid: Following(cid, state == MemberState.ACTIVE, state == MemberState.PENDING)
        for cid, state in rows.all()
    }


async def follow(db: AsyncSession, account_id: int, community: Community) -> Following:
    """Join by following, as a remote person's Follow of the Group does
    (`service.join(from_follow=True)`: an app cannot answer the join question). Open: in at
    once; approval and private: a request waits. Refused with a ValidationFailed an app can
    show: a ban, or an invite-only community (joined with an invite link, on its page)."""
    await _join_by_follow(db, account_id, community)
    return (await following(db, account_id, [community.id]))[community.id]


async def _join_by_follow(db: AsyncSession, account_id: int, community: Community) -> None:
    who = await permissions.standing(db, account_id, community)
    if who.banned:
        raise ValidationFailed(f"You are banned from !{community.address}.", field="id")
    if who.role is None and community.membership == MembershipModel.INVITE:
        raise ValidationFailed(
            f"!{community.handle} is invite-only: join it with an invite link from its moderators.",
            field="id",
        )
    await communities.join(db, account_id, community, from_follow=True)


async def unfollow(db: AsyncSession, account_id: int, community: Community) -> Following:
    """Leave, or withdraw a request (`service.leave`: the owner cannot leave)."""
    await communities.leave(db, account_id, community)
    return (await following(db, account_id, [community.id]))[community.id]


# --- remote communities, seen as their Group's account ----------------------------------------
#
# Apps reach another server's community as its Group's account (a remote account with a
# `communities` row: `federation.remote_groups`). Following that account joins the community
# as the web's Join button does, so the person gets its posts as community posts, can post
# into it, and its moderation (bans, locks) applies to them here.


async def groups_among(db: AsyncSession, account_ids: list[int]) -> dict[int, Community]:
    """The remote communities whose Groups are among these accounts, by account id: apps
    show those accounts as `group: true`. One query."""
    if not account_ids:
        return {}
    rows = await db.scalars(select(Community).where(Community.actor_id.in_(account_ids)))
    return {c.actor_id: c for c in rows.all() if c.actor_id is not None}


async def group_following(
    db: AsyncSession, account_id: int, group_account_ids: list[int]
) -> dict[int, Following]:
    """The viewer's standing in the remote communities whose Groups are among these
    accounts, by the Group's account id (what apps call the account)."""
    if not group_account_ids:
        return {}
    rows = await db.execute(
        select(Community.actor_id, Community.id, Membership.state)
        .outerjoin(
            Membership,
            and_(Membership.community_id == Community.id, Membership.account_id == account_id),
        )
        .where(Community.actor_id.in_(group_account_ids))
    )
    return {
        actor_id: Following(cid, state == MemberState.ACTIVE, state == MemberState.PENDING)
        for actor_id, cid, state in rows.all()
        if actor_id is not None
    }


async def follow_group(
    db: AsyncSession, account_id: int, group_account_id: int
) -> Following | None:
    """Following a remote community's Group account joins the community (`follow`: a Follow
    of the Group from here, pending until its server answers). None when the account is no
    remote community's Group: an ordinary follow, then."""
    community = (await groups_among(db, [group_account_id])).get(group_account_id)
    if community is None:
        return None
    await _join_by_follow(db, account_id, community)
    return (await group_following(db, account_id, [group_account_id]))[group_account_id]


async def unfollow_group(
    db: AsyncSession, account_id: int, group_account_id: int
) -> Following | None:
    """Unfollowing a remote community's Group account leaves the community (or withdraws the
    request) and ends any follow of the account itself (the older way to get its posts), so
    the app shows it unfollowed. None when the account is no remote community's Group."""
    community = (await groups_among(db, [group_account_id])).get(group_account_id)
    if community is None:
        return None
    await communities.leave(db, account_id, community)
    await graph.unfollow(db, account_id, group_account_id)
    return (await group_following(db, account_id, [group_account_id]))[group_account_id]


async def statuses(
    db: AsyncSession,
    viewer: policy.Viewer,
    community: Community,
    *,
    pinned: bool = False,
    max_id: int | None = None,
    min_id: int | None = None,
    since_id: int | None = None,
    limit: int | None = None,
) -> Page:
    """The community's newest threads the viewer may see (its `new` feed), or its pinned
    threads. A private community shows a non-member an empty page, as it shows its card
    without its content."""
    if not await policy.can_see_community(db, viewer, community):
        return Page(posts=[], older_max_id=None, newer_min_id=None)
    if pinned:
        posts = await feeds.pinned_threads(db, viewer, community)
        return Page(posts=posts, older_max_id=None, newer_min_id=None)
    return await feeds.community_feed(
        db,
        viewer,
        community,
        sort=feeds.Sort.NEW,
        max_id=max_id,
        min_id=min_id,
        since_id=since_id,
        limit=limit,
    )
