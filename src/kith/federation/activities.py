"""The activities Kith sends, as ActivityStreams 2 JSON: Update and Delete of posts, Undo of
a boost, Like, Follow, Accept, Reject, Block, their Undos, and Update and Delete of a
profile. Pure converters, like `activitypub.py` (which builds the Note, its Create and a
boost's Announce): they take rows and documents and never query.

Ids: every activity gets an id no other activity will ever have, because receivers take an
activity id once (a second Like with the id of an undone first one would be dropped as a
repeat). Where there is a row (a like, a block, a boost) its id is in the activity id;
otherwise a fresh `new_id()`. The fragment ids (`…/users/ana#likes/123`) are not served,
as with Mastodon's."""

from __future__ import annotations

from typing import Any

from kith.accounts.models import Account
from kith.config import Settings
from kith.db import new_id, utcnow
from kith.federation import uris
from kith.federation.activitypub import CONTEXT, Json, actor_id, addressing, iso
from kith.posts.models import Post


def _envelope(kind: str, activity_id: str, actor: str, obj: Any, **extra: Any) -> Json:
    return {
        "@context": CONTEXT,
        "id": activity_id,
        "type": kind,
        "actor": actor,
        "object": obj,
        **extra,
    }


def _inner(doc: Json) -> Json:
    return {k: v for k, v in doc.items() if k != "@context"}


# --- posts --------------------------------------------------------------------------------


def update_note(settings: Settings, note_doc: Json, author: Account) -> Json:
    """The `Update` of an edited post, carrying the whole new Note, addressed as the Note."""
    inner = _inner(note_doc)
    return _envelope(
        "Update",
        f"{inner['id']}#updates/{new_id()}",
        actor_id(settings, author),
        inner,
        published=inner.get("updated") or iso(utcnow()),
        to=inner["to"],
        cc=inner["cc"],
    )


def delete_note(
    settings: Settings, post: Post, author: Account, to: list[str], cc: list[str]
) -> Json:
    """The `Delete` of a post: its object a `Tombstone` with the post's id, addressed to the
    audience the post had."""
    note_id = uris.post_uri(settings, author.username, post.id)
    return _envelope(
        "Delete",
        f"{note_id}#delete",
        actor_id(settings, author),
        {"id": note_id, "type": "Tombstone", "formerType": "Note", "deleted": iso(utcnow())},
        to=to,
        cc=cc,
    )


def undo(settings: Settings, actor: Account, activity: Json) -> Json:
    """The `Undo` of one of the actor's activities (embedded, as Mastodon expects), addressed
    as the activity was."""
    inner = _inner(activity)
    extra = {k: inner[k] for k in ("to", "cc") if k in inner}
    return _envelope("Undo", f"{inner['id']}/undo", actor_id(settings, actor), inner, **extra)


# --- interactions -------------------------------------------------------------------------


def like(settings: Settings, liker: Account, like_id: int, post_uri: str, author_uri: str) -> Json:
    """A `Like` of a post (`post_uri`), sent to its author."""
    me = actor_id(settings, liker)
    return _envelope("Like", f"{me}#likes/{like_id}", me, post_uri, to=[author_uri])


def follow(settings: Settings, follower: Account, followee_uri: str) -> Json:
    """A `Follow` of a remote actor. Its id carries a fresh number: following again after
    an unfollow is a new activity."""
    me = actor_id(settings, follower)
    return _envelope("Follow", f"{me}#follows/{new_id()}", me, followee_uri, to=[followee_uri])


def embedded_follow(follow_id: str, follower_uri: str, followee_uri: str) -> Json:
    """A Follow as another activity (Undo, Accept, Reject) embeds it."""
    return {"id": follow_id, "type": "Follow", "actor": follower_uri, "object": followee_uri}


def answer_follow(settings: Settings, kind: str, me: Account, follow_activity: Json) -> Json:
    """`Accept` or `Reject` (`kind`) of a remote actor's Follow of `me`, embedding the Follow
    as received (its id, actor and object), addressed to its actor."""
    follower = follow_activity.get("actor")
    follower_uri = follower if isinstance(follower, str) else str((follower or {}).get("id", ""))
    obj = embedded_follow(str(follow_activity.get("id", "")), follower_uri, actor_id(settings, me))
    mine = actor_id(settings, me)
    return _envelope(kind, f"{mine}#{kind.lower()}s/{new_id()}", mine, obj, to=[follower_uri])


def block(settings: Settings, blocker: Account, block_id: int, target_uri: str) -> Json:
    """A `Block` of a remote actor (Mastodon sends it, so the other side can drop follows)."""
    me = actor_id(settings, blocker)
    return _envelope("Block", f"{me}#blocks/{block_id}", me, target_uri, to=[target_uri])


# --- profiles -----------------------------------------------------------------------------


def update_person(settings: Settings, account: Account, person_doc: Json) -> Json:
    """The `Update` of a profile, carrying the whole Person, to Public and the followers."""
    me = actor_id(settings, account)
    to, cc = addressing(settings, "public", account, [])
    return _envelope("Update", f"{me}#updates/{new_id()}", me, _inner(person_doc), to=to, cc=cc)


def delete_person(settings: Settings, account: Account) -> Json:
    """The `Delete` of a local actor (its object the actor's own id, as Mastodon sends it),
    to Public: receivers drop the account's posts and follows for good."""
    me = actor_id(settings, account)
    return _envelope("Delete", f"{me}#delete", me, me, to=[uris.AS_PUBLIC])


def flag(settings: Settings, report_id: int, objects: list[str], comment: str) -> Json:
    """A report forwarded to the reported account's server (Mastodon's shape): from the
    instance actor, so the reporter stays anonymous there; `object` is the account's actor id
    and the reported posts' ids; `content` the reporter's comment."""
    me = uris.instance_actor_uri(settings)
    return _envelope("Flag", f"{settings.base_url}/reports/{report_id}#flag", me, objects,
                     content=comment)  # fmt: skip
