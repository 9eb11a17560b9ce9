"""A remote community's moderation, as its Group announces it (FEP-1b12, Lemmy's shapes):
`Lock` / `Undo(Lock)` of a thread, `Add` / `Remove` of a thread to the Group's `featured`
collection (pins), a moderator's `Delete` of a post (a removal) and its `Undo`, and `Block`
/ `Undo(Block)` of one of our people with the Group as `target` (a ban).

Who may moderate a community is for its own server to say, so the rule is Lemmy's: the
Group must announce it (the inbox checked that the Group's key signed the Announce, and
`group_announces` that the Group is this community's) and the moderator — the inner
activity's actor, and the actor and id of any activity it undoes — must be on the Group's
own host. An activity from a moderator anywhere else changes nothing. What is applied
is applied by `communities.remote_moderation`, to the same rows our moderation uses."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import text
from kith.accounts.models import Account
from kith.communities import remote_moderation
from kith.communities.models import Community, CommunityPost
from kith.federation.actors import ActorFetchFailed
from kith.federation.handlers.common import ready_to_fetch
from kith.federation.local_objects import account_by_uri, local_account, post_by_uri
from kith.federation.models import RemoteActor
from kith.federation.origin import first_id, origin_of, type_of
from kith.federation.remote_accounts import fetch_account

log = logging.getLogger(__name__)

Json = dict[str, Any]
# The activities a Group announces about its moderators' decisions (a removal's `Delete` is
# told from an author's deletion by `group_announces`, which hands removals over here).
MODERATION_TYPES = frozenset({"Lock", "Add", "Remove", "Block"})
UNDOABLE = frozenset({"Lock", "Block", "Delete"})
NOT_ITS_SERVER = "refused: only the community's own server moderates it"


def is_moderation(activity: Json) -> bool:
    """Is this announced activity a moderator's decision (or the Undo of one)?"""
    kind = type_of(activity)
    if kind == "Undo":
        return type_of(activity.get("object")) in UNDOABLE
    return kind in MODERATION_TYPES


def concerns_a_person(activity: Json) -> bool:
    """A ban or its lifting: it matters here even when its person was this community's
    only member and the Group's Reject of their Follow came first."""
    kind = type_of(activity)
    inner = activity.get("object") if kind == "Undo" else activity
    return type_of(inner) == "Block"


def _by_its_server(group: Account, activity: Json) -> bool:
    """Are the activity and any activity it undoes by actors on the Group's host, with ids
    there (Lemmy's rule: a community's moderators act from its own server)?"""
    host = origin_of(group.uri or "")
    undone = activity.get("object") if type_of(activity) == "Undo" else None
    for act in (activity, undone):
        if act is None:
            continue
        if not isinstance(act, dict):
            return False
        actor, act_id = first_id(act.get("actor")), first_id(act.get("id"))
        if actor is None or not host or origin_of(actor) != host:
            return False
        if act_id is not None and origin_of(act_id) != host:
            return False
    return True


async def _moderator(db: AsyncSession, uri: str) -> int | None:
    """The remote moderator's account, for the log: known, or fetched from their (the
    Group's) server; None when it cannot be had — the Group's word still counts."""
    known = await account_by_uri(db, uri)
    if known is not None:
        return known.id
    try:
        return (await fetch_account(db, uri)).id
    except ActorFetchFailed as exc:
        log.info("federation: moderator %s not fetched: %s", uri[:200], exc)
        return None


def _reason(activity: Json) -> str:
    summary = activity.get("summary")
    return text.html_to_text(summary).strip() if isinstance(summary, str) else ""


def _expires(activity: Json) -> datetime | None:
    """A ban's end (`expires`), or None (for good) when it has none or none that reads."""
    value = activity.get("expires")
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


async def _row(
    db: AsyncSession, community: Community, uri: str | None
) -> tuple[CommunityPost, int] | None:
    """The post's row in this community and its author's id, when it is stored here."""
    post = await post_by_uri(db, uri or "")
    if post is None:
        return None
    row = await db.get(CommunityPost, (community.id, post.id))
    return (row, post.account_id) if row is not None else None


