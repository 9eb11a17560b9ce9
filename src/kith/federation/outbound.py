"""What local actions send to other servers, and to whom. The services call one function
here, in their transaction, after their rows are written and before they commit; the
deliveries are then jobs committed with the change (`delivery.deliver`).

Who receives a post's activities (Create, Update, Delete, a boost's Announce and its Undo)
is asked of `kith.policy`: the remote accounts among the post's candidates — the author's
followers (not for direct posts), the mentioned accounts, the author of the post it
replies to (public and unlisted posts, as Mastodon) and, for a boost, the original's
author — that the policy lets see the post. So a followers-only post reaches only the
servers of followers and mentioned people, a direct post only the mentioned people's. A
post with no remote reader costs one query and writes nothing.

Activities about one remote person (Like, Follow, Accept, Reject, Block and their Undos) go
to that person's own inbox, as Mastodon sends them."""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from sqlalchemy import BigInteger, CompoundSelect, bindparam, func, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.communities.models import Community, CommunityPost
from kith.db_plans import Step
from kith.emojis import service as emoji_service
from kith.federation import activities, tombstones, uris
from kith.federation import activitypub as ap
from kith.federation.delivery import deliver, inboxes_of, inboxes_of_followers
from kith.federation.models import ActorKey, OutboundActivity, RemoteActor
from kith.graph.models import Block, Follow, FollowRequest
from kith.posts import presenter
from kith.posts.models import Like, Mention, Post, Visibility
from kith.runtime import runtime_of

log = logging.getLogger(__name__)

Json = dict[str, Any]
_PREFERRED_INBOX = func.coalesce(RemoteActor.shared_inbox_url, RemoteActor.inbox_url)


# --- audiences ----------------------------------------------------------------------------


def _id_param(name: str) -> Any:
    return bindparam(name, type_=BigInteger())


@cache
def _post_inboxes_statement() -> CompoundSelect[Any]:
    """The inboxes of a post's remote readers, built once per process with everything bound
    (building the policy's clause tree costs milliseconds, running it far less). The
    candidates: the mentioned accounts (`mentions_of`), the followers (`followers_of`, 0 for
    a direct post), the replied-to author (`replied_to`) and a boost's original author
    (`reblog_of`); the policy then keeps those who may see the post (`post_id`). With them,
    in the same statement, the Groups of the remote communities the post is in
    (`in_communities`), which pass it on to their members."""
    candidates = union(
        select(Mention.account_id.label("account_id")).where(
            Mention.post_id == _id_param("mentions_of")
        ),
        select(Follow.follower_id).where(Follow.followee_id == _id_param("followers_of")),
        select(Account.id).where(Account.id == _id_param("replied_to")),
        select(Post.account_id).where(Post.id == _id_param("reblog_of")),
    ).subquery()
    readers = select(_PREFERRED_INBOX.label("inbox")).where(
        RemoteActor.account_id.in_(select(candidates.c.account_id)),
        policy.account_not_suspended_clause(RemoteActor.account_id),
        policy.reader_of_post_clause(RemoteActor.account_id, _id_param("post_id")),
    )
    groups = (
        select(_PREFERRED_INBOX)
        .join(Community, Community.actor_id == RemoteActor.account_id)
        .join(CommunityPost, CommunityPost.community_id == Community.id)
        .where(CommunityPost.post_id == _id_param("in_communities"))
    )
    return union(readers, groups)  # each inbox once


async def post_inboxes(db: AsyncSession, post: Post) -> set[str]:
    """The inboxes (shared when advertised) of the remote accounts that may see this post
    or boost, and of the remote communities' Groups it is in (a public or unlisted post,
    not a boost: see `remote_groups`): one query."""
    step = post_inboxes_step(post)
    rows = await db.execute(step.statement, step.values)
    return {inbox for inbox in rows.scalars() if inbox}


def post_inboxes_step(post: Post) -> Step:
    """`post_inboxes`'s query as a plan's step (`kith.db_plans`): its rows' first column."""
    is_boost = post.reblog_of_id is not None
    replied_to = post.in_reply_to_account_id
    open_to_all = post.visibility in (Visibility.PUBLIC, Visibility.UNLISTED)
    params = {
        "post_id": post.id,
        "mentions_of": 0 if is_boost else post.id,
        "followers_of": 0 if post.visibility == Visibility.DIRECT else post.account_id,
        "replied_to": replied_to if replied_to is not None and open_to_all else 0,
        "reblog_of": post.reblog_of_id or 0,
        "in_communities": post.id if open_to_all and not is_boost else 0,
    }
    return Step(_post_inboxes_statement(), params, rows=True)


async def personal_inbox(db: AsyncSession, account: Account) -> str | None:
    """A remote account's own inbox (None for local accounts and unknown endpoints)."""
    if account.is_local:
        return None
    return await db.scalar(
        select(RemoteActor.inbox_url).where(RemoteActor.account_id == account.id)
    )


