"""Build lists of entities with batched look-ups (one presenter pass, one counts query)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.filters import service as filters
from kith.graph.service import Linked
from kith.mastodon_api import entities
from kith.mastodon_api.deps import link_header
from kith.posts import presenter
from kith.posts.models import Post
from kith.runtime import runtime_of


async def statuses(
    db: AsyncSession, viewer: policy.Viewer, posts: list[Post], *, context: str | None = None
) -> list[dict[str, Any]]:
    """Status entities for posts the viewer may see, with filters of `context` applied."""
    views = await presenter.present(db, viewer, posts)
    if context:
        views = await filters.apply(db, viewer, views, context=context)
    counts = await entities.account_counts(db, entities.all_accounts(views))
    settings = runtime_of(db).settings
    return [entities.status(settings, v, counts) for v in views]


async def one_status(db: AsyncSession, viewer: policy.Viewer, post: Post) -> dict[str, Any]:
    return (await statuses(db, viewer, [post]))[0]


async def accounts(db: AsyncSession, rows: list[Account]) -> list[dict[str, Any]]:
    counts = await entities.account_counts(db, [a.id for a in rows])
    settings = runtime_of(db).settings
    return [entities.account(settings, a, counts.get(a.id)) for a in rows]


async def one_account(db: AsyncSession, a: Account) -> dict[str, Any]:
    return (await accounts(db, [a]))[0]


async def account_page(request: Request, db: AsyncSession, rows: list[Linked]) -> JSONResponse:
    """A page of accounts with Mastodon's Link header, whose cursors are the ids of the rows
    behind them (follows, requests, blocks, mutes), not the accounts' ids."""
    items = await accounts(db, [x.account for x in rows])
    link = link_header(request, rows, lambda x: x.row_id)
    return JSONResponse(items, headers={"Link": link} if link else {})
