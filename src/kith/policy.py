"""Who may see and do what: the one place Kith decides visibility and permission.

Every surface (pages, APIs, feeds, search, streaming, notifications, exports) asks this module;
none re-implements a rule. Each rule exists twice where needed, as a SQL clause for lists and
as a check for one object, and the tests hold the two to the same matrix.

Decisions (see docs/architecture.md):
- A block hides both ways: neither account sees the other's posts anywhere, including by link.
- Followers-only posts are seen by the author, accepted followers and mentioned accounts;
  direct posts by the author and mentioned accounts.
- Admins get no extra read access to followers-only or direct posts (privacy by design);
  they see what is attached to a report through the report itself.
- Posts of suspended accounts are hidden from everyone; silenced accounts' posts are left out
  of public listings (Local, hashtags, search) for people who do not follow them.
- Accounts of a remote domain an admin suspended or silenced (federation.domain_blocks) are
  suspended / silenced accounts: the block stamps their `suspended_at` / `silenced_at`, so the
  clauses below apply to them unchanged, at no cost on the read paths.
- Mutes hide an account's posts from the muter's lists (timelines, search, notifications),
  but a muted account's post opened by link is still shown.
- A deleted account (`accounts.deletion`) is suspended at the moment it is deleted, so the
  suspension clauses hide what it left while it is being removed; its profile is gone for
  everyone, admins too, and its actor answers 410 Gone (`ActorState.DELETED`).
- Communities narrow, never widen, a post's audience (`posts.community_gate`): a private
  community's post is seen only by its active members and its author, a post approved in
  none of its communities (waiting, removed) only by their moderators and its author; gated
  posts are never listed in public places (Local, hashtags, search, trends), not even for
  members. Instance admins get no extra read access here either.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Select,
    and_,
    bindparam,
    exists,
    false,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from kith.accounts.models import Account, User, UserState
from kith.communities.models import (
    Community,
    CommunityGate,
    CommunityPost,
    CommunityPostState,
    MembershipModel,
)
from kith.communities.permissions import member_clause, standing
from kith.db import UTCDateTime, one_of, utcnow
from kith.graph.models import Block, Follow, Mute
from kith.media.models import MediaAttachment
from kith.moderation.models import Report
from kith.posts.models import Mention, Post, Visibility


@dataclass(frozen=True)
class Viewer:
    """Who is looking: an account id (None for an anonymous visitor) and whether they are admin."""

    account_id: int | None = None
    is_admin: bool = False

    @property
    def anonymous(self) -> bool:
        return self.account_id is None


ANONYMOUS = Viewer()


# --- SQL clauses (for lists) -------------------------------------------------------------


def blocked_between_clause(viewer_id: int, author_id_col: Any) -> ColumnElement[bool]:
    """True when the viewer and the author block each other in either direction."""
    return (
        exists()
        .where(
            or_(
                and_(Block.account_id == viewer_id, Block.target_id == author_id_col),
                and_(Block.account_id == author_id_col, Block.target_id == viewer_id),
            )
        )
        .correlate_except(Block)
    )


def muted_clause(viewer_id: Any, author_id_col: Any, now: Any = None) -> ColumnElement[bool]:
    """True when the viewer mutes the author (and the mute has not expired). `now` may be a
    bound parameter, so a statement built once can be run at any time."""
    return (
        exists()
        .where(
            Mute.account_id == viewer_id,
            Mute.target_id == author_id_col,
            or_(Mute.expires_at.is_(None), Mute.expires_at > (utcnow() if now is None else now)),
        )
        .correlate_except(Mute)
    )


def _audience_clause(viewer: Viewer, post: Any) -> ColumnElement[bool]:
    """The viewer is in the post's audience (ignoring blocks and suspensions)."""
    open_to_all = post.visibility.in_([Visibility.PUBLIC, Visibility.UNLISTED])
    if viewer.account_id is None:
        return open_to_all
    me = viewer.account_id
    # correlate_except: the viewer may be a column of a query two subqueries up (a batch
    # over many viewers); plain auto-correlation reaches only the enclosing SELECT.
    follower = (
        exists()
        .where(Follow.follower_id == me, Follow.followee_id == post.account_id)
        .correlate_except(Follow)
    )
    mentioned = (
        exists()
        .where(Mention.post_id == post.id, Mention.account_id == me)
        .correlate_except(Mention)
    )
    return or_(
        open_to_all,
        post.account_id == me,
        and_(post.visibility == Visibility.PRIVATE, follower),
        mentioned,
    )