# --- posts --------------------------------------------------------------------------------


async def _local_author(db: AsyncSession, post: Post) -> Account | None:
    author = await db.get(Account, post.account_id)
    return author if author is not None and author.is_local else None


async def _note(db: AsyncSession, post: Post, author: Account) -> Json:
    # Imported here: federation.service imports posts.service, which calls this module.
    from kith.federation.service import note_parts

    settings = runtime_of(db).settings
    (view,) = await presenter.present(db, policy.Viewer(author.id), [post])
    parts = (await note_parts(db, settings, [view]))[post.id]
    return ap.note(
        settings,
        view,
        in_reply_to=parts.in_reply_to,
        poll_counts=parts.poll_counts,
        audience=parts.audience,
    )


async def _view(db: AsyncSession, post: Post, author: Account) -> presenter.PostView:
    (view,) = await presenter.present(db, policy.Viewer(author.id), [post])
    return view


async def post_created(db: AsyncSession, post: Post) -> None:
    """Send the `Create` of a new local post (or the `Announce` of a boost) to its remote
    readers."""
    author = await _local_author(db, post)
    if author is not None:
        await send_created(db, post, author, await post_inboxes(db, post))


async def send_created(db: AsyncSession, post: Post, author: Account, inboxes: set[str]) -> None:
    """`post_created` once the inboxes are known (`post_inboxes_step`)."""
    if not inboxes:
        return
    settings = runtime_of(db).settings
    view = await _view(db, post, author)
    if post.reblog_of_id is not None:
        await deliver(db, author, ap.announce(settings, view), inboxes)
        return
    note = await _note(db, post, author)
    await deliver(db, author, ap.create(settings, note, view), inboxes)


async def post_edited(db: AsyncSession, post: Post) -> None:
    """Send the `Update` of an edited local post, with the whole new Note."""
    author = await _local_author(db, post)
    if author is None or post.reblog_of_id is not None:
        return
    inboxes = await post_inboxes(db, post)
    if inboxes:
        note = await _note(db, post, author)
        activity = activities.update_note(runtime_of(db).settings, note, author)
        await deliver(db, author, activity, inboxes)


async def post_deleting(db: AsyncSession, post: Post) -> None:
    """Send the `Delete` (a Tombstone) of a local post, or the `Undo` of a boost, to the
    readers it had, and remember the post was here (its id answers 410 Gone from now on:
    `federation.tombstones`). Call it before the post's rows are deleted."""
    author = await _local_author(db, post)
    if author is None:
        return
    await tombstones.remember_posts(db, runtime_of(db).settings, author, [post])
    inboxes = await post_inboxes(db, post)
    # Imported here: group_moderation reaches posts.service through federation.groups.
    from kith.federation import group_moderation

    held = [] if post.reblog_of_id else await group_moderation.communities_holding(db, post)
    if not inboxes and not held:
        return
    settings = runtime_of(db).settings
    if post.reblog_of_id is not None:
        announce = ap.announce(settings, await _view(db, post, author))
        await deliver(db, author, activities.undo(settings, author, announce), inboxes)
        return
    note = await _note(db, post, author)
    activity = activities.delete_note(settings, post, author, note["to"], note["cc"])
    await deliver(db, author, activity, inboxes)
    # Its communities' Groups pass the Delete on to their members (FEP-1b12).
    await group_moderation.forward_delete(db, held, activity, str(note["id"]))


# --- likes --------------------------------------------------------------------------------


async def _like_parts(
    db: AsyncSession, account_id: int, post: Post
) -> tuple[Account, Like, str, str] | None:
    """(liker, like row, post id, author's inbox) when a local like must be sent."""
    author = await db.get(Account, post.account_id)
    liker = await db.get(Account, account_id)
    like_row = await db.get(Like, (account_id, post.id))
    if author is None or author.is_local or liker is None or not liker.is_local:
        return None
    inbox = await personal_inbox(db, author)
    if like_row is None or inbox is None or not post.uri:
        return None
    return liker, like_row, post.uri, inbox


async def liked(db: AsyncSession, account_id: int, post: Post) -> None:
    """Send the `Like` of a remote post to its author (after the Like row is written)."""
    parts = await _like_parts(db, account_id, post)
    if parts is not None:
        liker, like_row, post_uri, inbox = parts
        author = await db.get(Account, post.account_id)
        assert author is not None
        settings = runtime_of(db).settings
        activity = activities.like(settings, liker, like_row.id, post_uri, author.uri or "")
        await deliver(db, liker, activity, [inbox])


