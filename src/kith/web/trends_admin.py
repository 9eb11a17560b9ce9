"""The moderators' trends page (/admin/trends): candidates with their scores, approve or reject
each, and whether the instance approves automatically. Admins only; the service checks again."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kith.errors import NotFound
from kith.trends import service as trends
from kith.trends.models import ReviewState
from kith.web.deps import Current, admin_only, check_csrf, get_db
from kith.web.forms import form_str
from kith.web.templating import render

router = APIRouter(prefix="/admin/trends", dependencies=[Depends(check_csrf), Depends(admin_only)])

NOTICES = {
    "approve": "Approved: it trends whenever it scores.",
    "reject": "Rejected: it will not trend.",
    "saved": "Trend settings saved.",
}
SECTIONS = {
    ReviewState.PENDING: "Waiting for review",
    ReviewState.ALLOWED: "Approved",
    ReviewState.REJECTED: "Rejected",
}


@router.get("")
async def trends_page(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(admin_only)
) -> Response:
    """Every candidate scoring now, by kind, grouped by review state."""
    return await render(
        request,
        db,
        "admin/trends.html",
        {
            "title": "Trends",
            "board": await trends.review_board(db, me.viewer),
            "states": SECTIONS,
            "notice": NOTICES.get(request.query_params.get("notice", ""), ""),
            "section": "trends",
        },
    )


@router.post("/settings")
async def save_settings(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(admin_only)
) -> Response:
    form = await request.form()
    await trends.set_auto_approve(db, me.viewer, form_str(form, "auto_approve") == "on")
    return RedirectResponse("/admin/trends?notice=saved", status_code=303)


@router.post("/{kind}/{item_id:int}/{decision}")
async def decide(
    kind: str,
    item_id: int,
    decision: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(admin_only),
) -> Response:
    """Approve or reject one tag, status or link; back to the list, at the same kind."""
    if kind not in trends.KINDS or decision not in trends.DECISIONS:
        raise NotFound()
    await trends.decide(db, me.viewer, kind, item_id, decision)
    return RedirectResponse(f"/admin/trends?notice={decision}#{kind}", status_code=303)
