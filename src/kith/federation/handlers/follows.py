"""Follow, Accept, Reject, Block and their Undo: the social graph across servers.

The rules stay in `graph.service` (locked accounts get requests, blocks refuse follows); this
module maps activities onto it and answers follows through `federation.outbound`. An Accept
or Reject only ever settles a follow a local person asked for: it never creates one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.errors import NotFound, ValidationFailed
from kith.federation import groups, outbound, remote_groups
from kith.federation.handlers.common import actor_of, object_id
from kith.federation.handlers.undo import undo_handler
from kith.federation.local_objects import local_account
from kith.federation.models import InboxItem, OutboundActivity
from kith.federation.origin import first_id, type_of
from kith.federation.processing import activity_handler
from kith.graph import service as graph

FOLLOW_LOOKBACK = 20


@activity_handler("Follow")
async def on_follow(db: AsyncSession, item: InboxItem) -> str:
    """A remote actor follows a local account: a follow (answered with Accept), or a request
    the account approves later; a blocked follow is answered with Reject."""
    actor = await actor_of(db, item)
    community = await groups.local_community(db, object_id(item.activity) or "")
    if actor is not None and community is not None:  # a request to join a community
        return await groups.follow_received(db, community, actor, dict(item.activity))
    target = await local_account(db, object_id(item.activity) or "")
    if actor is None or target is None:
        return "ignored: not a follow of one of our accounts"
    follow = dict(item.activity)
    try:
        state = await graph.follow(db, actor.id, target.id)
    except ValidationFailed:
        await outbound.send_reject(db, target, follow)
        return "rejected: blocked"
    except NotFound:
        return "ignored: the account is not available"
    if state == "following":
        await outbound.send_accept(db, target, follow)
        return "accepted"
    return "requested: waiting for approval"


async def _our_follow(db: AsyncSession, item: InboxItem) -> dict[str, Any] | None:
    """The Follow an Accept/Reject answers: embedded, or one we sent, by its id."""
    obj = item.activity.get("object")
    if isinstance(obj, dict) and type_of(obj) == "Follow" and first_id(obj.get("actor")):
        return obj
    follow_id = first_id(obj)
    if follow_id is None:
        return None
    sent = await db.scalar(
        select(OutboundActivity.document).where(OutboundActivity.activity_id == follow_id)
    )
    return sent if isinstance(sent, dict) and type_of(sent) == "Follow" else None


async def _answered(db: AsyncSession, item: InboxItem) -> tuple[Account, Account] | str:
    """(local follower, remote followee) of the Follow answered, or the outcome to record."""
    actor = await actor_of(db, item)
    follow = await _our_follow(db, item)
    if actor is None or follow is None:
        return "ignored: not an answer to a Follow we sent"
    follower = await local_account(db, first_id(follow.get("actor")) or "")
    if follower is None:
        return "ignored: the follower is not ours"
    if first_id(follow.get("object")) not in (None, actor.uri):
        return "refused: an answer to a Follow of someone else"
    return follower, actor


@activity_handler("Accept")
async def on_accept(db: AsyncSession, item: InboxItem) -> str:
    """The remote account accepted a local person's pending follow."""
    answered = await _answered(db, item)
    if isinstance(answered, str):
        return answered
    follower, followee = answered
    joined = await remote_groups.join_answered(db, followee, follower, accepted=True)
    if joined is not None:  # a remote community let the person in
        return joined
    if await graph.accept_outgoing(db, follower.id, followee.id):
        return "follow accepted"
    return "ignored: no pending follow"


@activity_handler("Reject")
async def on_reject(db: AsyncSession, item: InboxItem) -> str:
    """The remote account refused (or removed) a local follower."""
    answered = await _answered(db, item)
    if isinstance(answered, str):
        return answered
    follower, followee = answered
    refused = await remote_groups.join_answered(db, followee, follower, accepted=False)
    if refused is not None:  # a remote community turned the request down
        return refused
    await graph.reject_outgoing(db, follower.id, followee.id)
    return "follow rejected"


@undo_handler("Follow")
async def undo_follow(db: AsyncSession, actor: Account, follow: dict[str, Any]) -> str:
    community = await groups.local_community(db, first_id(follow.get("object")) or "")
    if community is not None:  # leaving a community
        return await groups.unfollow_received(db, community, actor)
    target = await local_account(db, first_id(follow.get("object")) or "")
    if target is None:
        return "ignored: not a follow of one of our accounts"
    await graph.unfollow(db, actor.id, target.id)
    return "unfollowed"


@activity_handler("Block")
async def on_block(db: AsyncSession, item: InboxItem) -> str:
    """A remote actor blocks a local account: follows both ways end, neither sees the other."""
    actor = await actor_of(db, item)
    target_uri = first_id(item.activity.get("target")) or ""
    if await groups.local_community(db, target_uri):
        # A ban from one of our communities (Lemmy's shape): their moderators are all here.
        return "refused: only the community's own moderators ban from it"
    if target_uri and actor is not None and await _is_a_remote_community(db, target_uri):
        # A moderator's ban sent straight to the person (Lemmy does): it counts only as its
        # Group announces it (`handlers.group_moderation_announced`), and blocks nobody.
        return "ignored: a ban from a remote community counts when its Group announces it"
    target = await local_account(db, object_id(item.activity) or "")
    if actor is None or target is None:
        return "ignored: not a block of one of our accounts"
    try:
        await graph.block(db, actor.id, target.id)
    except (NotFound, ValidationFailed) as exc:
        return f"ignored: {exc}"
    return "blocked"


async def _is_a_remote_community(db: AsyncSession, group_uri: str) -> bool:
    group = await db.scalar(select(Account).where(Account.uri == group_uri))
    return group is not None and await remote_groups.community_of_group(db, group.id) is not None


@undo_handler("Block")
async def undo_block(db: AsyncSession, actor: Account, block: dict[str, Any]) -> str:
    target = await local_account(db, first_id(block.get("object")) or "")
    if target is None:
        return "ignored: not a block of one of our accounts"
    await graph.unblock(db, actor.id, target.id)
    return "unblocked"


async def follow_activity_of(
    db: AsyncSession, follower: Account, followee: Account
) -> dict[str, Any]:
    """The Follow a remote `follower` sent to local `followee` (the latest one), for the
    Accept or Reject that answers it later; a minimal Follow when it is no longer stored."""
    rows = await db.scalars(
        select(InboxItem.activity)
        .where(InboxItem.activity_type == "Follow", InboxItem.actor_uri == follower.uri)
        .order_by(InboxItem.id.desc())
        .limit(FOLLOW_LOOKBACK)
    )
    for activity in rows.all():
        target = await local_account(db, first_id(activity.get("object")) or "")
        if target is not None and target.id == followee.id:
            return dict(activity)
    return {
        "id": f"{follower.uri}#follows/{followee.id}",
        "type": "Follow",
        "actor": follower.uri,
    }