async def unliking(db: AsyncSession, account_id: int, post: Post) -> None:
    """Send the `Undo` of a like of a remote post. Call it before the Like row is deleted."""
    parts = await _like_parts(db, account_id, post)
    if parts is not None:
        liker, like_row, post_uri, inbox = parts
        author = await db.get(Account, post.account_id)
        assert author is not None
        settings = runtime_of(db).settings
        like = activities.like(settings, liker, like_row.id, post_uri, author.uri or "")
        await deliver(db, liker, activities.undo(settings, liker, like), [inbox])


# --- follows ------------------------------------------------------------------------------


async def _local_and_remote(
    db: AsyncSession, local_id: int, remote_id: int
) -> tuple[Account, Account, str] | None:
    me = await db.get(Account, local_id)
    other = await db.get(Account, remote_id)
    if me is None or other is None or not me.is_local or other.is_local or not other.uri:
        return None
    inbox = await personal_inbox(db, other)
    return (me, other, inbox) if inbox else None


async def follow(db: AsyncSession, follower_id: int, followee_id: int) -> str | None:
    """Send a `Follow` of a remote account; returns its activity id (the remote side's
    Accept or Reject names it), or None when nothing is sent."""
    parts = await _local_and_remote(db, follower_id, followee_id)
    if parts is None:
        return None
    me, other, inbox = parts
    activity = activities.follow(runtime_of(db).settings, me, other.uri or "")
    await deliver(db, me, activity, [inbox])
    return str(activity["id"])


async def last_follow_id(db: AsyncSession, me: Account, followee_uri: str) -> str | None:
    """The id of the last Follow `me` sent to `followee_uri`, while it is still stored."""
    prefix = f"{ap.actor_id(runtime_of(db).settings, me)}#follows/"
    rows = await db.execute(
        select(OutboundActivity.activity_id, OutboundActivity.document)
        .where(
            OutboundActivity.actor_account_id == me.id,
            OutboundActivity.activity_id.startswith(prefix, autoescape=True),
        )
        .order_by(OutboundActivity.id.desc())
        .limit(200)
    )
    for activity_id, document in rows.all():
        if isinstance(document, dict) and document.get("object") == followee_uri:
            return str(activity_id)
    return None


async def unfollowing(db: AsyncSession, follower_id: int, followee_id: int) -> None:
    """Send the `Undo` of a Follow of a remote account (accepted or pending). Call it before
    the Follow / FollowRequest rows are deleted; nothing is sent when there was none."""
    parts = await _local_and_remote(db, follower_id, followee_id)
    if parts is None:
        return
    me, other, inbox = parts
    pair = (follower_id, followee_id)
    if await db.get(Follow, pair) is None and await db.get(FollowRequest, pair) is None:
        return
    settings = runtime_of(db).settings
    mine = ap.actor_id(settings, me)
    follow_id = await last_follow_id(db, me, other.uri or "") or f"{mine}#follows/{other.id}"
    inner = activities.embedded_follow(follow_id, mine, other.uri or "")
    undo = activities.undo(settings, me, {**inner, "to": [other.uri]})
    await deliver(db, me, undo, [inbox])


async def send_accept(db: AsyncSession, local_account: Account, follow_activity: Json) -> None:
    """Accept a remote actor's Follow of `local_account` (the Follow as received)."""
    await _answer(db, "Accept", local_account, follow_activity)


async def send_reject(db: AsyncSession, local_account: Account, follow_activity: Json) -> None:
    """Reject a remote actor's Follow of `local_account` (the Follow as received)."""
    await _answer(db, "Reject", local_account, follow_activity)


async def _answer(db: AsyncSession, kind: str, me: Account, follow_activity: Json) -> None:
    activity = activities.answer_follow(runtime_of(db).settings, kind, me, follow_activity)
    follower_uri = activity["object"]["actor"]
    inbox = await db.scalar(
        select(RemoteActor.inbox_url)
        .join(Account, Account.id == RemoteActor.account_id)
        .where(Account.uri == follower_uri)
    )
    if inbox is None or not me.is_local:
        log.warning("no inbox known for %s: %s not sent", follower_uri, kind)
        return
    await deliver(db, me, activity, [inbox])


async def follower_removing(db: AsyncSession, me_id: int, follower_id: int) -> None:
    """Tell a remote follower they were removed (a `Reject` of their Follow, as Mastodon
    does). Call it before the Follow row is deleted."""
    parts = await _local_and_remote(db, me_id, follower_id)
    if parts is None or await db.get(Follow, (follower_id, me_id)) is None:
        return
    me, other, _ = parts
    follow_doc = {"id": f"{other.uri}#follows/{me.id}", "actor": other.uri}
    await send_reject(db, me, follow_doc)


# --- blocks -------------------------------------------------------------------------------


