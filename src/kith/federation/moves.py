"""Account migration (`Move`): followers of an account that moved follow its new account.

In: a remote actor A sends `Move` (object A, target B). B is fetched fresh from its own server
and must list A in `alsoKnownAs` — otherwise anyone could send "my followers now follow X" and
hand them to a stranger. Then every local follower of A stops following A (Undo sent) and
follows B (Follow sent, or a follow here when B is local), unless a block stands between them,
and is notified (`move`).

Out: a local person first names their old accounts (`alsoKnownAs`, so the new one vouches for
the move), or, on the old account, moves to a new one that lists it: `Move` then goes to the
remote followers' servers, and local followers are moved here at once, the same way."""

from __future__ import annotations

import logging

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.errors import ValidationFailed
from kith.federation import outbound, uris
from kith.federation.activitypub import actor_id
from kith.federation.actors import ActorFetchFailed
from kith.federation.delivery import deliver, inboxes_of_followers
from kith.federation.remote_accounts import fetch_account, resolve_handle, split_handle
from kith.graph.models import Follow, FollowRequest
from kith.notifications import service as notifications
from kith.notifications.models import NotificationType
from kith.runtime import runtime_of

log = logging.getLogger(__name__)

MAX_ALIASES = 10


class MoveRefused(Exception):
    """The move cannot be honoured (the message says why)."""


async def _local_followers(db: AsyncSession, account_id: int) -> list[int]:
    return list(
        (
            await db.scalars(
                select(Follow.follower_id)
                .join(Account, Account.id == Follow.follower_id)
                .where(Follow.followee_id == account_id, Account.domain == "")
            )
        ).all()
    )


async def _follow_new(db: AsyncSession, follower_id: int, target: Account) -> None:
    """Follow `target` for `follower_id`, in the caller's transaction (no commit)."""
    if await db.get(Follow, (follower_id, target.id)) is not None:
        return
    if await db.get(FollowRequest, (follower_id, target.id)) is not None:
        return
    if not target.is_local:
        db.add(FollowRequest(follower_id=follower_id, followee_id=target.id))
        await db.flush()
        await outbound.follow(db, follower_id, target.id)
    elif target.locked:
        db.add(FollowRequest(follower_id=follower_id, followee_id=target.id))
        await notifications.notify(
            db,
            recipient_id=target.id,
            from_account_id=follower_id,
            type=NotificationType.FOLLOW_REQUEST,
        )
    else:
        db.add(Follow(follower_id=follower_id, followee_id=target.id))
        await notifications.notify(
            db, recipient_id=target.id, from_account_id=follower_id, type=NotificationType.FOLLOW
        )


async def move_local_followers(db: AsyncSession, origin: Account, target: Account) -> int:
    """Make origin's local followers follow target instead (no commit); returns how many
    moved. Someone blocked by, or blocking, the target keeps following the origin."""
    moved = 0
    for follower_id in await _local_followers(db, origin.id):
        if follower_id == target.id or await policy.is_blocked_between(db, follower_id, target.id):
            continue
        await outbound.unfollowing(db, follower_id, origin.id)
        await db.execute(
            delete(Follow).where(Follow.follower_id == follower_id, Follow.followee_id == origin.id)
        )
        await _follow_new(db, follower_id, target)
        await notifications.notify(
            db, recipient_id=follower_id, from_account_id=origin.id, type=NotificationType.MOVE
        )
        moved += 1
    return moved


async def receive_move(db: AsyncSession, origin: Account, target_uri: str) -> str:
    """Apply a remote `Move` of `origin` to `target_uri` (fetched and checked first). Returns
    the outcome; raises MoveRefused when the target does not vouch for the origin."""
    if not origin.uri or target_uri == origin.uri:
        raise MoveRefused("a Move needs a target other than the actor")
    try:
        target = await fetch_account(db, target_uri, refresh=True)
    except ActorFetchFailed as exc:
        raise MoveRefused(f"the target could not be fetched: {exc}") from exc
    if target.suspended_at is not None:
        raise MoveRefused("the target account is suspended here")
    if origin.uri not in (target.also_known_as or []):
        raise MoveRefused("the target does not list the actor in alsoKnownAs")
    origin.moved_to_id = target.id
    moved = await move_local_followers(db, origin, target)
    return f"moved {moved} follower(s)"


# --- local people moving ---------------------------------------------------------------------


async def _account_for(db: AsyncSession, handle: str) -> Account:
    """The account a handle (`@user@host`) or actor URI names, fetched fresh; ValidationFailed
    (field "target") when it can't be found."""
    handle = handle.strip()
    try:
        if handle.startswith(("https://", "http://")):
            return await fetch_account(db, handle, refresh=True)
        parts = split_handle(handle if "@" in handle.lstrip("@") else f"{handle}@")
        if parts is None:
            settings = runtime_of(db).settings
            parts = split_handle(f"{handle.lstrip('@')}@{settings.domain}")
        if parts is None:
            raise ActorFetchFailed("not a handle")
        return await resolve_handle(db, *parts)
    except ActorFetchFailed as exc:
        raise ValidationFailed(f"No account found for {handle[:100]}.", field="target") from exc


async def set_aliases(db: AsyncSession, account: Account, handles: list[str]) -> list[str]:
    """Set the accounts this one also is (`alsoKnownAs`: the old accounts moving here), by
    handle or URI, each resolved to its actor id. Sends Update(Person). Commits."""
    if not account.is_local:
        raise ValidationFailed("Only local accounts have aliases here.", field="aliases")
    wanted = [h for h in (h.strip() for h in handles) if h]
    if len(wanted) > MAX_ALIASES:
        raise ValidationFailed(f"At most {MAX_ALIASES} aliases.", field="aliases")
    me = uris.actor_uri(runtime_of(db).settings, account.username)
    found: list[str] = []
    for handle in wanted:
        other = await _account_for(db, handle)
        uri = actor_id(runtime_of(db).settings, other)
        if uri == me:
            raise ValidationFailed("An account can't be its own alias.", field="aliases")
        if uri not in found:
            found.append(uri)
    account.also_known_as = found
    await outbound.profile_updated(db, account)
    await db.commit()
    return found


async def move_account(db: AsyncSession, account: Account, handle: str) -> Account:
    """Move a local account to another one (which must list it in `alsoKnownAs`): record it,
    send `Move` to the remote followers, and move the local followers now. Commits."""
    if not account.is_local:
        raise ValidationFailed("Only local accounts can move from here.", field="target")
    if account.moved_to_id is not None:
        raise ValidationFailed("This account has already moved.", field="target")
    target = await _account_for(db, handle)
    settings = runtime_of(db).settings
    me = uris.actor_uri(settings, account.username)
    if target.id == account.id:
        raise ValidationFailed("An account can't move to itself.", field="target")
    if target.suspended_at is not None or target.moved_to_id is not None:
        raise ValidationFailed("That account can't be moved to.", field="target")
    if me not in (target.also_known_as or []):
        raise ValidationFailed(
            "The new account must first list this one as an alias (alsoKnownAs).",
            field="target",
        )
    account.moved_to_id = target.id
    target_uri = actor_id(settings, target)
    activity = {
        "@context": "https://www.w3.org/ns/activitystreams",
        "id": f"{me}#moves/{target.id}",
        "type": "Move",
        "actor": me,
        "object": me,
        "target": target_uri,
        "to": [uris.followers_uri(settings, account.username)],
    }
    await deliver(db, account, activity, await inboxes_of_followers(db, account))
    await move_local_followers(db, account, target)
    await outbound.profile_updated(db, account)
    await db.commit()
    return target
