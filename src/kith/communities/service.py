"""Starting, finding and changing communities, joining and leaving them, and invite codes:
the rules of the communities domain. What moderators do to people is in
`communities.moderation`; who may do what is in `communities.permissions`."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field, fields
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account, User, UserState
from kith.accounts.service import RESERVED_USERNAMES, get_instance_settings
from kith.communities import notices, permissions
from kith.communities.models import (
    Community,
    CommunityCreation,
    CommunityInvite,
    Membership,
    MembershipModel,
    MemberState,
    ModAction,
    Role,
)
from kith.communities.moderation import check_reason, log_action
from kith.communities.permissions import CommunityAction
from kith.db import utcnow
from kith.errors import Forbidden, NotFound, ValidationFailed
from kith.notifications import service as notifications
from kith.text import normalize_hashtag
from kith.timelines import feeds as home_feeds

HANDLE_RE = re.compile(r"^[A-Za-z0-9_]{1,30}$")
LANGUAGE_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,3}$")
MAX_NAME = 100
MAX_DESCRIPTION = 5000
MAX_RULES = 5000
MAX_TOPICS = 10
MAX_QUESTION = 500
MAX_ANSWER = 1000
MAX_INVITE_EXPIRY = timedelta(days=365)
MAX_INVITE_USES = 10_000


@dataclass
class CommunityInput:
    """What a founder fills in."""

    name: str
    description: str = ""
    rules: str = ""
    topics: list[str] = field(default_factory=list)
    language: str = ""
    membership: str = MembershipModel.OPEN
    join_question: str = ""
    post_approval: bool = False  # new threads wait for a moderator


@dataclass
class CommunityChanges:
    """An edit: None leaves a field as it is."""

    name: str | None = None
    description: str | None = None
    rules: str | None = None
    topics: list[str] | None = None
    language: str | None = None
    membership: str | None = None
    join_question: str | None = None
    post_approval: bool | None = None


# --- checking input ------------------------------------------------------------------------


def check_handle(handle: str) -> tuple[str, str]:
    """The handle as typed and its lowercase key, or ValidationFailed(field="handle")."""
    handle = handle.strip().lstrip("@")
    if not HANDLE_RE.fullmatch(handle):
        raise ValidationFailed(
            "Use 1–30 characters: letters a–z, digits and underscores.", field="handle"
        )
    key = handle.lower()
    if key in RESERVED_USERNAMES:
        raise ValidationFailed("This name is reserved.", field="handle")
    return handle, key


def _bounded(value: str, limit: int, name: str, *, required: bool = False) -> str:
    value = value.strip()
    if required and not value:
        raise ValidationFailed("This can't be empty.", field=name)
    if len(value) > limit:
        raise ValidationFailed(f"Keep this under {limit} characters.", field=name)
    return value


def _check_topics(topics: list[str]) -> list[str]:
    """Topics as normalized hashtag names, without repeats, in the order given."""
    out: list[str] = []
    for raw in topics:
        tag = normalize_hashtag(raw.strip().lstrip("#"))
        if tag is None:
            raise ValidationFailed(f"“{raw[:40]}” is not a topic tag.", field="topics")
        if tag not in out:
            out.append(tag)
    if len(out) > MAX_TOPICS:
        raise ValidationFailed(f"Choose at most {MAX_TOPICS} topics.", field="topics")
    return out


def _check_language(language: str) -> str:
    language = language.strip()
    if language and (len(language) > 16 or not LANGUAGE_RE.fullmatch(language)):
        raise ValidationFailed("Use a language code such as en or pt-BR.", field="language")
    return language


def _check_membership(model: str) -> MembershipModel:
    try:
        return MembershipModel(model)
    except ValueError:
        choices = ", ".join(m.value for m in MembershipModel)
        raise ValidationFailed(f"Choose one of: {choices}.", field="membership") from None


def _checked(changes: CommunityChanges) -> CommunityChanges:
    """The same changes, trimmed and checked (raises on the first bad field)."""
    c = changes
    return CommunityChanges(
        name=None if c.name is None else _bounded(c.name, MAX_NAME, "name", required=True),
        description=None
        if c.description is None
        else _bounded(c.description, MAX_DESCRIPTION, "description"),
        rules=None if c.rules is None else _bounded(c.rules, MAX_RULES, "rules"),
        topics=None if c.topics is None else _check_topics(c.topics),
        language=None if c.language is None else _check_language(c.language),
        membership=None if c.membership is None else _check_membership(c.membership),
        join_question=None
        if c.join_question is None
        else _bounded(c.join_question, MAX_QUESTION, "join_question"),
        post_approval=None if c.post_approval is None else bool(c.post_approval),
    )


async def _check_handle_free(db: AsyncSession, key: str) -> None:
    """Handles and local usernames share one name space (`@name@domain`)."""
    taken_by_person = await db.scalar(
        select(Account.id).where(Account.username_key == key, Account.domain == "")
    )
    if taken_by_person is not None or await find_community(db, key) is not None:
        raise ValidationFailed("This name is taken.", field="handle")


async def _check_may_create(db: AsyncSession, owner_id: int, *, operator: bool) -> None:
    """The founder must be an active local account; the instance may keep founding to admins."""
    user = await db.scalar(select(User).where(User.account_id == owner_id))
    if user is None or user.account.suspended_at is not None or user.state != UserState.ACTIVE:
        raise Forbidden("Only active local accounts can start a community.")
    if operator or user.is_admin:
        return
    instance = await get_instance_settings(db)
    if instance.community_creation == CommunityCreation.ADMINS:
        raise Forbidden("On this instance, only admins can start communities.")


async def may_create(db: AsyncSession, account_id: int) -> bool:
    """May this person found a community here (for pages that offer it)?"""
    try:
        await _check_may_create(db, account_id, operator=False)
    except Forbidden:
        return False
    return True


# --- communities ---------------------------------------------------------------------------


async def find_community(db: AsyncSession, handle: str) -> Community | None:
    """Our community with this handle (any case), or None."""
    key = handle.strip().lstrip("@").lower()
    return await db.scalar(
        select(Community).where(Community.handle_key == key, Community.domain == "")
    )


async def find_by_address(db: AsyncSession, address: str) -> Community | None:
    """The community an address names: `handle` (ours), or `handle@host` (a remote one
    already known here, `federation.remote_groups`); None otherwise."""
    handle, _, domain = address.strip().lstrip("!@").partition("@")
    if not domain:
        return await find_community(db, handle)
    return await db.scalar(
        select(Community).where(
            Community.handle_key == handle.lower(), Community.domain == domain.lower()
        )
    )


async def get_community(db: AsyncSession, community_id: int) -> Community:
    community = await db.get(Community, community_id)
    if community is None:
        raise NotFound("No such community.")
    return community


async def create_community(
    db: AsyncSession, owner_id: int, handle: str, data: CommunityInput, *, operator: bool = False
) -> Community:
    """Start a community owned by `owner_id`, who becomes its first member. `operator` (CLI)
    skips the instance's limit on who may found one. Commits, or raises with nothing written."""
    handle, key = check_handle(handle)
    checked = _checked(CommunityChanges(**{f.name: getattr(data, f.name) for f in fields(data)}))
    await _check_may_create(db, owner_id, operator=operator)
    await _check_handle_free(db, key)
    community = Community(
        handle=handle,
        handle_key=key,
        owner_id=owner_id,
        **{f.name: getattr(checked, f.name) for f in fields(checked)},
    )
    db.add(community)
    try:
        await db.flush()
        db.add(
            Membership(
                community_id=community.id,
                account_id=owner_id,
                role=Role.OWNER,
                state=MemberState.ACTIVE,
                joined_at=utcnow(),
            )
        )
        await db.commit()
    except IntegrityError:  # two founders raced for the same handle
        await db.rollback()
        raise ValidationFailed("This name is taken.", field="handle") from None
    return community


