"""Deleting a local account, for good: by its owner (password, and a code when two-factor
sign-in is on), by an admin, or by the operator (`kith user delete`).

Two steps, as Mastodon does it:

1. **Lock, at once** (`_lock`, one transaction): the account is stamped deleted and
   suspended, so every suspension rule hides it and everything it made; its login row goes
   (sessions, mail tokens and recovery codes with it) and its OAuth tokens and codes are
   revoked, so it cannot sign in or act; `Delete(Person)` is queued for every server that
   knows it (`federation.outbound.account_deleted`); and the purge job is queued.
2. **Purge, in the background** (the `accounts.purge` job, in batches, each batch a
   transaction that also queues the next one — a killed worker loses nothing, the next
   worker goes on where the last commit left off): its posts and boosts (with their media
   files, search entries and the counters of the posts they touched; each post's id is
   remembered so it answers 410 Gone), its likes and poll votes (counters recomputed), its
   uploads and profile images, then every other row that names it — follows both ways,
   follow requests, blocks, mutes, bookmarks, pins, notifications, lists and list
   memberships, filters, markers, apps, invites, community memberships (a community it
   owned keeps going with no owner, for an admin to hand over) — found through the schema's
   foreign keys, so a table added later is covered without a change here.

What stays (`KEPT_TABLES`): the `accounts` row as the account's tombstone, with its
profile emptied — its username is never given out again, because other servers cached its
actor id and key — and its counters (zero once the purge is done); its key and the stored
`Delete(Person)` until every delivery has run (`accounts.forget_key`, after
`KEEP_OUTBOUND`); reports about it, for the moderators' record; and the tombstones of its
posts. Its profile, actor, WebFinger and API entity answer 404 / 410 from the first step on.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Table, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kith import models as _every_table  # noqa: F401  (the sweep walks the whole schema)
from kith import policy
from kith.accounts import access, two_factor
from kith.accounts import service as accounts
from kith.accounts.models import Account, User
from kith.db import Base, utcnow
from kith.errors import NotFound, ValidationFailed
from kith.federation import outbound, tombstones
from kith.federation import polls as federated_polls
from kith.federation.delivery import KEEP_OUTBOUND
from kith.federation.models import ActorKey, OutboundActivity
from kith.jobs.queue import enqueue, job_handler
from kith.media import service as media
from kith.media.models import MediaAttachment
from kith.moderation.roles import require_moderator
from kith.oauth.models import OAuthCode, OAuthToken
from kith.posts import service as posts
from kith.posts.models import Like, Poll, PollVote, Post
from kith.runtime import runtime_of
from kith.search import service as search

PURGE_JOB = "accounts.purge"
FORGET_KEY_JOB = "accounts.forget_key"
# Rows removed per purge transaction: short enough for a job's lease, big enough to be quick.
PURGE_BATCH = 200
# Tables whose rows naming a deleted account are kept (see the module docstring).
KEPT_TABLES = frozenset(
    {
        "accounts",
        "account_stats",
        "actor_keys",
        "outbound_activities",
        "reports",
        "local_tombstones",
    }
)

ALREADY_DELETED = "This account is already deleted."
LAST_ADMIN = (
    "This is the instance's last admin account: make someone else an admin before deleting it."
)


# --- who may delete what -----------------------------------------------------------------


async def delete_own_account(
    db: AsyncSession,
    user: User,
    *,
    password: str,
    code: str = "",
    throttle: two_factor.SecondFactorThrottle,
) -> None:
    """A person deletes their own account: their password, and a code from their app (or a
    recovery code) when two-factor sign-in is on, must be right. Commits; raises
    ValidationFailed (field `password`, `code` or `account`) or RateLimited with nothing
    changed."""
    await two_factor.confirm_identity(db, user, password=password, code=code, throttle=throttle)
    await _lock(db, user.account)


async def delete_account(db: AsyncSession, moderator: policy.Viewer, account_id: int) -> Account:
    """An admin deletes a local account. Not their own (that is done from their settings,
    with their password) and not another admin's (the role goes first, as for suspension).
    Commits."""
    require_moderator(moderator)
    account = await db.get(Account, account_id)
    if account is None:
        raise NotFound("No such account.")
    if not account.is_local:
        raise ValidationFailed(
            "Only local accounts can be deleted; suspend a remote one instead.", field="account"
        )
    if account.id == moderator.account_id:
        raise ValidationFailed(
            "Delete your own account from your settings, with your password.", field="account"
        )
    user = await db.scalar(select(User).where(User.account_id == account.id))
    if user is not None and user.is_admin:
        raise ValidationFailed(
            "Admins can't be deleted from here (the operator can: kith user delete).",
            field="account",
        )
    await _lock(db, account)
    return account


async def delete_by_name(db: AsyncSession, username: str) -> Account:
    """The operator deletes a local account by username (`kith user delete`): any account,
    admins too, but never the last admin. Commits."""
    account = await accounts.find_local_account(db, username)
    if account is None:
        raise NotFound(f"No local account named {username[:64]}.")
    await _lock(db, account)
    return account


# --- step 1: lock ------------------------------------------------------------------------


async def _lock(db: AsyncSession, account: Account) -> None:
    """Stamp the account deleted, end every way of acting as it, tell other servers, and
    queue the purge — one transaction (see the module docstring)."""
    if account.deleted_at is not None:
        raise ValidationFailed(ALREADY_DELETED, field="account")
    user = await db.scalar(select(User).where(User.account_id == account.id))
    if user is not None and user.is_admin:
        admins = await db.scalar(select(func.count()).where(User.is_admin.is_(True)))
        if int(admins or 0) <= 1:
            raise ValidationFailed(LAST_ADMIN, field="account")
    now = utcnow()
    # Conditional, so that two deletions racing each other lock (and purge) once.
    stamped = cast(
        CursorResult[Any],
        await db.execute(
            update(Account)
            .where(Account.id == account.id, Account.deleted_at.is_(None))
            .values(deleted_at=now, suspended_at=func.coalesce(Account.suspended_at, now))
            .execution_options(synchronize_session=False)
        ),
    )
    if stamped.rowcount != 1:  # nothing written: the caller's session ends it
        raise ValidationFailed(ALREADY_DELETED, field="account")
    # While the follows and interactions still say who knows the account.
    await outbound.account_deleted(db, account)
    await db.execute(delete(OAuthToken).where(OAuthToken.account_id == account.id))
    await db.execute(delete(OAuthCode).where(OAuthCode.account_id == account.id))
    if user is not None:
        await db.execute(delete(User).where(User.id == user.id))
    await enqueue(db, PURGE_JOB, {"account_id": account.id})
    await db.commit()
    await access.access_changed(db, [account.id])  # its open streams close
    await db.refresh(account)


# --- step 2: purge -----------------------------------------------------------------------


@job_handler(PURGE_JOB)
async def purge_job(db: AsyncSession, payload: dict[str, Any]) -> None:
    """One batch of a deleted account's purge; queues the next batch in the same
    transaction until nothing is left."""
    account_id = int(payload["account_id"])
    if not await purge_step(db, account_id):
        await enqueue(db, PURGE_JOB, {"account_id": account_id})


async def purge_step(db: AsyncSession, account_id: int) -> bool:
    """Remove the next batch of what a deleted account left (not committed: the job's
    transaction). True once everything is gone; running it again then changes nothing."""
    account = await db.get(Account, account_id)
    if account is None or account.deleted_at is None or not account.is_local:
        return True
    if await _remove_posts(db, account) or await _remove_likes(db, account.id):
        return False
    await _remove_votes(db, account.id)
    await _remove_files(db, account)
    _empty_profile(account)
    await _sweep(db, account.id)
    await enqueue(
        db,
        FORGET_KEY_JOB,
        {"account_id": account.id},
        run_at=account.deleted_at + KEEP_OUTBOUND,
        dedupe_key=f"{FORGET_KEY_JOB}:{account.id}",
    )
    return True


async def _remove_posts(db: AsyncSession, account: Account) -> bool:
    """Delete the account's next batch of posts and boosts; False when none was left.
    Others' boosts of them go with them (foreign key), others' replies stay, detached."""
    batch = list(
        (
            await db.scalars(
                select(Post)
                .where(Post.account_id == account.id)
                .order_by(Post.id)
                .limit(PURGE_BATCH)
            )
        ).all()
    )
    if not batch:
        return False
    await tombstones.remember_posts(db, runtime_of(db).settings, account, batch)
    ids = {p.id for p in batch}
    touched = {p.in_reply_to_id for p in batch} | {p.reblog_of_id for p in batch}
    for post in batch:
        await search.unindex_post(db, post)
        await media.forget_post_media(db, post.id)
    await db.execute(
        delete(Post).where(Post.id.in_(ids)).execution_options(synchronize_session=False)
    )
    for post_id in touched - ids - {None}:
        assert post_id is not None
        await _recount(db, post_id)
    return True


async def _recount(db: AsyncSession, post_id: int) -> None:
    """A surviving post's likes, boosts and replies, counted again from the rows."""
    await posts.recount_interactions(db, post_id)
    replies = (
        select(func.count()).select_from(Post).where(Post.in_reply_to_id == post_id)
    ).scalar_subquery()
    await db.execute(update(Post).where(Post.id == post_id).values(replies_count=replies))


