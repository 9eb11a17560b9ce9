"""What the federation surfaces serve: which actor, which posts, which page of a collection,
the WebFinger and NodeInfo answers. Every visibility question goes to `kith.policy`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from kith import policy
from kith.accounts import service as accounts
from kith.accounts.models import Account, RegistrationMode, User, UserSession, UserState
from kith.config import Settings
from kith.db import utcnow
from kith.errors import Forbidden, KithError, NotFound
from kith.federation import groups, remote_groups, tombstones
from kith.federation.activitypub import Audience, actor_id, post_id
from kith.federation.negotiation import Gone
from kith.graph.models import Follow
from kith.posts import presenter
from kith.posts import service as posts
from kith.posts.models import Poll, PollVote, Post
from kith.runtime import runtime_of
from kith.timelines import service as timelines

NO_SUCH_ACTOR = "No such account."


class MalformedResource(KithError):
    """A WebFinger resource that is neither `acct:user@domain` nor a URL (RFC 7033: 400)."""

    status = 400


async def published_actor(db: AsyncSession, username: str) -> tuple[Account, policy.ActorState]:
    """The local account behind `/users/NAME` and its state; NotFound when it is not served,
    Gone (410, a Tombstone) when it was deleted."""
    account = await accounts.find_local_account(db, username)
    if account is None:
        raise NotFound(NO_SUCH_ACTOR)
    state = await policy.actor_state(db, account)
    if state is policy.ActorState.DELETED:
        raise Gone(tombstones.actor_tombstone(runtime_of(db).settings, account))
    if state is policy.ActorState.HIDDEN:
        raise NotFound(NO_SUCH_ACTOR)
    return account, state


async def actor_with_content(db: AsyncSession, username: str) -> Account:
    """The account whose collections are asked for: a suspended one shows none (403, as
    Mastodon answers while a suspension can still be lifted)."""
    account, state = await published_actor(db, username)
    if state is policy.ActorState.SUSPENDED:
        raise Forbidden("This account is suspended.")
    return account


# --- posts --------------------------------------------------------------------------------


@dataclass
class FetchedPost:
    """A post as a fetch shows it: its view, the id of its parent, and its poll's counts."""

    view: presenter.PostView
    in_reply_to: str | None
    poll_counts: list[int] | None
    audience: Audience | None = None  # the community it is in (FEP-1b12)


async def fetch_post(
    db: AsyncSession, viewer: policy.Viewer, username: str, status_id: int
) -> presenter.PostView:
    """The post `/users/NAME/statuses/ID` names, if the viewer may see it (the same question
    the HTML page asks); NotFound when it is hidden, not NAME's, or not there; Gone (410, a
    Tombstone) when it was deleted (`federation.tombstones`)."""
    try:
        post = await posts.get_visible_post(db, viewer, status_id)
    except NotFound:  # asked only then: a post that is there costs no extra query
        gone = await tombstones.post_tombstone(db, runtime_of(db).settings, username, status_id)
        if gone is not None:
            raise Gone(gone) from None
        raise
    author = await accounts.find_local_account(db, username)
    if author is None or author.id != post.account_id:
        raise NotFound("This post does not exist or is not visible to you.")
    (view,) = await presenter.present(db, viewer, [post])
    return view


async def note_parts(
    db: AsyncSession, settings: Settings, views: list[presenter.PostView]
) -> dict[int, FetchedPost]:
    """For each post (not boost) view: its parent's id, its poll counts and its community, in
    three queries."""
    parent_ids = {v.post.in_reply_to_id for v in views if v.post.in_reply_to_id is not None}
    parents: dict[int, str] = {}
    if parent_ids:
        rows = (
            await db.execute(
                select(Post, Account)
                .join(Account, Account.id == Post.account_id)
                .where(Post.id.in_(parent_ids))
            )
        ).all()
        parents = {p.id: post_id(settings, p, a) for p, a in rows}
    poll_ids = [v.post.id for v in views if v.poll is not None]
    counts = await poll_counts(db, poll_ids)
    in_communities = await groups.audiences(db, [v.post.id for v in views])
    if in_communities:  # a remote community's Group has its own id
        in_communities |= await remote_groups.audiences(db, list(in_communities))
    return {
        v.post.id: FetchedPost(
            view=v,
            in_reply_to=parents.get(v.post.in_reply_to_id) if v.post.in_reply_to_id else None,
            poll_counts=counts.get(v.post.id),
            audience=in_communities.get(v.post.id),
        )
        for v in views
    }