async def update_community(
    db: AsyncSession,
    actor_id: int,
    community: Community,
    changes: CommunityChanges,
    reason: str = "",
) -> list[str]:
    """Change a community's description, rules, membership model… (its moderators). Returns
    the names of the fields that changed; a change is logged. Commits."""
    await permissions.require(db, actor_id, community, CommunityAction.UPDATE)
    checked = _checked(changes)
    reason = check_reason(reason)
    changed = [
        f.name
        for f in fields(checked)
        if getattr(checked, f.name) is not None
        and getattr(checked, f.name) != getattr(community, f.name)
    ]
    if not changed:
        return []
    for name in changed:
        setattr(community, name, getattr(checked, name))
    detail = "changed " + ", ".join(changed)
    entry = log_action(db, community, actor_id, ModAction.UPDATE, reason=reason, detail=detail)
    from kith.federation import group_moderation  # federation imports this domain: import late

    await group_moderation.card_changed(db, community, entry, changed)  # Update(Group)
    await db.commit()
    return changed


# --- joining and leaving -------------------------------------------------------------------


async def join(
    db: AsyncSession,
    account_id: int,
    community: Community,
    *,
    answer: str = "",
    invite_code: str | None = None,
    from_follow: bool = False,
) -> Membership:
    """Join, or ask to. Open: in at once. Approval and private: a pending request carrying the
    answer to the join question (required when there is a question, except `from_follow`: a
    remote person's `Follow` of the Group cannot carry one). Invite: only with a code.
    A valid invite code lets its holder straight into any community (it is a moderator's
    approval given in advance). Joining again changes nothing. Commits.
    A remote community's Group decides on its own server: a request waits for its answer."""
    if community.is_remote:
        from kith.federation import remote_groups  # federation builds on this module

        return await remote_groups.join(db, account_id, community)
    who = await permissions.standing(db, account_id, community)
    if who.suspended or await db.get(Account, account_id) is None:
        raise Forbidden("This account can't join communities.")
    if who.banned:
        raise Forbidden("You are banned from this community.")
    existing = await db.get(Membership, (community.id, account_id))
    if existing is not None and existing.state == MemberState.ACTIVE:
        return existing
    model = MembershipModel(community.membership)
    invite: CommunityInvite | None = None
    if model == MembershipModel.OPEN:
        state, answer = MemberState.ACTIVE, ""
    elif invite_code:
        invite = await _use_invite(db, community, invite_code)
        state, answer = MemberState.ACTIVE, ""
    elif model == MembershipModel.INVITE:
        raise ValidationFailed("You need an invite code to join.", field="invite_code")
    else:
        state = MemberState.PENDING
        required = bool(community.join_question) and not from_follow
        answer = _bounded(answer, MAX_ANSWER, "answer", required=required)
    if existing is not None and state == MemberState.ACTIVE:  # a request let in by a code
        await home_feeds.hold_build(db, account_id)
    row = existing or Membership(community_id=community.id, account_id=account_id)
    row.state, row.answer, row.role = state, answer, Role.MEMBER
    row.invite_id = invite.id if invite else None
    row.joined_at = utcnow() if state == MemberState.ACTIVE else None
    if existing is None:
        db.add(row)
    asked = existing is None and state == MemberState.PENDING
    try:
        if asked:  # a new request (not one asked again): its moderators hear of it
            await db.flush()
            await notices.join_requested(db, community.id, account_id)
        await db.commit()
    except IntegrityError:  # a double click raced itself: the first one won
        await db.rollback()
        row = await _membership_or_404(db, community, account_id)
    else:
        await notifications.publish_notifications(db)
    return row


