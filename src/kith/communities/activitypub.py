"""A community as ActivityStreams 2 JSON (FEP-1b12): its `Group` actor, the WebFinger answer
that finds it, and the `Announce` activities with which it passes its posts on to its
followers. Pure converters: `federation.groups` decides what they may show."""

from __future__ import annotations

import html
import mimetypes
from datetime import datetime
from typing import Any

from kith.communities.models import Community, MembershipModel
from kith.config import Settings
from kith.db import new_id
from kith.federation import uris
from kith.federation.activitypub import CONTEXT, iso, public_key
from kith.federation.models import ActorKey

Json = dict[str, Any]

LEMMY_NS = "https://join-lemmy.org/ns#"
# The Group's terms beyond Kith's usual ones, named as Lemmy names them so its peers read them.
GROUP_CONTEXT: list[Any] = [
    *CONTEXT[:-1],
    {
        **CONTEXT[-1],
        "lemmy": LEMMY_NS,
        "postingRestrictedToMods": "lemmy:postingRestrictedToMods",
        "moderators": {"@id": "lemmy:moderators", "@type": "@id"},
    },
]
COLLECTIONS = ("outbox", "followers", "featured", "moderators")


def group_id(settings: Settings, community: Community) -> str:
    return group_id_of(settings, community.handle)


def group_id_of(settings: Settings, handle: str) -> str:
    return uris.group_uri(settings, handle)


def collection_id(settings: Settings, community: Community, name: str) -> str:
    return uris.group_collection_uri(settings, community.handle, name)


