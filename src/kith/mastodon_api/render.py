"""Build lists of entities with batched look-ups (one presenter pass, one counts query)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.communities import as_account
from kith.emojis import service as emoji_service
from kith.graph.service import Linked
from kith.mastodon_api import entities, entity_cache
from kith.mastodon_api.deps import ApiJSON, link_header
from kith.posts.models import Post
from kith.runtime import runtime_of
from kith.timelines.shapes import PostRef


async def statuses(
    db: AsyncSession,
    viewer: policy.Viewer,
    posts: Sequence[Post | PostRef],
    *,
    context: str | None = None,
) -> list[dict[str, Any]]:
    """Status entities for posts the viewer may see, with filters of `context` applied (from
    the parts cached per process: entity_cache)."""
    return await entity_cache.statuses(db, viewer, posts, context=context)


async def status_for_many(
    db: AsyncSession, post: Post, viewer_ids: Collection[int], *, context: str
) -> dict[int, dict[str, Any]]:
    """The Status entity of one post for many viewers who may all see it (a live post sent
    to everyone connected): {viewer id: entity}, each what `statuses` gives that viewer
    (entity_cache.status_for_many: the same parts, the same assembly)."""
    return await entity_cache.status_for_many(db, post, viewer_ids, context=context)


async def one_status(db: AsyncSession, viewer: policy.Viewer, post: Post) -> dict[str, Any]:
    return (await statuses(db, viewer, [post]))[0]


async def accounts(db: AsyncSession, rows: list[Account]) -> list[dict[str, Any]]:
    counts = await entities.account_counts(db, [a.id for a in rows])
    settings = runtime_of(db).settings
    emojis = await emoji_service.for_accounts(db, rows)
    out = [entities.account(settings, a, counts.get(a.id), emojis.get(a.id, ())) for a in rows]
    # Another server's community is its Group's account: apps show it as a group.
    groups = await as_account.groups_among(db, [a.id for a in rows if not a.is_local])
    for a, entity in zip(rows, out, strict=True):
        if a.id in groups:
            entity["group"] = True
    moved = {a.id: a.moved_to_id for a in rows if a.moved_to_id is not None}
    if moved:
        by_id = {a.id: entity for a, entity in zip(rows, out, strict=True)}
        await entity_cache.with_moved(db, by_id, moved)
    return out


async def one_account(db: AsyncSession, a: Account) -> dict[str, Any]:
    return (await accounts(db, [a]))[0]


async def account_page(request: Request, db: AsyncSession, rows: list[Linked]) -> JSONResponse:
    """A page of accounts with Mastodon's Link header, whose cursors are the ids of the rows
    behind them (follows, requests, blocks, mutes), not the accounts' ids."""
    items = await accounts(db, [x.account for x in rows])
    link = link_header(request, rows, lambda x: x.row_id)
    return ApiJSON(items, headers={"Link": link} if link else {})