async def _membership_or_404(db: AsyncSession, community: Community, account_id: int) -> Membership:
    row = await db.get(Membership, (community.id, account_id))
    if row is None:
        raise NotFound("Not a member.")
    return row


async def leave(db: AsyncSession, account_id: int, community: Community) -> None:
    """Leave, or withdraw a request. The owner must hand the community over first. Leaving a
    community one is not in changes nothing. Commits."""
    row = await db.get(Membership, (community.id, account_id))
    if row is None:
        return
    if community.is_remote:
        from kith.federation import remote_groups  # federation builds on this module

        await remote_groups.leave(db, row, community)
        return
    if community.owner_id == account_id or row.role == Role.OWNER:
        raise ValidationFailed(
            "You own this community: hand it over to someone before you leave.",
            field="account_id",
        )
    if row.state == MemberState.PENDING:
        await notices.request_withdrawn(db, community.id, account_id)
    await db.delete(row)
    await db.commit()


# --- the community in one's Home -------------------------------------------------------------


async def in_home(db: AsyncSession, account_id: int | None, community: Community) -> bool | None:
    """Does this member keep the community's threads in their Home? None when they are not
    an active member (nothing to choose)."""
    if account_id is None:
        return None
    row = await db.get(Membership, (community.id, account_id))
    return row.in_home if row is not None and row.state == MemberState.ACTIVE else None


