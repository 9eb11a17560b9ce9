"""Remote communities: a `Group` on another server (a Lemmy community, another Kith's) as a
community here — a `communities` row with the Group's `domain` and account (`actor_id`).

- **Found** by `!name@host`, `@name@host` or the Group's URL (`find_or_resolve`): WebFinger
  and the actor, which must be a `Group`; its card (name, description, rules, whether it
  approves members) is copied from the actor document whenever that is stored (`remember`).
- **Joined** by a local person with a `Follow` of the Group (`join`): a pending membership
  until the Group's `Accept` (`join_answered`); a `Reject` removes the request, or ends the
  membership. Leaving sends `Undo(Follow)`. Someone its Group banned cannot ask while the
  ban lasts. The Group's own server decides: its rules, bans and moderators are there.
- **Its posts** are those its Group announces (`handlers.group_announces`), stored as threads
  and replies of the community, approved.
- **Posting into it**: a local member's post is an ordinary community post here; its Note
  names the Group in `audience` and in `to` (as Lemmy expects), and goes to the Group's
  inbox too (`outbound.post_inboxes`), whose server announces it to the community."""

from __future__ import annotations

import logging

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kith import text
from kith.accounts.models import Account
from kith.communities import permissions
from kith.communities.models import (
    Community,
    CommunityPost,
    CommunityPostState,
    Membership,
    MembershipModel,
    MemberState,
    Role,
)
from kith.db import utcnow
from kith.errors import Forbidden, NotFound
from kith.federation import activities, outbound
from kith.federation import activitypub as ap
from kith.federation.actors import ActorFetchFailed
from kith.federation.delivery import deliver
from kith.federation.local_objects import is_local
from kith.federation.models import RemoteActor
from kith.federation.remote_accounts import fetch_account, resolve_handle, split_handle
from kith.runtime import runtime_of

log = logging.getLogger(__name__)

MAX_NAME = 100
MAX_TEXT = 5000


async def community_of_group(db: AsyncSession, account_id: int) -> Community | None:
    """The remote community whose Group is this account, if it is one."""
    return await db.scalar(select(Community).where(Community.actor_id == account_id))


async def has_members_here(db: AsyncSession, community: Community) -> bool:
    """Someone here is an active member: only then are its Group's posts wanted."""
    return bool(
        await db.scalar(
            select(
                exists().where(
                    Membership.community_id == community.id,
                    Membership.state == MemberState.ACTIVE,
                )
            )
        )
    )


def _plain(value: object, limit: int) -> str:
    return text.html_to_text(value)[:limit].strip() if isinstance(value, str) else ""


async def remember(db: AsyncSession, group: Account) -> Community:
    """The community row of a remote Group account, made or refreshed from its stored actor
    document (flushed, not committed). NotFound when the account is no Group."""
    remote = await db.scalar(select(RemoteActor).where(RemoteActor.account_id == group.id))
    if group.is_local or remote is None or remote.actor_type != "Group":
        raise NotFound("No such community.")
    doc = remote.document if isinstance(remote.document, dict) else {}
    community = await community_of_group(db, group.id)
    if community is None:
        community = Community(
            handle=group.username[:64],
            handle_key=group.username.lower()[:64],
            domain=group.domain,
            actor_id=group.id,
            owner_id=None,
        )
        db.add(community)
    community.name = _plain(doc.get("name"), MAX_NAME) or group.username[:MAX_NAME]
    community.description = _plain(doc.get("summary"), MAX_TEXT)
    community.rules = _plain(doc.get("content"), MAX_TEXT)
    community.membership = (
        MembershipModel.APPROVAL
        if doc.get("manuallyApprovesFollowers") is True
        else MembershipModel.OPEN
    )
    await db.flush()
    return community


async def find_or_resolve(db: AsyncSession, query: str) -> Community | None:
    """The remote community `query` names — `!name@host`, `@name@host` or the Group's URL —
    known here or looked up on its server now (and committed); None when it names no Group
    or cannot be had."""
    query = query.strip().lstrip("!")
    try:
        if query.startswith(("https://", "http://")):
            if is_local(db, query):
                return None
            account = await fetch_account(db, query)
        else:
            handle = split_handle(query)
            if handle is None:
                return None
            account = await resolve_handle(db, *handle)
        if account.is_local:
            return None
        community = await remember(db, account)
        await db.commit()
    except (ActorFetchFailed, NotFound) as exc:
        log.info("communities: %s is no remote community: %s", query[:200], exc)
        await db.rollback()
        return None
    return community