def account_not_suspended_clause(account_id_col: Any) -> ColumnElement[bool]:
    """SQL: the account is not suspended (while it is, everything it did is hidden)."""
    return exists().where(Account.id == account_id_col, Account.suspended_at.is_(None))


def _author_not_suspended(post: Any) -> ColumnElement[bool]:
    return account_not_suspended_clause(post.account_id)


def community_gate_clause(viewer: Viewer, post: Any = Post) -> ColumnElement[bool]:
    """SQL: the post's communities let the viewer see it. Ungated posts (NULL: most) pass on
    one column test; a members-gated post needs the viewer to be an active member of a
    community it is approved in, a moderators-gated one a moderator of one of its
    communities; the author always passes. EXISTS, not IN: no OR of IN subqueries."""
    ungated = post.community_gate.is_(None)
    if viewer.account_id is None:
        return ungated
    me = viewer.account_id
    member = exists().where(
        CommunityPost.post_id == post.id,
        CommunityPost.state == CommunityPostState.APPROVED,
        member_clause(me, CommunityPost.community_id),
    )
    moderator = exists().where(
        CommunityPost.post_id == post.id,
        member_clause(me, CommunityPost.community_id, moderators=True),
    )
    return or_(
        ungated,
        post.account_id == me,
        and_(post.community_gate == CommunityGate.MEMBERS, member.correlate_except(CommunityPost)),
        moderator.correlate_except(CommunityPost),
    )


def post_visible_clause(viewer: Viewer, post: Any = Post) -> ColumnElement[bool]:
    """SQL: `viewer` may see `post` (a Post entity or alias) — and, for a boost, its original."""
    own = and_(
        _audience_clause(viewer, post),
        _author_not_suspended(post),
        community_gate_clause(viewer, post),
    )
    if viewer.account_id is not None:
        own = and_(own, ~blocked_between_clause(viewer.account_id, post.account_id))
    original = aliased(Post)
    orig_ok = _audience_clause(viewer, original)
    orig_ok = and_(
        orig_ok, _author_not_suspended(original), community_gate_clause(viewer, original)
    )
    if viewer.account_id is not None:
        orig_ok = and_(orig_ok, ~blocked_between_clause(viewer.account_id, original.account_id))
    # "No hidden original" rather than "original is null or visible": the same meaning (a
    # boost's original always exists, the foreign key cascades), but a top-level NOT EXISTS
    # is planned as an anti-join probing the primary key instead of a pass over every post
    # (bench/timelines.py measured it).
    hidden_original = exists(
        select(original.id).where(original.id == post.reblog_of_id, not_(orig_ok))
    )
    return and_(own, ~hidden_original)


def not_muted_clause(viewer: Viewer, post: Any = Post, now: Any = None) -> ColumnElement[bool]:
    """SQL: the viewer does not mute the post's author (nor, for a boost, the original's)."""
    if viewer.account_id is None:
        return true()
    original = aliased(Post)
    muted_original = exists(
        select(original.id).where(
            original.id == post.reblog_of_id,
            muted_clause(viewer.account_id, original.account_id, now),
        )
    )
    return and_(~muted_clause(viewer.account_id, post.account_id, now), ~muted_original)


def publicly_listed_clause(viewer: Viewer, post: Any = Post) -> ColumnElement[bool]:
    """SQL: the post may appear in public listings (Local, hashtag timelines, search):
    public (not unlisted), not a boost, not gated by its communities (a private community's,
    waiting or removed), and not by a silenced account the viewer doesn't follow."""
    # One NOT EXISTS ("a silenced author the viewer neither is nor follows"), not
    # "EXISTS(unsilenced author) OR follows OR own": PostgreSQL answered the OR with a hashed
    # pass over every unsilenced account, per page (2.7 ms at 22,000 accounts, growing with
    # sign-ups; bench/communities.py's public timeline).
    silenced = [Account.id == post.account_id, Account.silenced_at.is_not(None)]
    if viewer.account_id is not None:
        # Correlated with the post explicitly: SQLAlchemy correlates on its own only with
        # the enclosing SELECT (the author's), which would leave "FROM follows, posts" here:
        # "the viewer follows anyone who has posted", which let silenced posts through.
        follows = (
            exists()
            .where(Follow.follower_id == viewer.account_id, Follow.followee_id == post.account_id)
            .correlate(post)
        )
        silenced += [~follows, post.account_id != viewer.account_id]
    not_silenced = ~exists().where(*silenced)
    return and_(
        post.visibility == Visibility.PUBLIC,
        post.reblog_of_id.is_(None),
        post.community_gate.is_(None),
        not_silenced,
    )


