"""The admins' federation page (/admin/federation): the remote instances known here with
their delivery record and queue, "re-deliver now", and the domain blocks (add, change, lift).
Admins only; the services check again."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kith.errors import ValidationFailed
from kith.federation import domain_blocks, instances
from kith.web.deps import Current, admin_only, check_csrf, get_db
from kith.web.forms import form_str
from kith.web.templating import render

router = APIRouter(
    prefix="/admin/federation", dependencies=[Depends(check_csrf), Depends(admin_only)]
)

NOTICES = {
    "redelivered": "Deliveries to that host are due now; its breaker is closed.",
    "blocked": "Domain block saved.",
    "unblocked": "Domain block lifted.",
}
SEVERITY_LABELS = {
    domain_blocks.SUSPEND: "Suspend: no federation; its accounts and posts are hidden",
    domain_blocks.SILENCE: "Silence: its posts only reach people who follow its accounts",
    domain_blocks.NONE: "None (only the media option below)",
}


async def _page(
    request: Request,
    db: AsyncSession,
    me: Current,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return await render(
        request,
        db,
        "admin/federation.html",
        {
            "title": "Federation",
            "instances": await instances.known_instances(db, me.viewer),
            "blocks": await domain_blocks.list_blocks(db, me.viewer),
            "severities": SEVERITY_LABELS,
            "form": form or {"severity": domain_blocks.SUSPEND},
            "errors": errors or {},
            "notice": NOTICES.get(request.query_params.get("notice", ""), ""),
            "section": "federation",
        },
        status=status,
    )


@router.get("")
async def federation_page(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(admin_only)
) -> Response:
    """Known instances with delivery state and queue, and the domain blocks."""
    return await _page(request, db, me)


@router.post("/hosts/{host}/redeliver")
async def redeliver(
    host: str, db: AsyncSession = Depends(get_db), me: Current = Depends(admin_only)
) -> Response:
    await instances.redeliver_now(db, me.viewer, host.lower())
    return RedirectResponse("/admin/federation?notice=redelivered", status_code=303)


@router.post("/domain_blocks")
async def save_block(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(admin_only)
) -> Response:
    """Add a block, or change the block of a domain already blocked."""
    form = await request.form()
    try:
        await domain_blocks.block_domain(
            db,
            me.viewer,
            form_str(form, "domain"),
            severity=form_str(form, "severity"),
            reject_media=form_str(form, "reject_media") == "on",
            public_comment=form_str(form, "public_comment"),
            private_comment=form_str(form, "private_comment"),
        )
    except ValidationFailed as err:  # refused before anything was written
        return await _page(
            request, db, me, dict(form.items()), {err.field or "form": err.message}, status=422
        )
    return RedirectResponse("/admin/federation?notice=blocked#domain-blocks", status_code=303)


@router.post("/domain_blocks/remove")
async def remove_block(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(admin_only)
) -> Response:
    form = await request.form()
    await domain_blocks.unblock_domain(db, me.viewer, form_str(form, "domain"))
    return RedirectResponse("/admin/federation?notice=unblocked#domain-blocks", status_code=303)
