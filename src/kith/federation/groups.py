"""Communities as FEP-1b12 `Group` actors: which community an id names, remote people
joining through `Follow` (under the community's membership model, `communities.service.join`)
and the Group passing its posts on to its followers with `Announce`.

The Group's followers are the community's remote active members: a private community's posts
therefore reach only its members' servers. Its activities are signed with the community's
own key (`keys.community_key`, via `OutboundActivity.community_id`)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.communities import activitypub as group_ap
from kith.communities import feeds, rosters
from kith.communities import service as communities
from kith.communities.models import (
    Community,
    CommunityPost,
    CommunityPostState,
    Membership,
    MembershipModel,
    MemberState,
)
from kith.errors import Forbidden, KithError, NotFound, ValidationFailed
from kith.federation import activitypub as ap
from kith.federation.delivery import deliver, inboxes_of
from kith.federation.local_objects import local_path
from kith.federation.models import InboxItem, RemoteActor
from kith.federation.origin import first_id, id_of
from kith.posts import presenter
from kith.posts.models import Post
from kith.runtime import runtime_of

log = logging.getLogger(__name__)

Json = dict[str, Any]
_GROUP_PATH = re.compile(r"^/c/([A-Za-z0-9_]{1,30})/?$")
# Activities looked through for the Follow a moderator's decision answers.
FOLLOW_LOOKBACK = 50
# A post names at most this many of our communities that count (as `posting` allows).
MAX_ADDRESSED = 5


async def local_community(db: AsyncSession, uri: str) -> Community | None:
    """The local community whose Group id (`/c/HANDLE`) `uri` is, or None."""
    match = _GROUP_PATH.match(local_path(db, uri) or "")
    if match is None:
        return None
    return await communities.find_community(db, match.group(1))


def _addressees(doc: Any) -> list[str]:
    if not isinstance(doc, dict):
        return []
    out: list[str] = []
    for key in ("to", "cc", "audience"):
        value = doc.get(key)
        for ref in value if isinstance(value, list) else [value]:
            ref_id = id_of(ref)
            if ref_id:
                out.append(ref_id)
    return out


async def communities_addressed(db: AsyncSession, *docs: Any) -> list[Community]:
    """Our communities named in the `to`, `cc` or `audience` of these documents (a Create
    and its object), in order, without repeats."""
    found: dict[int, Community] = {}
    for uri in dict.fromkeys(u for doc in docs for u in _addressees(doc)):
        community = await local_community(db, uri)
        if community is not None:
            found.setdefault(community.id, community)
        if len(found) > MAX_ADDRESSED:
            break
    return list(found.values())


async def member_inboxes(db: AsyncSession, community: Community) -> set[str]:
    """The inboxes (shared when advertised) of the community's remote active members: the
    Group's followers."""
    ids = await db.scalars(
        select(Membership.account_id)
        .join(Account, Account.id == Membership.account_id)
        .where(
            Membership.community_id == community.id,
            Membership.state == MemberState.ACTIVE,
            Account.domain != "",
        )
    )
    return await inboxes_of(db, list(ids.all()))


# --- joining ------------------------------------------------------------------------------


async def _answer(db: AsyncSession, community: Community, kind: str, follow: Json) -> None:
    """Send the Group's Accept or Reject of `follow` to its actor's own inbox."""
    activity = group_ap.answer_follow(runtime_of(db).settings, community, kind, follow)
    follower_uri = activity["object"]["actor"]
    inbox = await db.scalar(
        select(RemoteActor.inbox_url)
        .join(Account, Account.id == RemoteActor.account_id)
        .where(Account.uri == follower_uri)
    )
    if inbox is None:
        log.warning("no inbox known for %s: %s of a join not sent", follower_uri, kind)
        return
    await deliver(db, None, activity, [inbox], community_id=community.id)


async def follow_received(
    db: AsyncSession, community: Community, actor: Account, follow: Json
) -> str:
    """A remote person's Follow of the Group: a request to join, under the community's
    membership model. Open: joined and accepted at once; approval or private: a request a
    moderator settles (`moderation.approve` / `reject` then answer); invite-only, banned
    or suspended: rejected. Returns the outcome."""
    try:
        row = await communities.join(db, actor.id, community, from_follow=True)
    except (Forbidden, ValidationFailed) as exc:
        await _answer(db, community, "Reject", follow)
        return f"rejected: {exc.message}"
    if row.state == MemberState.ACTIVE:
        await _answer(db, community, "Accept", follow)
        return "joined"
    return "requested: waiting for a moderator"


async def unfollow_received(db: AsyncSession, community: Community, actor: Account) -> str:
    """A remote person's Undo(Follow) of the Group: they leave (or withdraw their request)."""
    try:
        await communities.leave(db, actor.id, community)
    except ValidationFailed as exc:
        return f"ignored: {exc.message}"
    return "left"