def trendable_clause(post: Any = Post) -> ColumnElement[bool]:
    """SQL: the post may count toward the instance's trends and appear in them: listed for
    everyone (public, not a boost, author neither silenced nor suspended) by an author who
    chose to be discoverable. The same for every viewer, so trends are computed once."""
    discoverable = exists().where(Account.id == post.account_id, Account.discoverable.is_(True))
    return and_(
        publicly_listed_clause(ANONYMOUS, post),
        account_not_suspended_clause(post.account_id),
        discoverable,
    )


def searchable_clause(viewer: Viewer, post: Any = Post) -> ColumnElement[bool]:
    """SQL: the post may be found by full-text search by this viewer.

    Public posts are searchable by everyone; a signed-in viewer also finds the posts they
    wrote, liked, bookmarked or were mentioned in that they may see (as Mastodon does) —
    but a post gated by its communities only when they wrote it."""
    listed = publicly_listed_clause(viewer, post)
    if viewer.account_id is None:
        return and_(listed, post_visible_clause(viewer, post))
    mentioned = exists().where(Mention.post_id == post.id, Mention.account_id == viewer.account_id)
    mine = or_(
        post.account_id == viewer.account_id,
        and_(post.community_gate.is_(None), mentioned),
    )
    return and_(
        or_(listed, mine), post_visible_clause(viewer, post), not_muted_clause(viewer, post)
    )


def account_search_clause(viewer: Viewer, exact_match: ColumnElement[bool]) -> ColumnElement[bool]:
    """SQL: the account may appear in this viewer's account search. Suspended accounts, sign-ups
    still waiting for approval, and accounts blocking or blocked by the viewer never do; an
    account that opted out of discovery shows up only for its exact handle (`exact_match`)."""
    pending = exists().where(User.account_id == Account.id, User.state == UserState.PENDING)
    clause = and_(Account.suspended_at.is_(None), ~pending)
    findable = or_(Account.discoverable.is_(True), exact_match)
    if viewer.account_id is not None:
        clause = and_(clause, ~blocked_between_clause(viewer.account_id, Account.id))
        findable = or_(findable, Account.id == viewer.account_id)
    return and_(clause, findable)


def shown_to_anyone_clause(viewer: Viewer, post: Any = Post) -> ColumnElement[bool]:
    """SQL: the post is one an anonymous visitor may see (public or unlisted, author not
    suspended) and `viewer` may see too (no block between them). What a document served to
    other servers may list, such as a post's `replies` collection: a follower's signed fetch
    does not make followers-only replies appear in it."""
    anyone = post_visible_clause(ANONYMOUS, post)
    if viewer.account_id is None:
        return anyone
    return and_(anyone, post_visible_clause(viewer, post))


# --- checks for one object ----------------------------------------------------------------


async def can_see_community(db: AsyncSession, viewer: Viewer, community: Community) -> bool:
    """May the viewer read the community's posts and member list (its feeds)? Every
    community's card — name, description, rules, membership model, join question — is public,
    so people can find it and ask to join; a private community's content is for its active
    members alone (not pending requests, not banned people, not instance admins)."""
    if community.membership != MembershipModel.PRIVATE:
        return True
    return (await standing(db, viewer.account_id, community)).rank > 0


def reader_of_post_clause(account_id_col: Any, post_id: Any) -> ColumnElement[bool]:
    """SQL: the account in `account_id_col` (a column, so one statement checks many) may see
    the post `post_id` — whom a federation delivery of the post may reach."""
    return exists(
        select(Post.id).where(Post.id == post_id, post_visible_clause(Viewer(account_id_col), Post))
    )