async def blocked(db: AsyncSession, me_id: int, target_id: int) -> None:
    """Send a `Block` of a remote account (after the Block row is written)."""
    parts = await _local_and_remote(db, me_id, target_id)
    row = await db.get(Block, (me_id, target_id))
    if parts is None or row is None:
        return
    me, other, inbox = parts
    activity = activities.block(runtime_of(db).settings, me, row.id, other.uri or "")
    await deliver(db, me, activity, [inbox])


async def unblocking(db: AsyncSession, me_id: int, target_id: int) -> None:
    """Send the `Undo` of a Block of a remote account. Call it before the row is deleted."""
    parts = await _local_and_remote(db, me_id, target_id)
    row = await db.get(Block, (me_id, target_id))
    if parts is None or row is None:
        return
    me, other, inbox = parts
    settings = runtime_of(db).settings
    block = activities.block(settings, me, row.id, other.uri or "")
    await deliver(db, me, activities.undo(settings, me, block), [inbox])


# --- profiles -----------------------------------------------------------------------------


async def profile_updated(db: AsyncSession, account: Account) -> None:
    """Send `Update(Person)` to the remote followers of a local account. The key is read, not
    made: an account nobody fetched yet has no key and no remote copy to update."""
    if not account.is_local:
        return
    inboxes = await inboxes_of_followers(db, account)
    if not inboxes:
        return
    settings = runtime_of(db).settings
    key = await db.scalar(
        select(ActorKey).where(ActorKey.key_id == uris.key_id(settings, account.username))
    )
    if key is None:
        log.info("no key yet for %s: Update(Person) not sent", account.username)
        return
    state = await policy.actor_state(db, account)
    moved = await db.get(Account, account.moved_to_id) if account.moved_to_id else None
    person = ap.person(
        settings,
        account,
        key,
        suspended=state is policy.ActorState.SUSPENDED,
        moved_to=ap.actor_id(settings, moved) if moved else None,
        emojis=(await emoji_service.for_accounts(db, [account])).get(account.id, ()),
    )
    await deliver(db, account, activities.update_person(settings, account, person), inboxes)


def _known_to_statement(account_id: int) -> CompoundSelect[Any]:
    """The remote accounts that know a local account: its followers and the accounts it
    follows, both ways of a pending follow request, the authors of the posts it replied to,
    liked or boosted, and the accounts its posts mentioned."""
    mine = select(Post.id).where(Post.account_id == account_id).scalar_subquery()
    return union(
        select(Follow.follower_id.label("account_id")).where(Follow.followee_id == account_id),
        select(Follow.followee_id).where(Follow.follower_id == account_id),
        select(FollowRequest.follower_id).where(FollowRequest.followee_id == account_id),
        select(FollowRequest.followee_id).where(FollowRequest.follower_id == account_id),
        select(Post.in_reply_to_account_id).where(
            Post.account_id == account_id, Post.in_reply_to_account_id.is_not(None)
        ),
        select(Post.account_id).where(
            Post.id.in_(
                select(Like.post_id)
                .where(Like.account_id == account_id)
                .union(
                    select(Post.reblog_of_id).where(
                        Post.account_id == account_id, Post.reblog_of_id.is_not(None)
                    )
                )
                .scalar_subquery()
            )
        ),
        select(Mention.account_id).where(Mention.post_id.in_(mine)),
    )


async def account_deleted(db: AsyncSession, account: Account) -> None:
    """Send `Delete` of a local actor to the servers that know it: those of its remote
    followers and followees, and of the remote accounts it asked to follow, replied to,
    liked, boosted or mentioned. Call it before the account's rows go. The deliveries are
    signed when they run, with the account's key, and the stored activity and the key are
    deleted with the Account row (foreign-key cascade): a deletion keeps that row (as the
    account's tombstone), or nothing would be sent."""
    if not account.is_local:
        return
    known = _known_to_statement(account.id).subquery()
    rows = await db.execute(
        select(_PREFERRED_INBOX)
        .join(Account, Account.id == RemoteActor.account_id)
        .where(
            RemoteActor.account_id.in_(select(known.c.account_id)),
            Account.suspended_at.is_(None),
        )
        .distinct()
    )
    inboxes = {inbox for inbox in rows.scalars() if inbox}
    if inboxes:
        activity = activities.delete_person(runtime_of(db).settings, account)
        await deliver(db, account, activity, inboxes)


async def report_forwarded(
    db: AsyncSession, report_id: int, target: Account, posts: list[Post], comment: str
) -> bool:
    """Send a report about a remote account to its server (`Flag` from the instance actor),
    in the caller's transaction. False when that server has no inbox we know."""
    if target.is_local or not target.uri:
        return False
    inboxes = await inboxes_of(db, [target])
    objects = [target.uri, *(p.uri for p in posts if p.uri)]
    activity = activities.flag(runtime_of(db).settings, report_id, objects, comment)
    return await deliver(db, None, activity, inboxes) > 0