async def set_in_home(db: AsyncSession, account_id: int, community: Community, on: bool) -> None:
    """Keep the community's threads in one's Home, or stop: each member's own choice, one per
    community, on when they join. Only an active member chooses (a pending request, a banned
    person or a stranger gets a ValidationFailed on `in_home`, with nothing written). Turning
    it back on brings the threads already there into the Home feed (migration 0007).
    Commits."""
    row = await db.get(Membership, (community.id, account_id))
    if row is None or row.state != MemberState.ACTIVE:
        raise ValidationFailed(
            "Only members choose whether a community's posts appear in their Home: join first.",
            field="in_home",
        )
    if row.in_home != on:
        await home_feeds.hold_build(db, account_id)
        row.in_home = on
        await db.commit()


# --- invites -------------------------------------------------------------------------------


def _code_hash(code: str) -> str:
    return hashlib.sha256(code.strip().encode()).hexdigest()


async def create_invite(
    db: AsyncSession,
    actor_id: int,
    community: Community,
    *,
    expires_in: timedelta | None = timedelta(days=7),
    max_uses: int | None = None,
) -> tuple[CommunityInvite, str]:
    """Make an invite code (the community's moderators). Returns the row and the code, which
    is shown this once: only its hash is kept. Commits."""
    await permissions.require(db, actor_id, community, CommunityAction.INVITE)
    if expires_in is not None and not timedelta(minutes=1) <= expires_in <= MAX_INVITE_EXPIRY:
        raise ValidationFailed("Choose an expiry between a minute and a year.", field="expires_in")
    if max_uses is not None and not 1 <= max_uses <= MAX_INVITE_USES:
        raise ValidationFailed(f"Choose between 1 and {MAX_INVITE_USES} uses.", field="max_uses")
    code = secrets.token_urlsafe(16)
    invite = CommunityInvite(
        community_id=community.id,
        code_hash=_code_hash(code),
        created_by_id=actor_id,
        expires_at=utcnow() + expires_in if expires_in is not None else None,
        max_uses=max_uses,
    )
    db.add(invite)
    await db.flush()
    limits = [
        f"expires {invite.expires_at:%Y-%m-%d %H:%M} UTC" if invite.expires_at else "no expiry",
        f"{max_uses} uses" if max_uses else "unlimited uses",
    ]
    log_action(db, community, actor_id, ModAction.CREATE_INVITE, detail=", ".join(limits))
    await db.commit()
    return invite, code


async def revoke_invite(
    db: AsyncSession, actor_id: int, community: Community, invite_id: int
) -> None:
    """Stop an invite code from working (who may make invites). It is marked expired now, so
    its uses stay on record; revoking one that no longer works is refused. Commits."""
    await permissions.require(db, actor_id, community, CommunityAction.INVITE)
    invite = await db.get(CommunityInvite, invite_id)
    if invite is None or invite.community_id != community.id:
        raise NotFound("No such invite.")
    now = utcnow()
    used_up = invite.max_uses is not None and invite.uses >= invite.max_uses
    if (invite.expires_at is not None and invite.expires_at <= now) or used_up:
        raise ValidationFailed("This invite no longer works.", field="invite_id")
    invite.expires_at = now
    log_action(db, community, actor_id, ModAction.REVOKE_INVITE, detail=f"{invite.uses} uses")
    await db.commit()


async def _use_invite(db: AsyncSession, community: Community, code: str) -> CommunityInvite:
    """Count one use of a valid code of this community (in the caller's transaction)."""
    invite = await db.scalar(
        select(CommunityInvite).where(
            CommunityInvite.code_hash == _code_hash(code),
            CommunityInvite.community_id == community.id,
        )
    )
    if invite is None:
        raise ValidationFailed("This invite code is not right.", field="invite_code")
    if invite.expires_at is not None and invite.expires_at <= utcnow():
        raise ValidationFailed("This invite has expired.", field="invite_code")
    # Conditional, so two people racing for the last use cannot both get in.
    counted = await db.execute(
        update(CommunityInvite)
        .where(
            CommunityInvite.id == invite.id,
            or_(
                CommunityInvite.max_uses.is_(None),
                CommunityInvite.uses < CommunityInvite.max_uses,
            ),
        )
        .values(uses=CommunityInvite.uses + 1)
        .execution_options(synchronize_session=False)
    )
    if counted.rowcount != 1:  # type: ignore[attr-defined]
        raise ValidationFailed("This invite has been used up.", field="invite_code")
    return invite