async def can_see_post(db: AsyncSession, viewer: Viewer, post: Post) -> bool:
    """May `viewer` see this post (post page, thread, notification, stream event)?"""
    stmt = _prebuilt_can_see(viewer.account_id is None)
    params = {"post_id": post.id, "viewer_id": viewer.account_id}
    return (await db.execute(stmt, params)).first() is not None


_CAN_SEE_STATEMENTS: dict[bool, Select[Any]] = {}


def _prebuilt_can_see(anonymous: bool) -> Select[Any]:
    """`can_see_post`'s statement, built once per process with the viewer and the post bound:
    building the clause tree costs ~2 ms of CPU, running it a fraction of that."""
    stmt = _CAN_SEE_STATEMENTS.get(anonymous)
    if stmt is None:
        viewer = ANONYMOUS if anonymous else Viewer(_param("viewer_id"))
        stmt = select(true()).where(
            Post.id == bindparam("post_id", type_=BigInteger()), post_visible_clause(viewer, Post)
        )
        _CAN_SEE_STATEMENTS[anonymous] = stmt
    return stmt


def _param(name: str) -> Any:
    """A bound 64-bit id standing for a viewer in a statement built once."""
    return bindparam(name, type_=BigInteger())


async def can_see_media(db: AsyncSession, viewer: Viewer, media: MediaAttachment) -> bool:
    """May `viewer` see this attachment? Exactly when they may see its post; an upload not
    yet attached to a post is seen by its uploader only. (The files themselves are served
    under unguessable names to whoever holds the URL: see docs/architecture.md.)"""
    if media.post_id is None:
        return viewer.account_id is not None and viewer.account_id == media.account_id
    post = await db.get(Post, media.post_id)
    return post is not None and await can_see_post(db, viewer, post)


async def is_blocked_between(db: AsyncSession, a: int | None, b: int) -> bool:
    """Do accounts `a` and `b` block each other in either direction?"""
    if a is None or a == b:
        return False
    return bool(await db.scalar(select(blocked_between_clause(a, b))))


async def is_muted(db: AsyncSession, viewer: Viewer, author_id: int) -> bool:
    """Does the viewer mute this author?"""
    if viewer.account_id is None:
        return False
    return bool(await db.scalar(select(muted_clause(viewer.account_id, author_id))))


async def can_see_account(db: AsyncSession, viewer: Viewer, account: Account) -> bool:
    """May the viewer open this account's profile? Suspended accounts are gone for all but
    admins; blocks hide a profile's content but not its existence (a blocked person sees an
    empty profile, as on Mastodon), so this only checks suspension. A deleted account is
    gone for everyone."""
    if account.deleted_at is not None:
        return False
    return account.suspended_at is None or viewer.is_admin


async def can_see_network(db: AsyncSession, viewer: Viewer, account: Account) -> bool:
    """May the viewer list who this account follows and who follows it?"""
    if account.hide_network and viewer.account_id != account.id:
        return False
    return not await is_blocked_between(db, viewer.account_id, account.id)


class ActorState(enum.StrEnum):
    """How a local account appears to other servers (its actor, WebFinger, collections)."""

    PUBLISHED = "published"
    SUSPENDED = "suspended"  # a stub saying so; no profile, posts or network
    HIDDEN = "hidden"  # not there at all (404): remote, or a sign-up waiting for approval
    DELETED = "deleted"  # gone for good (410 Gone, a Tombstone): peers forget it


async def actor_state(db: AsyncSession, account: Account) -> ActorState:
    """Does this account federate? Only local accounts are served; a sign-up that an admin has
    not approved yet is not shown to anyone (as in account search); a suspended one is a stub
    (the suspension can be lifted, so peers must not forget the account, as they would on 410)."""
    if not account.is_local:
        return ActorState.HIDDEN
    if account.deleted_at is not None:
        return ActorState.DELETED
    pending = await db.scalar(
        select(User.id).where(User.account_id == account.id, User.state == UserState.PENDING)
    )
    if pending is not None:
        return ActorState.HIDDEN
    if account.suspended_at is not None:
        return ActorState.SUSPENDED
    return ActorState.PUBLISHED


async def can_interact(db: AsyncSession, viewer: Viewer, post: Post) -> bool:
    """May the viewer reply to, like or bookmark this post? They must see it and be signed in."""
    return viewer.account_id is not None and await can_see_post(db, viewer, post)


