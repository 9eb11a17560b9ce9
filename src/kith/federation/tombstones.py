"""Local objects that are gone for good: what their ActivityPub ids answer.

A deleted local post's id (`/users/NAME/statuses/ID`, or its page URL asked for as JSON)
answers `410 Gone` with a `Tombstone` (`formerType`, `deleted`) when Kith remembers it
existed: a `LocalTombstone` row is written when the post is deleted (by its author, or with
its account). A deleted account's actor id answers the same, derived from the account's own
tombstone row (`Account.deleted_at`); its collections and key do too. Ids Kith never served
stay plain 404s. HTML pages of gone things answer 404, as Mastodon's do."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.config import Settings
from kith.db import new_id, utcnow
from kith.federation import uris
from kith.federation.activitypub import AS_CONTEXT, Json, iso
from kith.federation.models import LocalTombstone
from kith.posts.models import Poll, Post


def tombstone(object_id: str, former_type: str, deleted_at: datetime) -> Json:
    """The `Tombstone` a gone object's id answers with."""
    return {
        "@context": AS_CONTEXT,
        "id": object_id,
        "type": "Tombstone",
        "formerType": former_type,
        "deleted": iso(deleted_at),
    }


def actor_tombstone(settings: Settings, account: Account) -> Json:
    """What a deleted local account's actor id answers."""
    assert account.deleted_at is not None
    return tombstone(uris.actor_uri(settings, account.username), "Person", account.deleted_at)


async def remember_posts(
    db: AsyncSession, settings: Settings, author: Account, posts: Sequence[Post]
) -> None:
    """Remember that these local posts existed (boosts are not objects and are skipped), in
    the caller's transaction; a post remembered already is left as it was."""
    originals = [p for p in posts if p.reblog_of_id is None]
    if not author.is_local or not originals:
        return
    with_poll = set(
        (
            await db.scalars(
                select(Poll.post_id).where(Poll.post_id.in_([p.id for p in originals]))
            )
        ).all()
    )
    now = utcnow()
    rows: list[dict[str, Any]] = [
        {
            "id": new_id(),
            "uri": uris.post_uri(settings, author.username, p.id),
            "account_id": author.id,
            "former_type": "Question" if p.id in with_poll else "Note",
            "deleted_at": now,
        }
        for p in originals
    ]
    insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
    await db.execute(
        insert(LocalTombstone).values(rows).on_conflict_do_nothing(index_elements=["uri"])
    )


async def post_tombstone(
    db: AsyncSession, settings: Settings, username: str, status_id: int
) -> Json | None:
    """The Tombstone of the local post `/users/NAME/statuses/ID` if it was deleted: one we
    remembered, or any post of a deleted account (whose posts are on their way out)."""
    uri = uris.post_uri(settings, username.casefold(), status_id)
    row = await db.scalar(select(LocalTombstone).where(LocalTombstone.uri == uri))
    if row is not None:
        return tombstone(uri, row.former_type, row.deleted_at)
    author = await db.scalar(
        select(Account).where(
            Account.username_key == username.casefold(),
            Account.domain == "",
            Account.deleted_at.is_not(None),
        )
    )
    if author is None or author.deleted_at is None:
        return None
    post = await db.get(Post, status_id)
    if post is None or post.account_id != author.id or post.reblog_of_id is not None:
        return None
    former = "Question" if await db.get(Poll, post.id) is not None else "Note"
    return tombstone(uri, former, author.deleted_at)
