"""Search: /api/v2/search (accounts, statuses, hashtags) and /api/v1/accounts/search."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from kith.errors import ValidationFailed
from kith.mastodon_api import community_accounts, render
from kith.mastodon_api.deps import Auth, clamp, documented, optional_auth, parse_id, scoped
from kith.mastodon_api.params import read_params
from kith.mastodon_api.tags import tag_entity
from kith.search import service as search
from kith.timelines.models import TagFollow
from kith.web.deps import get_db

router = APIRouter()
TYPES = {"accounts": "accounts", "statuses": "posts", "hashtags": "hashtags"}


@router.get(
    "/api/v2/search",
    openapi_extra=documented(
        {
            "q": "string",
            "type": "string",
            "limit": "integer",
            "offset": "integer",
            "max_id": "string",
            "resolve": "boolean",
        }
    ),
)
async def search_v2(
    request: Request, db: AsyncSession = Depends(get_db), auth: Auth = Depends(optional_auth)
) -> dict[str, Any]:
    """Accounts, statuses and hashtags the viewer may see. `resolve` looks a remote `@user@host`
    up on its server (signed-in clients only); `offset` pages accounts and hashtags, `max_id`
    pages statuses."""
    p = await read_params(request)
    q = p.text("q") or ""
    kind = p.text("type")
    if kind is not None and kind not in TYPES:
        raise ValidationFailed("type must be accounts, statuses or hashtags", field="type")
    # Read before searching: a remote look-up that fails rolls the session back, which
    # expires the token's user (reading it then would need I/O outside the async context).
    viewer = auth.viewer
    if auth.user is None and (p.integer("offset") or 0) > 0:
        raise ValidationFailed(
            "Search queries pagination is not supported without authentication", field="offset"
        )
    limit = clamp(p.integer("limit"))
    found = await search.search(
        db,
        viewer,
        q,
        type=TYPES.get(kind or ""),
        limit=limit,
        max_id=parse_id(p.text("max_id")),
        resolve=p.flag("resolve"),
    )
    following: set[int] = set()
    if auth.user is not None and found.hashtags:
        from sqlalchemy import select

        rows = await db.scalars(
            select(TagFollow.tag_id).where(TagFollow.account_id == viewer.account_id)
        )
        following = set(rows.all())
    people = await render.accounts(db, found.accounts)
    if kind in (None, "accounts"):  # communities are `group: true` accounts to apps
        people = await community_accounts.with_communities(db, viewer, q, people, limit)
    return {
        "accounts": people,
        "statuses": await render.statuses(db, viewer, found.posts, context="public"),
        "hashtags": [
            await tag_entity(db, t, t.id in following if auth.user else None)
            for t in found.hashtags
        ],
    }


@router.get(
    "/api/v1/accounts/search",
    openapi_extra=documented({"q": "string", "limit": "integer", "resolve": "boolean"}),
)
async def accounts_search(
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read:accounts")),
) -> list[dict[str, Any]]:
    p = await read_params(request)
    q, limit = p.text("q") or "", clamp(p.integer("limit"), 40, 80)
    rows = await search.search_accounts(db, auth.viewer, q, limit=limit)
    people = await render.accounts(db, rows)
    return await community_accounts.with_communities(db, auth.viewer, q, people, limit)