async def poll_counts(db: AsyncSession, post_ids: list[int]) -> dict[int, list[int]]:
    """Votes per option of these polls. Peers show the counts to their own people, whose
    right to see them their servers judge, as Mastodon publishes them."""
    if not post_ids:
        return {}
    sizes = {
        pid: len(options)
        for pid, options in (
            await db.execute(select(Poll.post_id, Poll.options).where(Poll.post_id.in_(post_ids)))
        ).all()
    }
    counts = {pid: [0] * n for pid, n in sizes.items()}
    rows = await db.execute(
        select(PollVote.post_id, PollVote.choice, func.count())
        .where(PollVote.post_id.in_(post_ids))
        .group_by(PollVote.post_id, PollVote.choice)
    )
    for pid, choice, n in rows.all():
        if 0 <= choice < len(counts[pid]):
            counts[pid][choice] = int(n)
    return counts


# --- collections --------------------------------------------------------------------------


@dataclass
class RepliesPage:
    """One page of a post's replies as ids, and where the next page starts (`next_others`:
    whether it is in the section of other people's replies; `next_min_id`: after which id)."""

    items: list[str]
    next_min_id: int | None
    next_others: bool


def _replies_query(viewer: policy.Viewer, post: Post) -> Any:
    """The replies to `post` a collection may list: those anyone may see, and this viewer too.
    (The author is an alias: the policy's clauses correlate on `Account` themselves.)"""
    author = aliased(Account)
    return (
        select(Post, author)
        .join(author, author.id == Post.account_id)
        .where(Post.in_reply_to_id == post.id, policy.shown_to_anyone_clause(viewer, Post))
    )


async def replies_total(db: AsyncSession, viewer: policy.Viewer, post: Post) -> int:
    """How many replies to `post` its `replies` collection lists for this viewer."""
    sub = _replies_query(viewer, post).with_only_columns(Post.id).subquery()
    return int(await db.scalar(select(func.count()).select_from(sub)) or 0)


async def replies_page(
    db: AsyncSession,
    settings: Settings,
    viewer: policy.Viewer,
    post: Post,
    *,
    others: bool,
    min_id: int | None,
    limit: int,
) -> RepliesPage:
    """A page of the replies to `post`, oldest first: the author's own replies (a thread they
    continue) come first, then everyone else's — as Mastodon orders them, so a peer that
    reads only the first page gets the thread. `others` starts in the second section."""
    base = _replies_query(viewer, post).order_by(Post.id).limit(limit)
    if min_id is not None:
        base = base.where(Post.id > min_id)
    rows: list[tuple[Post, Account, bool]] = []
    if not others:
        own = await db.execute(base.where(Post.account_id == post.account_id))
        rows = [(p, a, False) for p, a in own.all()]
        min_id = None  # the second section starts at its beginning
    if len(rows) < limit:
        rest = _replies_query(viewer, post).order_by(Post.id).limit(limit - len(rows))
        rest = rest.where(Post.account_id != post.account_id)
        if min_id is not None:
            rest = rest.where(Post.id > min_id)
        rows += [(p, a, True) for p, a in (await db.execute(rest)).all()]
    items = [post_id(settings, p, a) for p, a, _ in rows]
    if len(rows) < limit:
        return RepliesPage([i for i in items if i], None, False)
    last_post, _, last_other = rows[-1]
    return RepliesPage([i for i in items if i], last_post.id, last_other)


@dataclass
class OutboxPage:
    views: list[presenter.PostView]
    next_max_id: int | None


async def outbox_total(db: AsyncSession, viewer: policy.Viewer, account: Account) -> int:
    """How many of the account's posts and boosts the viewer may see."""
    stmt = select(func.count()).where(
        Post.account_id == account.id, policy.post_visible_clause(viewer)
    )
    return int(await db.scalar(stmt) or 0)


async def outbox_page(
    db: AsyncSession, viewer: policy.Viewer, account: Account, max_id: int | None, limit: int
) -> OutboxPage:
    """One page of the account's posts and boosts the viewer may see, newest first: for an
    unsigned fetch, public and unlisted ones (the profile's own query, replies included)."""
    page = await timelines.profile(db, viewer, account, tab="replies", max_id=max_id, limit=limit)
    views = await presenter.present(db, viewer, page.posts)
    return OutboxPage(views, page.older_max_id)


async def featured(
    db: AsyncSession, viewer: policy.Viewer, account: Account
) -> list[presenter.PostView]:
    """The account's pinned posts the viewer may see (boosts can't be pinned)."""
    pinned = [p for p in await timelines.pinned(db, viewer, account) if p.reblog_of_id is None]
    return await presenter.present(db, viewer, pinned)


@dataclass
class NetworkPage:
    """One page of followers (or followed accounts) as actor ids; `items` is None when the
    account hides its network (only the count is shown, as Mastodon does)."""

    total: int
    items: list[str] | None
    next_max_id: int | None


