"""Local things as ActivityStreams 2 JSON: actors, notes and questions, their activities and
collections. Pure converters: they take rows and views already allowed by `kith.policy` and
the settings, and never query."""

from __future__ import annotations

import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kith.accounts.models import Account
from kith.config import Settings
from kith.emojis.activitypub import emoji_tag
from kith.emojis.models import CustomEmoji
from kith.federation import uris
from kith.federation.models import ActorKey
from kith.media.models import MediaAttachment
from kith.posts.models import Post, Visibility
from kith.posts.presenter import PostView

Json = dict[str, Any]

AS_CONTEXT = "https://www.w3.org/ns/activitystreams"
SECURITY_CONTEXT = "https://w3id.org/security/v1"
# The extension terms Kith uses, named as Mastodon names them so its peers understand them.
EXTENSIONS: Json = {
    "manuallyApprovesFollowers": "as:manuallyApprovesFollowers",
    "sensitive": "as:sensitive",
    "Hashtag": "as:Hashtag",
    "toot": "http://joinmastodon.org/ns#",
    "featured": {"@id": "toot:featured", "@type": "@id"},
    "discoverable": "toot:discoverable",
    "indexable": "toot:indexable",
    "suspended": "toot:suspended",
    "blurhash": "toot:blurhash",
    "focalPoint": {"@container": "@list", "@id": "toot:focalPoint"},
    "votersCount": "toot:votersCount",
    "Emoji": "toot:Emoji",
    "alsoKnownAs": {"@id": "as:alsoKnownAs", "@type": "@id"},
    "movedTo": {"@id": "as:movedTo", "@type": "@id"},
    "schema": "http://schema.org#",
    "PropertyValue": "schema:PropertyValue",
    "value": "schema:value",
}
CONTEXT: list[Any] = [AS_CONTEXT, SECURITY_CONTEXT, EXTENSIONS]
OUTBOX_PAGE_SIZE = 20
REPLIES_PAGE_SIZE = 20
NETWORK_PAGE_SIZE = 40