def plain_html(text: str) -> str:
    """Plain text (a description, the rules) as escaped HTML paragraphs."""
    paragraphs = [p.strip() for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    return "".join("<p>" + html.escape(p).replace("\n", "<br>") + "</p>" for p in paragraphs)


def group(settings: Settings, community: Community, key: ActorKey) -> Json:
    """The community's `Group` actor: its card (name, description as `summary`, rules as
    `content`, topics as hashtags), where to reach it, its collections and its key. A
    community that is not open approves its followers by hand (a Follow is a request to
    join). What the card says is public for every community, private ones included (people
    find them and ask to join); the collections decide what they show."""
    me = group_id(settings, community)
    doc: Json = {
        "@context": GROUP_CONTEXT,
        "id": me,
        "type": "Group",
        "preferredUsername": community.handle,
        "name": community.name,
        "summary": plain_html(community.description),
        "content": plain_html(community.rules),
        "source": {"content": community.description, "mediaType": "text/markdown"},
        "url": me,
        # Everything sent to a community is processed by the shared inbox.
        "inbox": uris.shared_inbox_uri(settings),
        "endpoints": {"sharedInbox": uris.shared_inbox_uri(settings)},
        "manuallyApprovesFollowers": community.membership != MembershipModel.OPEN,
        "postingRestrictedToMods": False,
        "discoverable": community.membership != MembershipModel.PRIVATE,
        "published": _day(community.created_at),
        "tag": [
            {"type": "Hashtag", "href": uris.tag_url(settings, t), "name": f"#{t}"}
            for t in community.topics or []
        ],
        "attributedTo": collection_id(settings, community, "moderators"),
        "publicKey": public_key(key, me),
    }
    doc |= {name: collection_id(settings, community, name) for name in COLLECTIONS}
    if community.language:
        doc["contentMap"] = {community.language: doc["summary"]}
    for name, path in (("icon", community.icon_path), ("image", community.banner_path)):
        if path:
            doc[name] = _image(settings, path)
    return doc


def _image(settings: Settings, path: str) -> Json:
    """An icon or banner stored at the media `path` (served at /media/PATH, as avatars)."""
    media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return {"type": "Image", "mediaType": media_type, "url": f"{settings.base_url}/media/{path}"}


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT00:00:00Z")


def webfinger(settings: Settings, community: Community) -> Json:
    """The JRD of a community (`acct:HANDLE@domain`): its Group actor and its page."""
    me = group_id(settings, community)
    return {
        "subject": f"acct:{community.handle}@{settings.domain}",
        "aliases": [me],
        "links": [
            {"rel": "self", "type": "application/activity+json", "href": me},
            {"rel": "http://webfinger.net/rel/profile-page", "type": "text/html", "href": me},
        ],
    }


def addressed_to_followers(
    settings: Settings, community: Community, members_only: bool
) -> tuple[list[str], list[str]]:
    """`to` and `cc` of what the Group sends: a private community's posts go to its followers
    (its members) alone, the others' to everyone, cc its followers."""
    followers = collection_id(settings, community, "followers")
    if members_only:
        return [followers], []
    return [uris.AS_PUBLIC], [followers]


def announce(
    settings: Settings,
    community: Community,
    post_id: int,
    obj: Json | str,
    *,
    members_only: bool,
    published: datetime,
    of_object: bool = False,
) -> Json:
    """The Group's `Announce` of a post in it: of the activity that created it (`obj`, an
    embedded Create, as Lemmy sends it) or, `of_object`, of the post's id alone (what
    Mastodon understands, shown there as a boost by the Group). Ids are stable per post, so
    sending one again is recognised as the same."""
    me = group_id(settings, community)
    to, cc = addressed_to_followers(settings, community, members_only)
    suffix = "/object" if of_object else ""
    return {
        "@context": GROUP_CONTEXT,
        "id": f"{me}/announces/{post_id}{suffix}",
        "type": "Announce",
        "actor": me,
        "published": iso(published),
        "to": to,
        "cc": cc,
        "audience": me,
        "object": obj,
    }


def in_audience(settings: Settings, community: Community, doc: Json, members_only: bool) -> Json:
    """A copy of a Create or Note (without its @context) that says which community it belongs
    to (`audience`); a private community's is addressed to its members alone."""
    out = {k: v for k, v in doc.items() if k != "@context"}
    out["audience"] = group_id(settings, community)
    if members_only:
        out["to"], out["cc"] = addressed_to_followers(settings, community, True)
    inner = out.get("object")
    if isinstance(inner, dict):
        out["object"] = in_audience(settings, community, inner, members_only)
    return out


def answer_follow(settings: Settings, community: Community, kind: str, follow: Json) -> Json:
    """The Group's `Accept` or `Reject` (`kind`) of a remote person's Follow (a request to
    join), embedding the Follow as received, addressed to its actor."""
    me = group_id(settings, community)
    follower = follow.get("actor")
    follower_uri = follower if isinstance(follower, str) else str((follower or {}).get("id", ""))
    return {
        "@context": GROUP_CONTEXT,
        "id": f"{me}#{kind.lower()}s/{new_id()}",
        "type": kind,
        "actor": me,
        "to": [follower_uri],
        "object": {
            "id": str(follow.get("id", "")),
            "type": "Follow",
            "actor": follower_uri,
            "object": me,
        },
    }


# --- moderation (federation.group_moderation decides what is sent, and to whom) ----------


def moderation_id(settings: Settings, community: Community, entry_id: int) -> str:
    """The id of what one moderator's action sends: `BASE/c/HANDLE/log/ENTRY_ID`, after the
    moderation log entry the action wrote (one action, one id)."""
    return f"{group_id(settings, community)}/log/{entry_id}"


def moderators_activity(
    settings: Settings,
    community: Community,
    kind: str,
    activity_id: str,
    actor: str,
    obj: Json | str,
    *,
    members_only: bool,
    **extra: Any,
) -> Json:
    """A moderator's activity in the community as Lemmy writes one (`Delete` with a
    `summary` is a removal, `Lock`, `Add`/`Remove` to `featured`, `Block` with `target`…):
    by the moderator, about the Group (`cc`, `audience`), public unless the community is
    private. The Group announces it (`announce_activity`); it is never sent alone."""
    me = group_id(settings, community)
    to = [collection_id(settings, community, "followers")] if members_only else [uris.AS_PUBLIC]
    return {
        "id": activity_id,
        "type": kind,
        "actor": actor,
        "object": obj,
        "to": to,
        "cc": [me],
        "audience": me,
        **extra,
    }


def announce_activity(
    settings: Settings,
    community: Community,
    activity: Json,
    announce_id: str,
    *,
    members_only: bool,
) -> Json:
    """The Group's `Announce` of an activity in it (FEP-1b12): a moderator's, or a member's
    Delete of their own post, embedded whole."""
    me = group_id(settings, community)
    to, cc = addressed_to_followers(settings, community, members_only)
    return {
        "@context": GROUP_CONTEXT,
        "id": announce_id,
        "type": "Announce",
        "actor": me,
        "to": to,
        "cc": cc,
        "audience": me,
        "object": {k: v for k, v in activity.items() if k != "@context"},
    }


def undo_boost(
    settings: Settings,
    community: Community,
    post_id: int,
    object_id: str,
    undo_id: str,
    *,
    members_only: bool,
) -> Json:
    """The Group takes back its `Announce` of a post's id (`announce(of_object=True)`), which
    Mastodon shows as a boost by the Group: how a post leaves the community there."""
    me = group_id(settings, community)
    to, cc = addressed_to_followers(settings, community, members_only)
    return {
        "@context": GROUP_CONTEXT,
        "id": undo_id,
        "type": "Undo",
        "actor": me,
        "to": to,
        "cc": cc,
        "object": {
            "id": f"{me}/announces/{post_id}/object",
            "type": "Announce",
            "actor": me,
            "object": object_id,
        },
    }


def update_group(
    settings: Settings,
    community: Community,
    key: ActorKey,
    activity_id: str,
    updated: datetime,
    *,
    members_only: bool,
) -> Json:
    """The Group's `Update` of itself, its card as served now embedded (Mastodon refreshes a
    remote account from it)."""
    me = group_id(settings, community)
    doc = {k: v for k, v in group(settings, community, key).items() if k != "@context"}
    doc["updated"] = iso(updated)
    to, cc = addressed_to_followers(settings, community, members_only)
    return {
        "@context": GROUP_CONTEXT,
        "id": activity_id,
        "type": "Update",
        "actor": me,
        "to": to,
        "cc": cc,
        "object": doc,
    }
