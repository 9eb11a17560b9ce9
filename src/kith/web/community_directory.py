"""The communities' directory: browse and search them, "suggested for you", and `!handle`
going straight to a community (looked up on its server when it is another's)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kith.communities import directory
from kith.communities import service as communities
from kith.errors import ValidationFailed
from kith.federation import remote_groups
from kith.web.communities import MEMBERSHIP_LABELS
from kith.web.deps import Current, current, get_db, runtime
from kith.web.templating import render

router = APIRouter()


@router.get("/communities")
async def directory_page(
    request: Request,
    q: str = "",
    sort: str = "members",
    offset: int = 0,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(current),
) -> Response:
    """Browse and search communities; `!handle` (or `!handle@this.domain`) goes straight to
    the community, and so does `!handle@other.host` for someone signed in (looked up on its
    server when it is not known here yet)."""
    wanted = q.strip()
    account_id = me.viewer.account_id  # read before a look-up may end the transaction
    if wanted.startswith("!"):
        handle, _, domain = wanted[1:].partition("@")
        found = None
        if not domain or domain.lower() == runtime(request).settings.domain.lower():
            found = await communities.find_community(db, handle)
        elif account_id is not None:
            found = await remote_groups.find_or_resolve(db, wanted)
        if found is not None:
            return RedirectResponse(f"/c/{found.address}", status_code=303)
    errors: dict[str, str] = {}
    listings: list[directory.Listing] = []
    try:
        listings = await directory.browse(db, query=wanted, sort=sort, offset=offset)
    except ValidationFailed as err:
        errors[err.field or "q"] = err.message
    suggestions = []
    if account_id is not None and not wanted and offset == 0:
        suggestions = await directory.suggested(db, account_id)
    return await render(
        request,
        db,
        "communities/directory.html",
        {
            "title": "Communities",
            "q": wanted,
            "sort": sort,
            "offset": offset,
            "listings": listings,
            "more": len(listings) == directory.PAGE_SIZE,
            "page_size": directory.PAGE_SIZE,
            "suggestions": suggestions,
            "may_create": account_id is not None and await communities.may_create(db, account_id),
            "labels": MEMBERSHIP_LABELS,
            "errors": errors,
        },
        status=422 if errors else 200,
    )
