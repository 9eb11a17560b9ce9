"""Reports to a community's moderators on the web: the form a reader fills in about a post
of the community, and the moderators' page of open reports, where each is settled by
removing the post or dismissing the report. Rules are `communities.reports`'."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.communities import reports
from kith.communities.models import Community, CommunityPost
from kith.errors import KithError, NotFound, ValidationFailed
from kith.posts import presenter
from kith.posts.models import Post
from kith.web.communities import community_or_404
from kith.web.deps import Current, check_csrf, get_db, signed_in
from kith.web.forms import form_int, form_str
from kith.web.templating import render

router = APIRouter(dependencies=[Depends(check_csrf)])


def _me(me: Current) -> int:
    assert me.viewer.account_id is not None  # `signed_in` guarantees it
    return me.viewer.account_id


async def _form_page(
    request: Request,
    db: AsyncSession,
    me: Current,
    community: Community,
    post_id: int,
    error: KithError | None = None,
    form: dict[str, Any] | None = None,
) -> Response:
    """The report form, under the post it is about (404 for a post of another community or
    one the reader may not see, as the service answers)."""
    post = await db.get(Post, post_id)
    if (
        post is None
        or await db.get(CommunityPost, (community.id, post_id)) is None
        or not await policy.can_see_community(db, me.viewer, community)
        or not await policy.can_see_post(db, me.viewer, post)
    ):
        raise NotFound("No such post in this community.")
    views = await presenter.present(db, me.viewer, [post])
    rules = [line.strip() for line in (community.rules or "").splitlines() if line.strip()]
    return await render(
        request,
        db,
        "communities/report.html",
        {
            "title": f"Report a post to the moderators of {community.name}",
            "community": community,
            "view": views[0] if views else None,
            "rules": rules,
            "max_reason": reports.MAX_REASON,
            "form": form or {},
            "errors": {error.field or "form": error.message} if error else {},
        },
        status=error.status if error else 200,
    )


@router.get("/c/{handle}/report/{post_id:int}")
async def report_form(
    request: Request,
    handle: str,
    post_id: int,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    community = await community_or_404(db, handle)
    return await _form_page(request, db, me, community, post_id)


@router.post("/c/{handle}/report/{post_id:int}")
async def file_report(
    request: Request,
    handle: str,
    post_id: int,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    """Send the report to the community's moderators (and, if asked, this server's)."""
    community = await community_or_404(db, handle)
    form = await request.form()
    try:
        await reports.report_post(
            db,
            me.viewer,
            community,
            post_id,
            form_str(form, "reason"),
            rule=form_int(form, "rule"),
            tell_instance=form_str(form, "tell_instance") == "on",
        )
    except ValidationFailed as err:
        return await _form_page(request, db, me, community, post_id, err, dict(form.items()))
    return RedirectResponse(f"/c/{community.address}?notice=reported", status_code=303)


async def _reports_page(
    request: Request,
    db: AsyncSession,
    me: Current,
    community: Community,
    error: KithError | None = None,
) -> Response:
    notice = request.query_params.get("notice", "")
    return await render(
        request,
        db,
        "communities/reports.html",
        {
            "title": f"{community.name}: reports",
            "community": community,
            "section": "reports",
            "reports": await reports.open_reports(db, _me(me), community),
            "notice": {"removed": "Post removed.", "dismissed": "Report dismissed."}.get(notice),
            "errors": {error.field or "form": error.message} if error else {},
        },
        status=error.status if error else 200,
    )


@router.get("/c/{handle}/reports")
async def reports_page(
    request: Request,
    handle: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    """The community's open reports (its moderators only: anyone else gets 403)."""
    community = await community_or_404(db, handle)
    return await _reports_page(request, db, me, community)


@router.post("/c/{handle}/reports/{report_id:int}/{action}")
async def settle_report(
    request: Request,
    handle: str,
    report_id: int,
    action: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    """Remove the reported post (`remove`) or dismiss the report (`dismiss`)."""
    if action not in ("remove", "dismiss"):
        raise NotFound()
    community = await community_or_404(db, handle)
    form = await request.form()
    try:
        await reports.resolve_report(
            db,
            _me(me),
            community,
            report_id,
            remove=action == "remove",
            reason=form_str(form, "reason"),
        )
    except ValidationFailed as err:
        return await _reports_page(request, db, me, community, err)
    notice = "removed" if action == "remove" else "dismissed"
    return RedirectResponse(f"/c/{community.handle}/reports?notice={notice}", status_code=303)
