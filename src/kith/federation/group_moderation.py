"""What a community's moderation sends to other servers (FEP-1b12), in the shapes Lemmy and
Mastodon read: the moderator's activity (`Delete` with a `summary`, `Lock`, `Add`/`Remove`
to `featured`, `Block` with `target`, their `Undo`s, `Update` of the Group), announced by
the Group; and, for Mastodon, which sees a community's posts as the Group's boosts, the
Group's `Undo` of its boost of a removed post and its own `Update`.

Everything goes to the community's remote members (the Group's followers) — for a private
community nobody else, addressed to its followers, never Public — plus, where the action
concerns them, the server of the post's author or of the banned person. The services call
one function here in their transaction, before they commit (`delivery.deliver`). Ids come
from the moderation log entry the action wrote (`BASE/c/HANDLE/log/ENTRY_ID`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.communities import activitypub as group_ap
from kith.communities.models import (
    Community,
    CommunityPost,
    CommunityPostState,
    MembershipModel,
    ModAction,
    ModerationLogEntry,
)
from kith.db import utcnow
from kith.federation import activitypub as ap
from kith.federation import groups, keys
from kith.federation.delivery import deliver, inboxes_of
from kith.posts.models import Post
from kith.runtime import runtime_of

Json = dict[str, Any]

# What the Group's card (its actor document) shows: an edit of anything else sends nothing.
CARD_FIELDS = frozenset(
    {"name", "description", "rules", "topics", "language", "membership", "icon", "banner"}
)
# A moderator's action on a post: the activity it is (and whether it is the Undo of one).
_POST_ACTIVITIES: dict[str, tuple[str, bool]] = {
    ModAction.REMOVE_POST: ("Delete", False),
    ModAction.RESTORE_POST: ("Delete", True),
    ModAction.LOCK: ("Lock", False),
    ModAction.UNLOCK: ("Lock", True),
    ModAction.PIN: ("Add", False),
    ModAction.UNPIN: ("Remove", False),
}


def _private(community: Community, members_only: bool = False) -> bool:
    """Is what the Group says about this for its members alone? Always, in a private
    community; and for a post written while it was private."""
    return members_only or community.membership == MembershipModel.PRIVATE


async def _actor_uri(db: AsyncSession, account_id: int | None) -> str | None:
    account = await db.get(Account, account_id) if account_id is not None else None
    return ap.actor_id(runtime_of(db).settings, account) if account is not None else None


async def _send(db: AsyncSession, community: Community, docs: list[Json], inboxes: set[str]) -> int:
    queued = 0
    for doc in docs:
        queued += await deliver(db, None, doc, inboxes, community_id=community.id)
    return queued


def _moderators_doc(
    db: AsyncSession,
    community: Community,
    entry: ModerationLogEntry,
    kind: str,
    moderator: str,
    obj: Json | str,
    *,
    undo: bool,
    private: bool,
    **extra: Any,
) -> Json:
    """The moderator's activity for `entry` (an `Undo` of a `kind` when `undo`: built anew
    by this moderator, as Lemmy does, since the one undone may have been someone else's)."""
    settings = runtime_of(db).settings
    activity_id = group_ap.moderation_id(settings, community, entry.id)
    if not undo:
        return group_ap.moderators_activity(
            settings, community, kind, activity_id, moderator, obj, members_only=private, **extra
        )
    undone = group_ap.moderators_activity(
        settings,
        community,
        kind,
        f"{activity_id}/undone",
        moderator,
        obj,
        members_only=private,
        **extra,
    )
    return group_ap.moderators_activity(
        settings, community, "Undo", activity_id, moderator, undone, members_only=private
    )


def _announced(db: AsyncSession, community: Community, activity: Json, private: bool) -> Json:
    settings = runtime_of(db).settings
    return group_ap.announce_activity(
        settings, community, activity, f"{activity['id']}/announce", members_only=private
    )


# --- posts --------------------------------------------------------------------------------


async def post_moderated(
    db: AsyncSession, community: Community, entry: ModerationLogEntry, row: CommunityPost
) -> int:
    """A moderator removed, restored, locked, unlocked, pinned or unpinned a post that the
    Group had announced: the Group announces the moderator's `Delete` (with the reason as
    `summary`: a removal, not the author's deletion), `Undo(Delete)`, `Lock`, `Undo(Lock)`,
    `Add` or `Remove` (`target`: its `featured` collection). A removal also takes back the
    Group's boost of the post (Mastodon). Sent to the members' servers and the post's
    author's. Returns the number of deliveries queued."""
    kind, undo = _POST_ACTIVITIES[entry.action]
    post = await db.get(Post, row.post_id)
    author = await db.get(Account, post.account_id) if post is not None else None
    moderator = await _actor_uri(db, entry.actor_id)
    if post is None or author is None or moderator is None:
        return 0
    inboxes = await groups.member_inboxes(db, community) | await inboxes_of(db, [author])
    if not inboxes:
        return 0
    settings = runtime_of(db).settings
    object_id = ap.post_id(settings, post, author)
    private = _private(community, row.members_only)
    extra: dict[str, Any] = {}
    if kind in ("Delete", "Lock"):
        extra["summary"] = entry.reason
    if kind in ("Add", "Remove"):
        extra["target"] = group_ap.collection_id(settings, community, "featured")
    activity = _moderators_doc(
        db, community, entry, kind, moderator, object_id, undo=undo, private=private, **extra
    )
    docs = [_announced(db, community, activity, private)]
    if entry.action == ModAction.REMOVE_POST:
        undo_id = f"{activity['id']}/unannounce"
        docs.append(
            group_ap.undo_boost(
                settings, community, post.id, object_id, undo_id, members_only=private
            )
        )
    return await _send(db, community, docs, inboxes)


