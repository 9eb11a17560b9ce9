"""Reporting an account, and some of its posts, to the moderators (/report)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts import service as accounts
from kith.accounts.models import Account
from kith.errors import NotFound, ValidationFailed
from kith.moderation import service as moderation
from kith.moderation.models import ReportCategory
from kith.posts import presenter
from kith.posts import service as posts
from kith.timelines import service as timelines
from kith.web.deps import Current, check_csrf, get_db, signed_in
from kith.web.forms import form_int, form_str
from kith.web.templating import render

router = APIRouter(dependencies=[Depends(check_csrf)])

CATEGORY_LABELS = {
    ReportCategory.SPAM: "It's spam",
    ReportCategory.LEGAL: "It's illegal where I live",
    ReportCategory.VIOLATION: "It breaks the rules of this instance",
    ReportCategory.OTHER: "Something else",
}


async def _form_page(
    request: Request,
    db: AsyncSession,
    me: Current,
    target: Account,
    form: dict[str, Any],
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    """The report form: reasons, a comment, and the account's recent posts the reporter sees."""
    page = await timelines.profile(db, me.viewer, target, tab="replies", limit=20)
    own_posts = [p for p in page.posts if p.reblog_of_id is None]
    return await render(
        request,
        db,
        "report.html",
        {
            "title": f"Report @{target.acct}",
            "target": target,
            "views": await presenter.present(db, me.viewer, own_posts),
            "categories": CATEGORY_LABELS,
            "rules": (await accounts.get_instance_settings(db)).rules,
            "max_comment": moderation.MAX_COMMENT,
            "form": form,
            "errors": errors or {},
        },
        status=status,
    )


@router.get("/report")
async def report_page(
    request: Request,
    post_id: str = "",
    account: str = "",
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    """The form for a post (`?post_id=`) or an account (`?account=name`)."""
    target: Account | None = None
    checked: list[int] = []
    if post_id.isdigit() and len(post_id) < 20:
        post = await posts.get_visible_post(db, me.viewer, int(post_id))
        target = await db.get(Account, post.account_id)
        checked = [post.id]
    elif account:
        target = await accounts.find_local_account(db, account[:64])
        if target is not None and not await policy.can_see_account(db, me.viewer, target):
            target = None
    if target is None:
        raise NotFound("Nothing to report here.")
    if target.id == me.viewer.account_id:
        raise ValidationFailed("You can't report yourself.", field="account_id")
    return await _form_page(
        request, db, me, target, {"status_ids": checked, "category": ReportCategory.OTHER}
    )


@router.post("/report")
async def file_report(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    form = await request.form()
    account_id = form_int(form, "account_id") or 0
    raw_ids = [v for v in form.getlist("status_ids") if isinstance(v, str)]
    try:
        if any(not v.isdigit() or len(v) > 19 for v in raw_ids):
            raise ValidationFailed("Pick posts from the list.", field="status_ids")
        await moderation.file_report(
            db,
            me.viewer,
            account_id=account_id,
            post_ids=[int(v) for v in raw_ids],
            category=form_str(form, "category"),
            comment=form_str(form, "comment"),
            forward=form_str(form, "forward") == "on",
        )
    except ValidationFailed as err:
        target = await db.get(Account, account_id)
        if (
            target is None
            or target.id == me.viewer.account_id
            or not await policy.can_see_account(db, me.viewer, target)
        ):
            raise
        values = {
            "status_ids": [int(v) for v in raw_ids if v.isdigit() and len(v) < 20],
            "category": form_str(form, "category"),
            "comment": form_str(form, "comment"),
        }
        return await _form_page(
            request, db, me, target, values, {err.field or "form": err.message}, status=422
        )
    return RedirectResponse("/report/sent", status_code=303)


@router.get("/report/sent")
async def report_sent(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    return await render(request, db, "report.html", {"title": "Report sent", "sent": True})
