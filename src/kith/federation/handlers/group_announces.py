"""What a remote community's Group announces (FEP-1b12, as Lemmy and Kith send it): the
community's posts, their edits and deletions, and likes of them.

The Group's signature proves only that the Group passes something on, never what its author
said: the content embedded in the Announce is never trusted. Each inner activity is taken as
if its own actor had sent it, after checking it against its origin:

- `Create` / `Update` of a post: the inner activity must pass the origin rule, the post is
  fetched from its own server and must be attributed to the inner actor; it is stored as
  theirs, in the community (a thread, or a reply in its thread), approved — the community's
  moderators decided on its server. `Announce` of the post itself (Kith's Groups send it
  beside the Create, for Mastodon) takes the same path, so the post is stored once.
- `Delete`: of a post of this community only. When the post is gone from its server and the
  inner actor is its author, it is deleted here; otherwise the Group's moderators removed it
  from the community, and here it leaves the community's feeds (the Group speaks for its own
  community, never for the post elsewhere).
- `Like` and `Undo(Like)`: count only on our posts, and only once the activity is fetched
  from its actor's server and says the same. `Dislike` is not counted here.
- Moderation — `Lock`, pins (`Add` / `Remove` to `featured`), removals and their `Undo`,
  bans of our people (`Block` with the Group as `target`) and their `Undo` — counts only
  when the moderator is on the Group's own host (`group_moderation_announced`).

A community post is never stored as a boost by the Group: it shows in the community (its
page, "My communities" and its members' Home), attributed to its author."""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.communities import posting
from kith.communities.models import Community, CommunityPost
from kith.federation.actors import ActorFetchFailed, fetch_json, signed_get
from kith.federation.handlers import group_moderation_announced as moderation
from kith.federation.handlers.common import ready_to_fetch
from kith.federation.local_objects import account_by_uri, is_local, local_post, post_by_uri
from kith.federation.models import InboxItem
from kith.federation.origin import OriginViolation, check_origin, first_id, origin_of, type_of
from kith.federation.remote_accounts import fetch_account
from kith.federation.remote_posts import (
    Fetched,
    Refused,
    author_of,
    delete_note,
    fetch_object,
    fetch_thread,
    is_tombstoned,
    store_fetched,
    store_note,
    update_note,
)
from kith.net import FetchError
from kith.posts import service as posts_service
from kith.posts.models import Post

log = logging.getLogger(__name__)

Json = dict[str, Any]
# Activities a Group may announce; any other announced object is taken as a post.
ACTIVITY_TYPES = frozenset(
    {
        "Create",
        "Update",
        "Delete",
        "Like",
        "Dislike",
        "Undo",
        "Announce",
        "Add",
        "Remove",
        "Block",
        "Lock",
        "Follow",
        "Flag",
    }
)
GONE_TYPES = frozenset({"Tombstone"})


def announces_an_activity(activity: Json) -> bool:
    """Is the announced object an activity (Lemmy's form) rather than a post?"""
    obj = activity.get("object")
    return isinstance(obj, dict) and type_of(obj) in ACTIVITY_TYPES


def wanted(activity: Json, members_here: bool) -> bool:
    """Is an Announce by a remote community's Group for us? Everything, while someone here
    is in it; a ban (or its lifting) of one of our people even when nobody is left in it —
    the banned person may have been its only member here, their membership ended first by
    the Group's Reject of their Follow."""
    obj = activity.get("object")
    if members_here:
        return True
    return isinstance(obj, dict) and moderation.concerns_a_person(obj)