async def _follow_of(db: AsyncSession, community: Community, account: Account) -> Json:
    """The Follow with which `account` asked to join (the latest one stored), for the Accept
    or Reject that answers it; a minimal one when it is no longer stored."""
    rows = await db.scalars(
        select(InboxItem.activity)
        .where(InboxItem.activity_type == "Follow", InboxItem.actor_uri == account.uri)
        .order_by(InboxItem.id.desc())
        .limit(FOLLOW_LOOKBACK)
    )
    for activity in rows.all():
        target = await local_community(db, first_id(activity.get("object")) or "")
        if target is not None and target.id == community.id:
            return dict(activity)
    me = group_ap.group_id(runtime_of(db).settings, community)
    return {"id": f"{account.uri}#joins/{community.id}", "actor": account.uri, "object": me}


async def join_settled(
    db: AsyncSession, community: Community, account_id: int, *, accepted: bool
) -> None:
    """A moderator approved or turned down a join request: a remote person's server gets
    the Group's Accept or Reject of their Follow (in the caller's transaction)."""
    account = await db.get(Account, account_id)
    if account is None or account.is_local or not account.uri:
        return
    follow = await _follow_of(db, community, account)
    await _answer(db, community, "Accept" if accepted else "Reject", follow)


# --- announcing ---------------------------------------------------------------------------


async def _received_create(db: AsyncSession, post: Post, author: Account) -> Json | None:
    """The Create with which a remote post arrived, as received (None: not stored)."""
    rows = await db.scalars(
        select(InboxItem.activity)
        .where(InboxItem.activity_type == "Create", InboxItem.actor_uri == author.uri)
        .order_by(InboxItem.id.desc())
        .limit(FOLLOW_LOOKBACK)
    )
    for activity in rows.all():
        if first_id(activity.get("object")) == post.uri:
            return dict(activity)
    return None


async def _create_of(db: AsyncSession, post: Post, author: Account) -> tuple[Json | None, str]:
    """The Create that made a post (built for a local one, as received for a remote one)
    and the post's id."""
    if not author.is_local:
        return await _received_create(db, post, author), post.uri or ""
    # Imported here: federation.service imports posts.service, which calls this module.
    from kith.federation.service import note_parts

    settings = runtime_of(db).settings
    (view,) = await presenter.present(db, policy.Viewer(author.id), [post])
    parts = (await note_parts(db, settings, [view]))[post.id]
    note = ap.note(
        settings,
        view,
        in_reply_to=parts.in_reply_to,
        poll_counts=parts.poll_counts,
        audience=parts.audience,
    )
    return ap.create(settings, note, view), str(note["id"])


async def announce_post(
    db: AsyncSession,
    post: Post,
    *,
    created: Json | None = None,
    community_id: int | None = None,
) -> int:
    """Each community the post is approved in (or only `community_id`) passes it on to its
    followers: an `Announce` of the Create (Lemmy) and one of the post itself (Mastodon),
    signed by the Group, in the caller's transaction. `created`: the Create as it arrived,
    for a remote post. Returns the number of deliveries queued."""
    stmt = (
        select(Community, CommunityPost.members_only)
        .join(CommunityPost, CommunityPost.community_id == Community.id)
        .where(
            CommunityPost.post_id == post.id,
            CommunityPost.state == CommunityPostState.APPROVED,
        )
    )
    if community_id is not None:
        stmt = stmt.where(Community.id == community_id)
    rows = (await db.execute(stmt)).all()
    reached = [(c, members_only, await member_inboxes(db, c)) for c, members_only in rows]
    reached = [r for r in reached if r[2]]
    author = await db.get(Account, post.account_id)
    # Most communities have no remote member: then nothing is built.
    if not reached or author is None or post.reblog_of_id is not None:
        return 0
    settings = runtime_of(db).settings
    create, object_id = await _create_of(db, post, author)
    if created is not None:
        create = created
    queued = 0
    for community, members_only, inboxes in reached:
        announces = [
            group_ap.announce(
                settings,
                community,
                post.id,
                object_id,
                members_only=members_only,
                published=post.created_at,
                of_object=True,
            )
        ]
        if create is not None:
            inner = group_ap.in_audience(settings, community, create, members_only)
            announces.insert(
                0,
                group_ap.announce(
                    settings,
                    community,
                    post.id,
                    inner,
                    members_only=members_only,
                    published=post.created_at,
                ),
            )
        for activity in announces:
            queued += await deliver(db, None, activity, inboxes, community_id=community.id)
    return queued


async def announce_approved(db: AsyncSession, community_id: int, post_id: int) -> None:
    """A moderator let a waiting post in: the Group announces it now (caller's transaction)."""
    post = await db.get(Post, post_id)
    if post is None:
        raise NotFound("No such post.")
    await announce_post(db, post, community_id=community_id)


# --- what the Group's documents show -------------------------------------------------------