async def _featured_of(db: AsyncSession, group: Account) -> str:
    """The Group's `featured` collection, as its actor document names it (Lemmy's and
    Kith's are `GROUP/featured`)."""
    doc = await db.scalar(select(RemoteActor.document).where(RemoteActor.account_id == group.id))
    featured = first_id(doc.get("featured")) if isinstance(doc, dict) else None
    return featured or f"{group.uri}/featured"


async def receive(db: AsyncSession, community: Community, group: Account, activity: Json) -> str:
    """Apply a moderator's decision the community's Group announced (see the module)."""
    if not _by_its_server(group, activity):
        return NOT_ITS_SERVER
    undo = type_of(activity) == "Undo"
    decision: Json = activity["object"] if undo else activity
    kind = type_of(decision)
    moderator_uri = str(first_id(activity.get("actor")))
    if kind == "Block":
        return await _ban(db, community, group, decision, moderator_uri, lifted=undo)
    target = first_id(decision.get("target"))
    if kind in ("Add", "Remove") and target != await _featured_of(db, group):
        return f"ignored: {kind} to another collection than the community's featured"
    found = await _row(db, community, first_id(decision.get("object")))
    if found is None:
        return "ignored: not a post of this community here"
    row, author_id = found
    await ready_to_fetch(db)
    moderator = await _moderator(db, moderator_uri)
    if kind == "Delete":  # only its Undo is announced as a moderator's decision
        changed = await remote_moderation.move_post(
            db,
            community,
            row,
            author_id,
            removed=False,
            moderator_id=moderator,
            reason=_reason(activity),
        )
        return "restored in the community" if changed else "ignored: not removed here"
    if kind == "Lock":
        changed = await remote_moderation.lock_thread(
            db,
            community,
            row,
            author_id,
            locked=not undo,
            moderator_id=moderator,
            reason=_reason(decision),
        )
        return ("unlocked" if undo else "locked") if changed else "ignored: already so"
    changed = await remote_moderation.pin_thread(
        db, community, row, author_id, pinned=kind == "Add", moderator_id=moderator
    )
    return ("pinned" if kind == "Add" else "unpinned") if changed else "ignored: already so"


async def removed(
    db: AsyncSession,
    community: Community,
    group: Account,
    delete: Json,
    row: CommunityPost,
    author_id: int,
) -> str:
    """A moderator's `Delete` of a post the community holds (its author's server still
    serves it): it leaves the community here, if the moderator is on the Group's host."""
    if not _by_its_server(group, delete):
        return NOT_ITS_SERVER
    await ready_to_fetch(db)
    moderator = await _moderator(db, str(first_id(delete.get("actor"))))
    changed = await remote_moderation.move_post(
        db,
        community,
        row,
        author_id,
        removed=True,
        moderator_id=moderator,
        reason=_reason(delete),
    )
    return (
        "removed from the community" if changed else "ignored: already removed from the community"
    )


async def _ban(
    db: AsyncSession,
    community: Community,
    group: Account,
    block: Json,
    moderator_uri: str,
    *,
    lifted: bool,
) -> str:
    """A ban from the community (a `Block` whose `target` is the Group) of one of our
    people, or its lifting. Bans of other servers' people are theirs to apply."""
    if first_id(block.get("target")) != group.uri:
        return "ignored: a Block of someone elsewhere than in this community"
    person = await local_account(db, first_id(block.get("object")) or "")
    if person is None:
        return "ignored: a ban of someone who is not ours"
    await ready_to_fetch(db)
    moderator = await _moderator(db, moderator_uri)
    if lifted:
        done = await remote_moderation.unban(db, community, person.id, moderator_id=moderator)
        return "ban lifted" if done else "ignored: not banned here"
    await remote_moderation.ban(
        db,
        community,
        person.id,
        until=_expires(block),
        moderator_id=moderator,
        reason=_reason(block),
    )
    return "banned from the community"