async def receive(db: AsyncSession, item: InboxItem, community: Community) -> str:
    """Act on an Announce by the Group of `community` (people here are in it, or it bans
    or unbans one of ours: `wanted`)."""
    obj = item.activity.get("object")
    if not announces_an_activity(item.activity):
        uri = first_id(obj)
        if uri is None:
            return "ignored: an Announce of nothing"
        return await _post(db, community, uri, author_uri=None, edit=False)
    assert isinstance(obj, dict)
    kind = type_of(obj)
    inner_actor = first_id(obj.get("actor"))
    if inner_actor is None or not origin_of(inner_actor):
        return "refused: the announced activity has no actor"
    if kind in ("Create", "Update"):
        try:
            check_origin(obj)
        except OriginViolation as exc:
            return f"refused: the announced activity: {exc}"
        uri = first_id(obj.get("object"))
        if uri is None:
            return "ignored: the announced activity has no object"
        return await _post(db, community, uri, author_uri=inner_actor, edit=kind == "Update")
    if kind == "Delete":
        return await _deleted(db, community, obj, inner_actor, first_id(obj.get("object")))
    if moderation.is_moderation(obj):
        group = await db.get(Account, community.actor_id) if community.actor_id else None
        if group is None:
            return "ignored: the community's Group is gone"
        return await moderation.receive(db, community, group, obj)
    if kind == "Like":
        return await _liked(db, obj, inner_actor, undo=False)
    if kind == "Undo" and type_of(obj.get("object")) == "Like":
        return await _liked(db, obj, inner_actor, undo=True)
    if kind == "Dislike":
        return "ignored: dislikes are not counted here"
    return f"ignored: Announce of {kind} is not handled yet"


# --- posts --------------------------------------------------------------------------------


async def _in_community(db: AsyncSession, community: Community, post_id: int) -> bool:
    return await db.get(CommunityPost, (community.id, post_id)) is not None


async def _where(db: AsyncSession, community: Community, doc: Json) -> posting.Addressed | str:
    """Where a post the Group announced goes: a thread of the community, or a reply in its
    thread (whose root the Group vouches for as being in its community)."""
    parent_uri = first_id(doc.get("inReplyTo"))
    if parent_uri is None:
        return posting.Addressed(threads=[community])
    parent = await post_by_uri(db, parent_uri)
    if parent is None:
        return "ignored: a reply to a post that could not be fetched"
    root_id = parent.thread_root_id or parent.id
    if not await _in_community(db, community, root_id):
        root = await db.get(Post, root_id)
        if root is not None:
            await posting.attach(db, root, posting.Addressed(threads=[community]))
    return posting.Addressed(thread_root_id=root_id, replies=[(community, False)])


async def _post(
    db: AsyncSession, community: Community, uri: str, *, author_uri: str | None, edit: bool
) -> str:
    """Store (or, for an Update, edit) the post `uri` as a post of the community, fetched
    from its own server; `author_uri`: who the inner activity says wrote it."""
    if is_local(db, uri):
        post = await local_post(db, uri)
        if post is not None and await _in_community(db, community, post.id):
            return "ignored: our own post, passed on by its community"
        return "ignored: not a post of this community"
    if author_uri is not None and origin_of(author_uri) != origin_of(uri):
        return "refused: the announced post is not on its author's host"
    if await is_tombstoned(db, uri):
        return "ignored: deleted before it arrived"
    await ready_to_fetch(db)
    fetched = Fetched()
    doc = await fetch_object(db, uri, fetched)
    if doc is None or doc.get("id") != uri:
        return "ignored: the announced post could not be fetched from its server"
    if author_uri is not None and author_of(doc) != author_uri:
        return "refused: the announced post is not by the announced activity's actor"
    await fetch_thread(db, doc, fetched)
    await store_fetched(db, fetched)
    author = await account_by_uri(db, author_of(doc) or "")
    if author is None or author.is_local:
        return "ignored: the post's author could not be had"
    existing = await post_by_uri(db, uri)
    if existing is not None:
        if existing.account_id != author.id or existing.reblog_of_id is not None:
            return "refused: the object id is already used by another post"
        outcome = ""
        if edit:
            try:
                outcome = await update_note(db, author, doc)
            except Refused as exc:
                return f"refused: {exc}"
        if await _in_community(db, community, existing.id):
            return outcome if edit else "ignored: already in the community"
        where = await _where(db, community, doc)
        if isinstance(where, str):
            return where
        await posting.attach(db, existing, where)
        return "added to the community"
    where = await _where(db, community, doc)
    if isinstance(where, str):
        return where
    try:
        post = await store_note(db, author, doc, wanted=True, communities=where)
    except Refused as exc:
        return f"refused: {exc}"
    return "stored in a remote community" if post is not None else "ignored: not stored"


