"""Settings pages for client apps: authorized apps (sign one out) and Development (make an app
and see its access token at once, for scripts and bots)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kith.errors import ValidationFailed
from kith.oauth import service as oauth
from kith.oauth.scopes import TOP_LEVEL
from kith.web.deps import Current, check_csrf, get_db, signed_in
from kith.web.forms import form_int, form_str
from kith.web.templating import render

router = APIRouter(dependencies=[Depends(check_csrf)])


@router.get("/settings/applications")
async def applications(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    assert me.account is not None
    apps = await oauth.authorized_apps(db, me.account.id)
    return await render(
        request, db, "settings/applications.html", {"apps": apps, "title": "Authorized apps"}
    )


@router.post("/settings/applications/revoke")
async def revoke(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    assert me.account is not None
    form = await request.form()
    app_id = form_int(form, "app_id")
    if app_id is not None:
        await oauth.revoke_app_for(db, me.account.id, app_id)
    return RedirectResponse("/settings/applications", status_code=303)


@router.get("/settings/development")
async def development(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    return await render(
        request,
        db,
        "settings/development.html",
        {"title": "Development", "scopes": sorted(TOP_LEVEL)},
    )


@router.post("/settings/development")
async def create_token(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    assert me.account is not None
    form = await request.form()
    name = form_str(form, "name")
    scopes = " ".join(s for s in form.getlist("scopes") if isinstance(s, str)) or "read"
    try:
        issued = await oauth.create_personal_token(db, me.account, name, scopes)
    except ValidationFailed as err:
        field = "name" if err.field == "client_name" else err.field
        return await render(
            request,
            db,
            "settings/development.html",
            {
                "title": "Development",
                "scopes": sorted(TOP_LEVEL),
                "errors": {field: err.message},
                "form": {"name": name},
            },
            status=422,
        )
    return await render(
        request,
        db,
        "settings/development.html",
        {
            "title": "Development",
            "scopes": sorted(TOP_LEVEL),
            "issued": issued,
            "app_name": name.strip(),
        },
    )