async def _remove_likes(db: AsyncSession, account_id: int) -> bool:
    """Take back a batch of the account's likes; False when none was left."""
    liked = list(
        (
            await db.scalars(
                select(Like.post_id).where(Like.account_id == account_id).limit(PURGE_BATCH)
            )
        ).all()
    )
    if not liked:
        return False
    await db.execute(delete(Like).where(Like.account_id == account_id, Like.post_id.in_(liked)))
    for post_id in liked:
        await posts.recount_interactions(db, post_id)
    return True


async def _remove_votes(db: AsyncSession, account_id: int) -> None:
    """Take back the account's poll votes; local polls are counted again (a remote poll's
    counts are its server's)."""
    voted = list(
        (
            await db.scalars(
                select(PollVote.post_id).where(PollVote.account_id == account_id).distinct()
            )
        ).all()
    )
    await db.execute(delete(PollVote).where(PollVote.account_id == account_id))
    if not voted:
        return
    local_polls = await db.scalars(
        select(Poll)
        .join(Post, Post.id == Poll.post_id)
        .join(Account, Account.id == Post.account_id)
        .where(Poll.post_id.in_(voted), Account.domain == "")
    )
    for poll in local_polls.all():
        await federated_polls.recount(db, poll)


async def _remove_files(db: AsyncSession, account: Account) -> None:
    """Uploads never attached to a post, and the avatar and header: rows now, files by a
    job once this commits."""
    rows = await db.execute(
        delete(MediaAttachment)
        .where(MediaAttachment.account_id == account.id)
        .returning(MediaAttachment.file_path, MediaAttachment.preview_path)
        .execution_options(synchronize_session=False)
    )
    paths = [p for row in rows.all() for p in row if p]
    paths += [p for p in (account.avatar_path, account.header_path) if p]
    if paths:
        await enqueue(db, "media.delete_files", {"paths": paths})