# --- joining and leaving ----------------------------------------------------------------


async def _group_and_inbox(db: AsyncSession, community: Community) -> tuple[Account, str]:
    group = await db.get(Account, community.actor_id) if community.actor_id else None
    inbox = await outbound.personal_inbox(db, group) if group is not None else None
    if group is None or not group.uri or inbox is None or group.suspended_at is not None:
        raise Forbidden("This community can't be reached from here.")
    return group, inbox


async def join(db: AsyncSession, account_id: int, community: Community) -> Membership:
    """Ask a remote community's Group to let a local person in: a `Follow` to its inbox and
    a pending membership until its answer (asking again while pending sends it again).
    Commits."""
    me = await db.get(Account, account_id)
    if me is None or not me.is_local or me.suspended_at is not None:
        raise Forbidden("This account can't join communities.")
    if await permissions.active_ban(db, community.id, account_id) is not None:
        # Its Group banned them (`handlers.group_moderation_announced`): it would refuse.
        raise Forbidden("You are banned from this community.")
    group, inbox = await _group_and_inbox(db, community)
    row = await db.get(Membership, (community.id, account_id))
    if row is not None and row.state == MemberState.ACTIVE:
        return row
    if row is None:
        row = Membership(
            community_id=community.id,
            account_id=account_id,
            role=Role.MEMBER,
            state=MemberState.PENDING,
            joined_at=None,
        )
        db.add(row)
    follow = activities.follow(runtime_of(db).settings, me, group.uri or "")
    await deliver(db, me, follow, [inbox])
    try:
        await db.commit()
    except IntegrityError:  # a double click raced itself: the first one won
        await db.rollback()
        found = await db.get(Membership, (community.id, account_id))
        if found is None:
            raise
        row = found
    return row


async def leave(db: AsyncSession, row: Membership, community: Community) -> None:
    """A local person leaves a remote community (or withdraws the request): `Undo` of their
    Follow to the Group's inbox. Commits."""
    me = await db.get(Account, row.account_id)
    group = await db.get(Account, community.actor_id) if community.actor_id else None
    inbox = await outbound.personal_inbox(db, group) if group is not None else None
    if me is not None and group is not None and group.uri and inbox is not None:
        settings = runtime_of(db).settings
        mine = ap.actor_id(settings, me)
        follow_id = await outbound.last_follow_id(db, me, group.uri) or (
            f"{mine}#follows/{group.id}"
        )
        inner = activities.embedded_follow(follow_id, mine, group.uri)
        await deliver(db, me, activities.undo(settings, me, {**inner, "to": [group.uri]}), [inbox])
    await db.delete(row)
    await db.commit()


async def join_answered(
    db: AsyncSession, group: Account, follower: Account, *, accepted: bool
) -> str | None:
    """The Group answered a local person's Follow: in (Accept) or not (Reject). None when
    the account is no community's Group (an ordinary follow, then)."""
    community = await community_of_group(db, group.id)
    if community is None:
        return None
    row = await db.get(Membership, (community.id, follower.id))
    if row is None:
        return "ignored: no request to join the community"
    if not accepted:
        await db.delete(row)
        return "refused by the community"
    if row.state != MemberState.ACTIVE:
        row.state, row.joined_at = MemberState.ACTIVE, utcnow()
    return "joined the community"


# --- posting into one ---------------------------------------------------------------------


async def audiences(db: AsyncSession, post_ids: list[int]) -> dict[int, ap.Audience]:
    """The remote community each of these posts is approved in, as its Notes' `audience`
    (the Group's own id, addressed in `to`): one query."""
    if not post_ids:
        return {}
    rows = await db.execute(
        select(CommunityPost.post_id, Account.uri)
        .join(Community, Community.id == CommunityPost.community_id)
        .join(Account, Account.id == Community.actor_id)
        .where(
            CommunityPost.post_id.in_(post_ids),
            CommunityPost.state == CommunityPostState.APPROVED,
        )
        .order_by(CommunityPost.post_id, Community.handle_key)
    )
    out: dict[int, ap.Audience] = {}
    for post_id, uri in rows.all():
        if uri and post_id not in out:
            out[post_id] = ap.Audience(uri, remote=True)
    return out
