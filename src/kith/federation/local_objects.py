"""Which stored account or post an ActivityPub id names.

Our own ids are parsed (`/users/NAME`, `/@NAME`, `/users/NAME/statuses/ID`, `/@NAME/ID`), never
trusted by string equality with a stored column, so both the AS2 id and the page URL of a local
post lead to it. Remote ids are looked up by `uri`, which holds the object's id as its server
gave it."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.federation.origin import origin_of
from kith.posts.models import Post
from kith.runtime import runtime_of

_ACCOUNT_PATH = re.compile(r"^/(?:users/|@)([A-Za-z0-9_]{1,64})/?$")
_POST_PATH = re.compile(
    r"^/(?:users/([A-Za-z0-9_]{1,64})/statuses|@([A-Za-z0-9_]{1,64}))/(\d{1,20})/?$"
)


def local_path(db: AsyncSession, uri: str) -> str | None:
    """The path of `uri` when it is on this instance, else None."""
    if not uri or origin_of(uri) != origin_of(runtime_of(db).settings.base_url):
        return None
    return urlsplit(uri).path


def is_local(db: AsyncSession, uri: str) -> bool:
    return local_path(db, uri) is not None


async def local_account(db: AsyncSession, uri: str) -> Account | None:
    """The local account `uri` names (actor id or profile URL); None for a deleted one, which
    no activity can reach any more."""
    path = local_path(db, uri)
    match = _ACCOUNT_PATH.match(path or "")
    if match is None:
        return None
    return await db.scalar(
        select(Account).where(
            Account.username_key == match.group(1).casefold(),
            Account.domain == "",
            Account.deleted_at.is_(None),
        )
    )


async def local_post(db: AsyncSession, uri: str) -> Post | None:
    """The local post (not a boost) `uri` names, if its author is the one the URI says."""
    path = local_path(db, uri)
    match = _POST_PATH.match(path or "")
    if match is None:
        return None
    username = (match.group(1) or match.group(2)).casefold()
    row = (
        await db.execute(
            select(Post)
            .join(Account, Account.id == Post.account_id)
            .where(
                Post.id == int(match.group(3)),
                Post.reblog_of_id.is_(None),
                Account.username_key == username,
                Account.domain == "",
            )
        )
    ).scalar_one_or_none()
    return row


async def account_by_uri(db: AsyncSession, uri: str) -> Account | None:
    """A local account by its id, or a remote one we know by its id (no fetching)."""
    if is_local(db, uri):
        return await local_account(db, uri)
    return await db.scalar(select(Account).where(Account.uri == uri, Account.domain != ""))


async def post_by_uri(db: AsyncSession, uri: str) -> Post | None:
    """A local post by its id or page URL, or a stored remote post by its id (no fetching)."""
    if is_local(db, uri):
        return await local_post(db, uri)
    return await db.scalar(select(Post).where(Post.uri == uri))