def _empty_profile(account: Account) -> None:
    """Keep only what the tombstone needs: the username (reserved) and the dates."""
    account.display_name = ""
    account.bio_source = ""
    account.bio_html = ""
    account.pronouns = ""
    account.fields = []
    account.avatar_path = None
    account.header_path = None
    account.locked = False
    account.discoverable = False
    account.hide_network = True
    account.also_known_as = []
    account.moved_to_id = None


async def _sweep(db: AsyncSession, account_id: int) -> None:
    """Every other row that names the account through a foreign key goes (or, where the
    schema says SET NULL, stops naming it), as if the account row itself were deleted —
    except in `KEPT_TABLES`. Children first; database triggers keep the counters."""
    for table in reversed(Base.metadata.sorted_tables):
        if table.name in KEPT_TABLES:
            continue
        for fk in table.foreign_keys:
            if fk.column.table.name != "accounts" or fk.column.name != "id":
                continue
            column = fk.parent
            target = cast(Table, table)
            if (fk.ondelete or "").upper() == "SET NULL":
                await db.execute(
                    update(target).where(column == account_id).values({column.name: None})
                )
            else:
                await db.execute(delete(target).where(column == account_id))


# --- afterwards: the key ------------------------------------------------------------------


@job_handler(FORGET_KEY_JOB)
async def forget_key_job(db: AsyncSession, payload: dict[str, Any]) -> None:
    """Once every delivery of the account's last activities has run (they are kept
    `KEEP_OUTBOUND`, longer than any delivery tries), forget its key and those activities:
    nothing can be signed in its name any more."""
    account = await db.get(Account, int(payload["account_id"]))
    if account is None or account.deleted_at is None:
        return
    due = account.deleted_at + KEEP_OUTBOUND
    if utcnow() < due:  # run early (a clock moved, a hand-made job): come back when due
        await enqueue(db, FORGET_KEY_JOB, {"account_id": account.id}, run_at=due)
        return
    await db.execute(delete(ActorKey).where(ActorKey.account_id == account.id))
    await db.execute(
        delete(OutboundActivity).where(OutboundActivity.actor_account_id == account.id)
    )