@dataclass
class Held:
    """A post approved in one of our communities, and who hears about it there."""

    community: Community
    post_id: int
    members_only: bool
    inboxes: set[str]


async def communities_holding(db: AsyncSession, post: Post) -> list[Held]:
    """The communities the post is approved in that have remote members (call it before
    the post's rows go)."""
    rows = await db.execute(
        select(Community, CommunityPost.members_only)
        .join(CommunityPost, CommunityPost.community_id == Community.id)
        .where(
            CommunityPost.post_id == post.id,
            CommunityPost.state == CommunityPostState.APPROVED,
        )
    )
    held = [
        Held(c, post.id, members_only, await groups.member_inboxes(db, c))
        for c, members_only in rows.all()
    ]
    return [h for h in held if h.inboxes]


async def forward_delete(db: AsyncSession, held: list[Held], delete: Json, object_id: str) -> int:
    """The author deleted a post the Groups in `held` had announced: each Group announces the
    author's `Delete` (as it was sent, with the community as its `audience`) and takes back
    its boost of the post, to its members' servers. Returns the deliveries queued."""
    settings = runtime_of(db).settings
    queued = 0
    for h in held:
        me = group_ap.group_id(settings, h.community)
        private = _private(h.community, h.members_only)
        inner = group_ap.in_audience(settings, h.community, delete, private)
        docs = [
            group_ap.announce_activity(
                settings,
                h.community,
                inner,
                f"{me}/announces/{h.post_id}/delete",
                members_only=private,
            ),
            group_ap.undo_boost(
                settings,
                h.community,
                h.post_id,
                object_id,
                f"{me}/announces/{h.post_id}/object/undo",
                members_only=private,
            ),
        ]
        queued += await _send(db, h.community, docs, h.inboxes)
    return queued


# --- people -------------------------------------------------------------------------------


async def person_moderated(
    db: AsyncSession,
    community: Community,
    entry: ModerationLogEntry,
    *,
    until: datetime | None = None,
    was_in: bool = False,
) -> int:
    """A moderator banned (until `until`, or for good) or unbanned someone: the Group
    announces the moderator's `Block` (`target` the Group, the reason as `summary`, the end
    as `expires`, `removeData` false: a ban here keeps what they wrote) or `Undo(Block)`, to
    its members' servers and the person's. A remote person banned while a member or asking
    to join (`was_in`) also gets the Group's `Reject` of their Follow: Mastodon and Lemmy
    then know they no longer follow the Group. Returns the deliveries queued."""
    person = (
        await db.get(Account, entry.target_account_id)
        if entry.target_account_id is not None
        else None
    )
    moderator = await _actor_uri(db, entry.actor_id)
    if person is None or moderator is None:
        return 0
    inboxes = await groups.member_inboxes(db, community) | await inboxes_of(db, [person])
    if not inboxes:
        return 0
    settings = runtime_of(db).settings
    banning = entry.action == ModAction.BAN
    extra: dict[str, Any] = {"target": group_ap.group_id(settings, community)}
    if banning:
        extra |= {"removeData": False, "summary": entry.reason}
        if until is not None:
            extra["expires"] = ap.iso(until)
    private = _private(community)
    person_uri = ap.actor_id(settings, person)
    block = _moderators_doc(
        db,
        community,
        entry,
        "Block",
        moderator,
        person_uri,
        undo=not banning,
        private=private,
        **extra,
    )
    queued = await _send(db, community, [_announced(db, community, block, private)], inboxes)
    if banning and was_in and not person.is_local:
        await groups.join_settled(db, community, person.id, accepted=False)
    return queued


# --- the Group's card ---------------------------------------------------------------------


async def card_changed(
    db: AsyncSession, community: Community, entry: ModerationLogEntry, changed: list[str]
) -> int:
    """A moderator edited the community's card (`changed`: the fields, `icon`, `banner`):
    the Group sends its `Update` of itself (Mastodon, Kith) and announces the moderator's
    `Update` of it (Lemmy) to its members' servers. Fields the card does not show (the join
    question, post approval) send nothing. Returns the deliveries queued."""
    if not CARD_FIELDS.intersection(changed):
        return 0
    # Nothing flushed yet: a key made now commits on its own connection without waiting
    # for this transaction's write lock (SQLite).
    with db.no_autoflush:
        inboxes = await groups.member_inboxes(db, community)
        if not inboxes:
            return 0
        key = await keys.community_key(db, community)
    moderator = await _actor_uri(db, entry.actor_id)
    if moderator is None:
        return 0
    settings = runtime_of(db).settings
    private = _private(community)
    activity_id = group_ap.moderation_id(settings, community, entry.id)
    own = group_ap.update_group(
        settings, community, key, f"{activity_id}/group", utcnow(), members_only=private
    )
    by_moderator = _moderators_doc(
        db, community, entry, "Update", moderator, own["object"], undo=False, private=private
    )
    docs = [own, _announced(db, community, by_moderator, private)]
    return await _send(db, community, docs, inboxes)