def iso(moment: datetime) -> str:
    """xsd:dateTime in UTC, to the second, as the fediverse writes it."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def actor_id(settings: Settings, account: Account) -> str:
    """The ActivityPub id of any account: built for local ones, stored for remote ones."""
    if account.is_local:
        return uris.actor_uri(settings, account.username)
    return account.uri or ""


def post_id(settings: Settings, post: Post, author: Account) -> str:
    """The ActivityPub id of any post (a local post's stored `uri` is its HTML URL)."""
    if author.is_local:
        return uris.post_uri(settings, author.username, post.id)
    return post.uri or ""


def _media_type(path: str) -> str:
    return mimetypes.guess_type(path)[0] or "application/octet-stream"


def _media_url(settings: Settings, path: str) -> str:
    return f"{settings.base_url}/media/{path}"


def _image(settings: Settings, path: str | None) -> Json | None:
    if not path:
        return None
    return {"type": "Image", "mediaType": _media_type(path), "url": _media_url(settings, path)}


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


# --- actors -------------------------------------------------------------------------------


def public_key(key: ActorKey, owner: str) -> Json:
    return {"id": key.key_id, "owner": owner, "publicKeyPem": key.public_key_pem}


def person(
    settings: Settings,
    account: Account,
    key: ActorKey,
    *,
    suspended: bool,
    moved_to: str | None = None,
    emojis: Sequence[CustomEmoji] = (),
) -> Json:
    """The `Person` of a local account (`emojis`: those its name, bio and fields use, as
    `Emoji` tags). A suspended account is a stub that says so (as Mastodon does for a
    suspension that can still be lifted): its key and addresses stay, so peers keep the
    account, but nothing about the person is shown."""
    me = uris.actor_uri(settings, account.username)
    doc: Json = {
        "@context": CONTEXT,
        "id": me,
        "type": "Person",
        "preferredUsername": account.username,
        "name": account.display_name,
        "summary": account.bio_html,
        "url": uris.profile_url(settings, account.username),
        "inbox": uris.inbox_uri(settings, account.username),
        "outbox": uris.outbox_uri(settings, account.username),
        "followers": uris.followers_uri(settings, account.username),
        "following": uris.following_uri(settings, account.username),
        "featured": uris.featured_uri(settings, account.username),
        "endpoints": {"sharedInbox": uris.shared_inbox_uri(settings)},
        "manuallyApprovesFollowers": account.locked,
        "discoverable": account.discoverable,
        "indexable": account.discoverable,
        # The day only: when someone joined to the second is more than peers need to know.
        "published": account.created_at.strftime("%Y-%m-%dT00:00:00Z"),
        "attachment": [
            {
                "type": "PropertyValue",
                "name": f.get("name", ""),
                "value": f.get("value_html") or f.get("value", ""),
            }
            for f in (account.fields or [])
        ],
        "tag": [emoji_tag(settings, e) for e in emojis],
        "publicKey": public_key(key, me),
    }
    icon = _image(settings, account.avatar_path)
    if icon:
        doc["icon"] = icon
    header = _image(settings, account.header_path)
    if header:
        doc["image"] = header
    # Account migration (federation.moves): the old accounts this one vouches for, and where
    # this one went.
    if account.also_known_as:
        doc["alsoKnownAs"] = list(account.also_known_as)
    if moved_to:
        doc["movedTo"] = moved_to
    if suspended:
        doc.update(name="", summary="", attachment=[], tag=[], suspended=True)
        doc.pop("icon", None)
        doc.pop("image", None)
    return doc


def key_only_actor(settings: Settings, account: Account, key: ActorKey) -> Json:
    """What an unsigned GET of a local actor gets in authorized fetch mode: enough to verify
    the account's signatures and to address it (its key, inbox and username), nothing about
    the person (no name, bio, images, fields) and no collections — as Mastodon answers it in
    secure mode. A peer checking one of our signatures may fetch our key unsigned."""
    me = uris.actor_uri(settings, account.username)
    return {
        "@context": [AS_CONTEXT, SECURITY_CONTEXT],
        "id": me,
        "type": "Person",
        "preferredUsername": account.username,
        "inbox": uris.inbox_uri(settings, account.username),
        "endpoints": {"sharedInbox": uris.shared_inbox_uri(settings)},
        "publicKey": public_key(key, me),
    }


def instance_actor(settings: Settings, key: ActorKey) -> Json:
    """The instance's own `Application` actor: it signs fetches made on nobody's behalf."""
    me = uris.instance_actor_uri(settings)
    return {
        "@context": CONTEXT,
        "id": me,
        "type": "Application",
        "preferredUsername": settings.domain,
        "name": settings.domain,
        "url": f"{settings.base_url}/about",
        # What reaches the instance itself arrives at the shared inbox.
        "inbox": uris.shared_inbox_uri(settings),
        "outbox": f"{me}/outbox",
        "endpoints": {"sharedInbox": uris.shared_inbox_uri(settings)},
        "manuallyApprovesFollowers": True,
        "discoverable": False,
        "indexable": False,
        "publicKey": public_key(key, me),
    }


# --- posts --------------------------------------------------------------------------------


def addressing(
    settings: Settings, visibility: str, author: Account, mentioned: list[str]
) -> tuple[list[str], list[str]]:
    """`to` and `cc` for a post of this audience, as Mastodon addresses them:
    public: to Public, cc followers + mentioned; unlisted: to followers, cc Public + mentioned;
    followers-only: to followers, cc mentioned; direct: to the mentioned only."""
    followers = uris.followers_uri(settings, author.username)
    if visibility == Visibility.PUBLIC:
        return [uris.AS_PUBLIC], _unique([followers, *mentioned])
    if visibility == Visibility.UNLISTED:
        return [followers], _unique([uris.AS_PUBLIC, *mentioned])
    if visibility == Visibility.PRIVATE:
        return [followers], _unique(mentioned)
    return _unique(mentioned), []


def attachment(settings: Settings, media: MediaAttachment) -> Json:
    doc: Json = {
        "type": "Document",
        "mediaType": _media_type(media.file_path or ""),
        "url": _media_url(settings, media.file_path or ""),
        "name": media.description or None,
    }
    if media.blurhash:
        doc["blurhash"] = media.blurhash
    if media.width and media.height:
        doc["width"], doc["height"] = media.width, media.height
    if media.focus_x or media.focus_y:
        doc["focalPoint"] = [media.focus_x, media.focus_y]
    return doc


def _mention_name(settings: Settings, account: Account) -> str:
    return f"@{account.username}@{account.domain or settings.domain}"


def _mention_href(settings: Settings, account: Account) -> str:
    return actor_id(settings, account)


@dataclass(frozen=True)
class Audience:
    """The community a post is in (FEP-1b12 `audience`): its Group's id, and whether the post
    is for the community's members alone (written in a private community)."""

    group: str
    members_only: bool = False
    # A remote community's Group (Lemmy): it is addressed in `to` too, as Lemmy expects.
    remote: bool = False


def note(
    settings: Settings,
    view: PostView,
    *,
    in_reply_to: str | None,
    poll_counts: list[int] | None = None,
    with_context: bool = True,
    audience: Audience | None = None,
) -> Json:
    """A local post (not a boost) as a `Note`, or as a `Question` when it has a poll.
    `in_reply_to` is the parent's id (None for a top-level post or a deleted parent);
    `poll_counts` are the votes per option; `audience` the community it is in."""
    post, author = view.post, view.author
    mentioned = [_mention_href(settings, a) for a in view.mentions]
    to, cc = addressing(settings, post.visibility, author, mentioned)
    if audience is not None and audience.members_only:
        # A private community's post is for its members (the Group's followers) alone.
        to, cc = [f"{audience.group}/followers"], []
    elif audience is not None and audience.remote and audience.group not in to:
        to = [*to, audience.group]
    doc: Json = {"@context": CONTEXT} if with_context else {}
    doc |= {
        "id": post_id(settings, post, author),
        "type": "Note",
        "attributedTo": actor_id(settings, author),
        "content": post.content_html,
        "summary": post.spoiler_text or None,
        "sensitive": post.sensitive,
        "published": iso(post.created_at),
        "inReplyTo": in_reply_to,
        "url": uris.post_url(settings, author.username, post.id),
        "to": to,
        "cc": cc,
        "tag": [
            {
                "type": "Mention",
                "href": _mention_href(settings, a),
                "name": _mention_name(settings, a),
            }
            for a in view.mentions
        ]
        + [
            {"type": "Hashtag", "href": uris.tag_url(settings, name), "name": f"#{name}"}
            for name in view.tags
        ]
        + [emoji_tag(settings, e) for e in view.emojis if e.is_local],
        "attachment": [attachment(settings, m) for m in view.media if m.file_path],
    }
    if audience is not None:
        doc["audience"] = audience.group
    if post.language:
        doc["contentMap"] = {post.language: post.content_html}
    doc |= interaction_collections(settings, post, author)
    if post.edited_at is not None:
        doc["updated"] = iso(post.edited_at)
    if view.poll is not None:
        poll = view.poll
        counts = poll_counts or [0] * len(poll.options)
        doc["type"] = "Question"
        doc["anyOf" if poll.multiple else "oneOf"] = [
            {"type": "Note", "name": title, "replies": {"type": "Collection", "totalItems": n}}
            for title, n in zip(poll.options, counts, strict=False)
        ]
        doc["endTime"] = iso(poll.expires_at)
        doc["votersCount"] = poll.voters_count
        if poll.expired:
            doc["closed"] = iso(poll.expires_at)
    return doc


def interaction_collections(settings: Settings, post: Post, author: Account) -> Json:
    """A local post's `replies` (by reference: the pages are fetched), `likes` and `shares`
    (counts only, as Mastodon 4 publishes them: who liked or boosted is not shown)."""
    replies = uris.replies_uri(settings, author.username, post.id)
    return {
        "replies": {"id": replies, "type": "OrderedCollection", "first": f"{replies}?page=true"},
        "likes": counted_collection(
            uris.likes_uri(settings, author.username, post.id), post.likes_count, inline=True
        ),
        "shares": counted_collection(
            uris.shares_uri(settings, author.username, post.id), post.reblogs_count, inline=True
        ),
    }


def create(settings: Settings, note_doc: Json, view: PostView) -> Json:
    """The `Create` that published a post, wrapping its note (without the note's @context)."""
    post, author = view.post, view.author
    inner = {k: v for k, v in note_doc.items() if k != "@context"}
    return {
        "@context": CONTEXT,
        "id": uris.post_activity_uri(settings, author.username, post.id),
        "type": "Create",
        "actor": actor_id(settings, author),
        "published": inner["published"],
        "to": inner["to"],
        "cc": inner["cc"],
        "object": inner,
    }


def announce(settings: Settings, view: PostView) -> Json:
    """The `Announce` of a boost (`view.reblog` is the boosted post): to Public or to
    followers as the boost's audience says, cc the original's author."""
    boost, booster = view.post, view.author
    original = view.shown
    original_author = actor_id(settings, original.author)
    to, cc = addressing(settings, boost.visibility, booster, [original_author])
    return {
        "@context": CONTEXT,
        "id": uris.post_activity_uri(settings, booster.username, boost.id),
        "type": "Announce",
        "actor": actor_id(settings, booster),
        "published": iso(boost.created_at),
        "to": to,
        "cc": cc,
        "object": post_id(settings, original.post, original.author),
    }


# --- collections --------------------------------------------------------------------------


def ordered_collection(
    collection_id: str, total: int, first: str | None = None, items: list[Any] | None = None
) -> Json:
    """An `OrderedCollection`: with its first page's URL, or (short ones) its items inline."""
    doc: Json = {
        "@context": CONTEXT,
        "id": collection_id,
        "type": "OrderedCollection",
        "totalItems": total,
    }
    if first is not None:
        doc["first"] = first
    if items is not None:
        doc["orderedItems"] = items
    return doc


def counted_collection(collection_id: str, total: int, *, inline: bool = False) -> Json:
    """A `Collection` that says how many items it has and lists none (likes, shares)."""
    doc: Json = {} if inline else {"@context": CONTEXT}
    return doc | {"id": collection_id, "type": "Collection", "totalItems": total}


def collection_page(
    page_id: str, part_of: str, items: list[Any], next_page: str | None, prev_page: str | None
) -> Json:
    doc: Json = {
        "@context": CONTEXT,
        "id": page_id,
        "type": "OrderedCollectionPage",
        "partOf": part_of,
        "orderedItems": items,
    }
    if next_page:
        doc["next"] = next_page
    if prev_page:
        doc["prev"] = prev_page
    return doc