async def _gone(db: AsyncSession, uri: str) -> bool:
    """Is the object deleted on its own server (404, 410 or a Tombstone)?"""
    try:
        fetched = await signed_get(db, uri, accept="application/activity+json")
    except FetchError:
        return False
    if fetched.status in (404, 410):
        return True
    if fetched.status != 200:
        return False
    try:
        doc = json.loads(fetched.content)
    except (ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and type_of(doc) in GONE_TYPES


async def _deleted(
    db: AsyncSession, community: Community, delete: Json, inner_actor: str, uri: str | None
) -> str:
    """A post of the community deleted by its author (gone from its server), or removed
    from the community by its moderators (who must be on the Group's host)."""
    post = await post_by_uri(db, uri or "")
    if post is None or uri is None:
        return "ignored: not stored here"
    row = await db.get(CommunityPost, (community.id, post.id))
    if row is None:
        return "refused: a Delete of a post that is not in this community"
    author = await db.get(Account, post.account_id)
    if author is None:
        return "ignored: not stored here"
    await ready_to_fetch(db)
    if not author.is_local and author.uri == inner_actor and await _gone(db, uri):
        try:
            return await delete_note(db, author, uri)
        except Refused as exc:  # pragma: no cover - the author was checked above
            return f"refused: {exc}"
    group = await db.get(Account, community.actor_id) if community.actor_id else None
    if group is None:
        return "ignored: the community's Group is gone"
    return await moderation.removed(db, community, group, delete, row, author.id)


# --- likes --------------------------------------------------------------------------------


def _liked_post_id(like: Any) -> str | None:
    return first_id(like.get("object")) if isinstance(like, dict) else None


def _same_activity(fetched: Json, announced: Json, inner_actor: str, *, undo: bool) -> bool:
    """Does the activity its actor's server serves say what the Group passed on?"""
    if (
        fetched.get("id") != announced.get("id")
        or type_of(fetched) != type_of(announced)
        or first_id(fetched.get("actor")) != inner_actor
    ):
        return False
    if not undo:
        return _liked_post_id(fetched) == _liked_post_id(announced)
    like, fetched_like = announced.get("object"), fetched.get("object")
    if isinstance(fetched_like, str):  # the Undo names the Like by its id
        return fetched_like == first_id(like)
    return _liked_post_id(fetched_like) == _liked_post_id(like)


async def _liked(db: AsyncSession, activity: Json, inner_actor: str, *, undo: bool) -> str:
    """A Like (or its Undo) of one of our posts, believed once its actor's server serves the
    same activity at its id."""
    like = activity.get("object") if undo else activity
    post = await local_post(db, _liked_post_id(like) or "")
    activity_id = first_id(activity.get("id"))
    if post is None:
        return "ignored: likes count only on our posts"
    if activity_id is None or origin_of(activity_id) != origin_of(inner_actor):
        return "refused: the announced activity is not on its actor's host"
    await ready_to_fetch(db)
    try:
        _, doc = await fetch_json(db, activity_id)
        if not _same_activity(doc, activity, inner_actor, undo=undo):
            return "refused: the announced activity is not what its server serves"
        actor = await fetch_account(db, inner_actor)
    except ActorFetchFailed as exc:
        log.info("federation: announced like %s not verified: %s", activity_id[:200], exc)
        return "ignored: the announced activity could not be fetched from its server"
    if undo:
        await posts_service.remove_like(db, actor.id, post)
        return "unliked"
    from kith.federation.handlers.interactions import record_like  # it imports this module

    return await record_like(db, actor, post)
