"""The search page: accounts, hashtags and posts (GET /search?q=...&type=...)."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kith.posts import presenter
from kith.search import service as search
from kith.web.deps import Current, current, get_db
from kith.web.templating import render
from kith.web.timelines import _cursor

router = APIRouter()


# `!handle` or `!handle@domain`: how people name a community (Lemmy's form).
_COMMUNITY_HANDLE = re.compile(r"![A-Za-z0-9_]{1,64}(@[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?)?")


@router.get("/search")
async def search_page(
    request: Request,
    q: str = "",
    type: str = "",
    max_id: str | None = None,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(current),
) -> Response:
    """Search form and results; an unknown `type` searches everything. `!handle` names a
    community: the directory takes it (straight to the community when it is one of ours)."""
    if _COMMUNITY_HANDLE.fullmatch(q.strip()):
        return RedirectResponse(f"/communities?{urlencode({'q': q.strip()})}", status_code=303)
    kind = type if type in search.TYPES else None
    results = await search.search(
        db, me.viewer, q, type=kind, max_id=_cursor(max_id), resolve=max_id is None
    )
    views = await presenter.with_communities(
        db, await presenter.present(db, me.viewer, results.posts)
    )
    return await render(
        request,
        db,
        "search.html",
        {
            "title": f"Search: {results.query}" if results.query else "Search",
            "results": results,
            "views": views,
            "kind": kind or "",
            "types": search.TYPES,
            "older": views[-1].post.id
            if kind == "posts" and len(views) == search.DEFAULT_LIMIT
            else None,
        },
    )
