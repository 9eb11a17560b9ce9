"""The OAuth consent page: a signed-in person approves or denies an app's request."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kith.oauth import service as oauth
from kith.oauth.scopes import format_scopes
from kith.web.deps import Current, check_csrf, current, get_db
from kith.web.forms import form_str
from kith.web.templating import render

router = APIRouter(dependencies=[Depends(check_csrf)])


def _with_query(uri: str, params: dict[str, str]) -> str:
    sep = "&" if urlsplit(uri).query else "?"
    return f"{uri}{sep}{urlencode(params)}"


async def _checked(db: AsyncSession, p: dict[str, str]) -> oauth.AuthorizationRequest:
    return await oauth.check_authorization_request(
        db,
        client_id=p.get("client_id", ""),
        redirect_uri=p.get("redirect_uri", ""),
        response_type=p.get("response_type", ""),
        scope=p.get("scope") or None,
        state=p.get("state") or None,
        code_challenge=p.get("code_challenge") or None,
        code_challenge_method=p.get("code_challenge_method") or None,
    )


FIELDS = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
)


@router.get("/oauth/authorize")
async def authorize_page(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(current)
) -> Response:
    p = {k: v for k, v in request.query_params.items() if k in FIELDS}
    try:
        req = await _checked(db, p)
    except oauth.OAuthError as err:
        # Never redirect to a URI we could not verify: show the error here.
        return await render(
            request, db, "error.html", {"status": 400, "message": err.message}, status=400
        )
    if me.user is None:
        return RedirectResponse(
            f"/auth/sign_in?{urlencode({'next': str(request.url.path) + '?' + request.url.query})}",
            status_code=303,
        )
    response = await render(
        request,
        db,
        "oauth_authorize.html",
        {
            "app": req.app,
            "scopes": format_scopes(req.scopes).split(),
            "params": p,
            "title": f"Authorize {req.app.name}",
        },
    )
    # Browsers apply form-action to the redirect after the form: allow the app's redirect URI.
    response.headers["Content-Security-Policy"] = csp_allowing(req.redirect_uri)
    return response


def csp_allowing(redirect_uri: str) -> str:
    """The site's CSP, with form-action widened to this redirect URI's origin (or scheme)."""
    parts = urlsplit(redirect_uri)
    target = ""
    if redirect_uri != oauth.OOB:
        target = f"{parts.scheme}://{parts.netloc}" if parts.netloc else f"{parts.scheme}:"
    return (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
        f"frame-ancestors 'none'; form-action 'self' {target}; base-uri 'none'"
    )


@router.post("/oauth/authorize")
async def authorize(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(current)
) -> Response:
    form = await request.form()
    p = {k: form_str(form, k) for k in FIELDS}
    try:
        req = await _checked(db, p)
    except oauth.OAuthError as err:
        return await render(
            request, db, "error.html", {"status": 400, "message": err.message}, status=400
        )
    if me.user is None or me.account is None:
        return RedirectResponse("/auth/sign_in", status_code=303)
    extra = {"state": req.state} if req.state else {}
    if form_str(form, "decision") != "approve":
        if req.redirect_uri == oauth.OOB:
            return RedirectResponse("/home", status_code=303)
        return RedirectResponse(
            _with_query(req.redirect_uri, {"error": "access_denied", **extra}), status_code=303
        )
    code = await oauth.issue_code(db, req, me.account)
    if req.redirect_uri == oauth.OOB:
        return await render(
            request,
            db,
            "oauth_code.html",
            {"code": code, "app": req.app, "title": "Authorization code"},
        )
    return RedirectResponse(_with_query(req.redirect_uri, {"code": code, **extra}), status_code=303)
