"""A community's flairs on the web: its moderators' page to define them, a moderator
changing a thread's flair, and what the community page needs to show, choose and filter by
them. Rules are `communities.flairs`'."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kith.communities import flairs, permissions
from kith.communities.models import Community
from kith.communities.permissions import CommunityAction
from kith.errors import KithError, ValidationFailed
from kith.web.auth import safe_next
from kith.web.communities import community_or_404
from kith.web.deps import Current, check_csrf, get_db, signed_in
from kith.web.forms import form_str
from kith.web.templating import render

router = APIRouter(dependencies=[Depends(check_csrf)])


def _me(me: Current) -> int:
    assert me.viewer.account_id is not None  # `signed_in` guarantees it
    return me.viewer.account_id


async def _page(
    request: Request,
    db: AsyncSession,
    me: Current,
    community: Community,
    error: KithError | None = None,
    form: dict[str, Any] | None = None,
) -> Response:
    await permissions.require(db, _me(me), community, CommunityAction.UPDATE)
    return await render(
        request,
        db,
        "communities/flairs.html",
        {
            "title": f"{community.name}: flairs",
            "community": community,
            "section": "flairs",
            "flairs": await flairs.flairs_of_community(db, community),
            "palette": flairs.PALETTE,
            "max_flairs": flairs.MAX_FLAIRS,
            "notice": "Saved." if request.query_params.get("notice") == "saved" else None,
            "form": form or {},
            "errors": {error.field or "form": error.message} if error else {},
        },
        status=error.status if error else 200,
    )


@router.get("/c/{handle}/flairs")
async def flairs_page(
    request: Request,
    handle: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    """The moderators' list of the community's flairs, with the form to add one."""
    community = await community_or_404(db, handle)
    return await _page(request, db, me, community)


@router.post("/c/{handle}/flairs")
async def add_flair(
    request: Request,
    handle: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    community = await community_or_404(db, handle)
    form = await request.form()
    try:
        await flairs.create_flair(
            db, _me(me), community, form_str(form, "name"), form_str(form, "colour")
        )
    except ValidationFailed as err:
        return await _page(request, db, me, community, err, dict(form.items()))
    return RedirectResponse(f"/c/{community.handle}/flairs?notice=saved", status_code=303)


@router.post("/c/{handle}/flairs/{flair_id:int}/delete")
async def remove_flair(
    handle: str,
    flair_id: int,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    community = await community_or_404(db, handle)
    await flairs.delete_flair(db, _me(me), community, flair_id)
    return RedirectResponse(f"/c/{community.handle}/flairs?notice=saved", status_code=303)


@router.post("/c/{handle}/threads/{post_id:int}/flair")
async def set_flair(
    request: Request,
    handle: str,
    post_id: int,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    """A moderator changes a thread's flair (an empty choice takes it off)."""
    community = await community_or_404(db, handle)
    form = await request.form()
    try:
        await flairs.set_thread_flair(
            db, _me(me), community, post_id, form_str(form, "flair"), form_str(form, "reason")
        )
    except ValidationFailed as err:
        return await _page(request, db, me, community, err)
    next_url = form_str(form, "next")
    target = safe_next(next_url) if next_url else f"/c/{community.address}"
    sep = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{sep}notice=saved", status_code=303)