def can_boost(viewer: Viewer, post: Post) -> bool:
    """Only public and unlisted posts may be boosted (audience must not widen), and none
    gated by its communities. Visibility itself is checked by `can_interact`."""
    return (
        post.visibility in (Visibility.PUBLIC, Visibility.UNLISTED)
        and post.reblog_of_id is None
        and post.community_gate is None
    )


def can_edit_post(viewer: Viewer, post: Post) -> bool:
    """Only the author edits, deletes or pins a post (admins remove via moderation)."""
    return viewer.account_id is not None and viewer.account_id == post.account_id


def can_delete_post(viewer: Viewer, post: Post) -> bool:
    """The author, or an admin acting on a report, may delete a post."""
    return can_edit_post(viewer, post) or viewer.is_admin


def notification_wanted_clause(recipient_col: Any, actor_id: Any, now: Any) -> ColumnElement[bool]:
    """SQL: the recipient would want a notification caused by `actor_id`: it is not their own
    doing, neither blocks the other, and the recipient does not mute the actor with
    notifications hidden (an unexpired mute)."""
    muted_notifications = exists().where(
        Mute.account_id == recipient_col,
        Mute.target_id == actor_id,
        Mute.hide_notifications.is_(True),
        or_(Mute.expires_at.is_(None), Mute.expires_at > now),
    )
    return and_(
        recipient_col != actor_id,
        ~blocked_between_clause(recipient_col, actor_id),
        ~muted_notifications,
    )


async def should_notify(db: AsyncSession, recipient_id: int, actor_id: int) -> bool:
    """Would `recipient` want a notification caused by `actor`? Not if either blocks the
    other, nor if the recipient mutes the actor with notifications hidden."""
    if recipient_id == actor_id:
        return False
    return bool(await notifiable_ids(db, [recipient_id], actor_id))


_NOTIFIABLE_STATEMENTS: dict[tuple[bool, str], Select[Any]] = {}


async def notifiable_ids(
    db: AsyncSession, recipient_ids: Collection[int], actor_id: int, post_id: int | None = None
) -> set[int]:
    """Which of these recipients may be notified of something `actor_id` did (about `post_id`,
    which each must be able to see): the batch form of `should_notify` + `can_see_post`, one
    statement built once per process."""
    if not recipient_ids:
        return set()
    stmt = notifiable_statement(post_id is not None, db.get_bind().dialect.name)
    params = notifiable_values(recipient_ids, actor_id, post_id)
    return set((await db.scalars(stmt, params)).all())


def notifiable_statement(about_post: bool, dialect_name: str) -> Select[Any]:
    """`notifiable_ids`'s statement (values: `notifiable_values`), built once per process
    and database."""
    stmt = _NOTIFIABLE_STATEMENTS.get((about_post, dialect_name))
    if stmt is None:
        # An alias, so the policy's own subqueries on `accounts` (suspension) are not
        # correlated to the recipient row.
        recipient = aliased(Account)
        wanted = notification_wanted_clause(
            recipient.id, _param("actor_id"), bindparam("now", type_=UTCDateTime())
        )
        stmt = select(recipient.id).where(
            one_of(recipient.id, "recipient_ids", dialect_name), wanted
        )
        if about_post:
            stmt = stmt.join(Post, Post.id == _param("post_id")).where(
                post_visible_clause(Viewer(recipient.id), Post)  # type: ignore[arg-type]
            )
        stmt = _NOTIFIABLE_STATEMENTS.setdefault((about_post, dialect_name), stmt)
    return stmt


def notifiable_values(
    recipient_ids: Collection[int], actor_id: int, post_id: int | None
) -> dict[str, Any]:
    return {
        "recipient_ids": list(recipient_ids),
        "actor_id": actor_id,
        "now": utcnow(),
        "post_id": post_id,
    }


def can_moderator_see_reported_post(viewer: Viewer, report: Report, post: Post) -> bool:
    """May a moderator see this post through this report? Admins see the posts attached to a
    report whatever their audience (even followers-only, even of a suspended account), and
    nothing else that way: no other post of the account, no post of another account."""
    return (
        viewer.is_admin
        and post.id in report.post_ids
        and post.account_id == report.target_account_id
    )


def nobody() -> ColumnElement[bool]:
    """A clause nothing matches (for surfaces closed to this viewer)."""
    return false()