async def network_page(
    db: AsyncSession,
    settings: Settings,
    viewer: policy.Viewer,
    account: Account,
    kind: str,
    max_id: int | None,
    limit: int,
    with_items: bool,
) -> NetworkPage:
    """Followers (`kind="followers"`) or followed accounts of `account`, newest follow first.
    Suspended and not-yet-approved accounts are left out of the items but not of the count."""
    mine, theirs = (
        (Follow.followee_id, Follow.follower_id)
        if kind == "followers"
        else (Follow.follower_id, Follow.followee_id)
    )
    total = int(await db.scalar(select(func.count()).where(mine == account.id)) or 0)
    if not with_items or not await policy.can_see_network(db, viewer, account):
        return NetworkPage(total, None, None)
    pending = select(User.account_id).where(User.state == UserState.PENDING)
    stmt = (
        select(Follow.id, Account)
        .join(Account, Account.id == theirs)
        .where(
            mine == account.id,
            Account.suspended_at.is_(None),
            Account.id.not_in(pending),
        )
        .order_by(Follow.id.desc())
        .limit(limit)
    )
    if max_id is not None:
        stmt = stmt.where(Follow.id < max_id)
    rows = (await db.execute(stmt)).all()
    items = [actor_id(settings, a) for _, a in rows]
    next_max_id = rows[-1][0] if len(rows) == limit else None
    return NetworkPage(total, [i for i in items if i], next_max_id)


# --- WebFinger ----------------------------------------------------------------------------

_ACCT_RE = re.compile(r"^acct:@?(?P<user>[^@\s/]+)@(?P<host>[^@\s/]+)$", re.IGNORECASE)


def username_from_resource(settings: Settings, resource: str) -> str:
    """The local username a WebFinger `resource` names: `acct:user@domain` or the actor's (or
    profile's) https URL. MalformedResource (400) when it is neither; NotFound when it names
    another server."""
    resource = resource.strip()
    match = _ACCT_RE.match(resource)
    if match:
        if match["host"].lower() != settings.domain.lower():
            raise NotFound(NO_SUCH_ACTOR)
        return match["user"]
    if resource.startswith(("https://", "http://")):
        parts = urlsplit(resource)
        if f"{parts.scheme}://{parts.netloc}".lower() != settings.base_url.lower():
            raise NotFound(NO_SUCH_ACTOR)
        path = parts.path.rstrip("/")
        for prefix in ("/users/", "/@"):
            if path.startswith(prefix) and "/" not in path[len(prefix) :]:
                return path[len(prefix) :]
        raise NotFound(NO_SUCH_ACTOR)
    raise MalformedResource("The resource must be acct:user@domain or an actor URL.")


async def webfinger_account(db: AsyncSession, settings: Settings, resource: str) -> Account:
    """The published, unsuspended local account a WebFinger resource names, or NotFound."""
    username = username_from_resource(settings, resource)
    account, state = await published_actor(db, username)
    if state is not policy.ActorState.PUBLISHED:
        raise NotFound(NO_SUCH_ACTOR)
    return account


# --- NodeInfo -----------------------------------------------------------------------------


@dataclass
class Usage:
    users_total: int
    active_month: int
    active_halfyear: int
    local_posts: int
    open_registrations: bool


async def usage(db: AsyncSession) -> Usage:
    """The counts NodeInfo publishes. A person is active in a period when they posted or used a
    session in it; suspended accounts and sign-ups waiting for approval are not counted."""
    now = utcnow()
    people = (
        select(User.account_id)
        .join(Account, Account.id == User.account_id)
        .where(User.state == UserState.ACTIVE, Account.suspended_at.is_(None))
    )

    async def active_since(days: int) -> int:
        since = now - timedelta(days=days)
        posted = select(Post.account_id).where(Post.created_at >= since)
        seen = (
            select(User.account_id)
            .join(UserSession, UserSession.user_id == User.id)
            .where(UserSession.last_seen_at >= since)
        )
        stmt = select(func.count()).select_from(
            people.where(or_(User.account_id.in_(posted), User.account_id.in_(seen))).subquery()
        )
        return int(await db.scalar(stmt) or 0)

    total = int(await db.scalar(select(func.count()).select_from(people.subquery())) or 0)
    local_posts = await db.scalar(
        select(func.count())
        .select_from(Post)
        .join(Account, Account.id == Post.account_id)
        .where(Account.domain == "", Post.reblog_of_id.is_(None))
    )
    mode = (await accounts.get_instance_settings(db)).registration_mode
    return Usage(
        users_total=total,
        active_month=await active_since(30),
        active_halfyear=await active_since(180),
        local_posts=int(local_posts or 0),
        open_registrations=mode in (RegistrationMode.OPEN, RegistrationMode.APPROVAL),
    )