async def served_community(db: AsyncSession, handle: str) -> Community:
    """The community behind `/c/HANDLE` (any case), or NotFound."""
    community = await communities.find_community(db, handle)
    if community is None:
        raise NotFound("No such community.")
    return community


def shows_content(community: Community) -> bool:
    """Do the Group's collections list anything? A private community's never do: its actor
    shows the public card only, never its members or posts — not even to a member's server,
    which gets them delivered instead."""
    return community.membership != MembershipModel.PRIVATE


async def _object_ids(db: AsyncSession, posts: list[Post]) -> list[str]:
    """The ActivityPub ids of these posts, in order (local ones built, remote ones stored)."""
    settings = runtime_of(db).settings
    authors = {
        a.id: a
        for a in await db.scalars(
            select(Account).where(Account.id.in_({p.account_id for p in posts}))
        )
    }
    ids = [ap.post_id(settings, p, authors[p.account_id]) for p in posts if p.account_id in authors]
    return [i for i in ids if i]


@dataclass
class OutboxPage:
    total: int
    announces: list[Json]
    next_max_id: int | None


async def outbox_page(
    db: AsyncSession,
    viewer: policy.Viewer,
    community: Community,
    max_id: int | None,
    limit: int,
    *,
    with_items: bool,
) -> OutboxPage:
    """The Group's outbox: the Announces of its newest threads the viewer may see (empty for a
    private community)."""
    if not shows_content(community):
        return OutboxPage(0, [], None)
    total = int(
        await db.scalar(
            select(func.count())
            .select_from(CommunityPost)
            .join(Post, Post.id == CommunityPost.post_id)
            .where(
                CommunityPost.community_id == community.id,
                CommunityPost.state == CommunityPostState.APPROVED,
                CommunityPost.is_thread.is_(True),
                policy.post_visible_clause(viewer),
            )
        )
        or 0
    )
    if not with_items:
        return OutboxPage(total, [], None)
    page = await feeds.community_feed(db, viewer, community, max_id=max_id, limit=limit)
    settings = runtime_of(db).settings
    ids = dict(zip([p.id for p in page.posts], await _object_ids(db, page.posts), strict=False))
    announces = [
        group_ap.announce(
            settings,
            community,
            p.id,
            ids[p.id],
            members_only=False,
            published=p.created_at,
            of_object=True,
        )
        for p in page.posts
        if p.id in ids
    ]
    return OutboxPage(total, announces, page.older_max_id)


async def featured_ids(db: AsyncSession, viewer: policy.Viewer, community: Community) -> list[str]:
    """The ids of the community's pinned threads the viewer may see (none for a private
    community)."""
    if not shows_content(community):
        return []
    return await _object_ids(db, await feeds.pinned_threads(db, viewer, community))


async def moderator_ids(db: AsyncSession, community: Community) -> list[str]:
    """The actor ids of the owner and moderators (none for a private community)."""
    if not shows_content(community):
        return []
    settings = runtime_of(db).settings
    listed = await rosters.moderators(db, policy.ANONYMOUS, community)
    return [i for i in (ap.actor_id(settings, m.account) for m in listed) if i]


async def follower_count(db: AsyncSession, community: Community) -> int:
    """How many active members the community has (not said for a private community)."""
    if not shows_content(community):
        return 0
    return await rosters.member_count(db, community)


async def webfinger_community(db: AsyncSession, resource: str) -> Community | None:
    """The community a WebFinger resource names: `acct:HANDLE@our.domain` (clients turn
    `!handle@domain` and `@handle@domain` into it) or the Group's URL; None when it names
    none (then it may name an account: handles and usernames never clash)."""
    from kith.federation.service import username_from_resource  # it imports posts.service

    resource = resource.strip()
    if resource.startswith(("https://", "http://")):
        return await local_community(db, resource)
    try:
        handle = username_from_resource(runtime_of(db).settings, resource)
    except KithError:
        return None
    return await communities.find_community(db, handle)


async def audiences(db: AsyncSession, post_ids: list[int]) -> dict[int, ap.Audience]:
    """The community each post is approved in (the first by handle, for a cross-post), as
    its Notes' `audience`: one query."""
    if not post_ids:
        return {}
    settings = runtime_of(db).settings
    rows = await db.execute(
        select(CommunityPost.post_id, Community.handle, CommunityPost.members_only)
        .join(Community, Community.id == CommunityPost.community_id)
        .where(
            CommunityPost.post_id.in_(post_ids),
            CommunityPost.state == CommunityPostState.APPROVED,
        )
        .order_by(CommunityPost.post_id, Community.handle_key)
    )
    out: dict[int, ap.Audience] = {}
    for post_id, handle, members_only in rows.all():
        if post_id not in out:
            group = group_ap.group_id_of(settings, handle)
            out[post_id] = ap.Audience(group, members_only=members_only)
    return out
