"""Sign-up, sign-in and sign-out pages."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts import service as accounts
from kith.accounts.models import RegistrationMode
from kith.errors import RateLimited, ValidationFailed
from kith.web.deps import SESSION_COOKIE, Current, check_csrf, client_ip, current, get_db, runtime
from kith.web.templating import render

router = APIRouter(dependencies=[Depends(check_csrf)])


def safe_next(url: str | None) -> str:
    """Only same-site paths are followed after sign-in (no open redirect)."""
    if url and url.startswith("/") and not url.startswith("//") and "\\" not in url:
        return url
    return "/home"


def signed_in_response(request: Request, token: str, to: str) -> Response:
    response = RedirectResponse(to, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=runtime(request).settings.https,
        max_age=int(accounts.SESSION_LIFETIME.total_seconds()),
    )
    return response


@router.get("/auth/sign_up")
async def sign_up_page(
    request: Request,
    invite: str = "",
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(current),
) -> Response:
    if me.user:
        return RedirectResponse("/home", status_code=303)
    return await render(request, db, "auth/sign_up.html", {"form": {"invite": invite}})


@router.post("/auth/sign_up")
async def sign_up(
    request: Request,
    username: str = Form(""),
    email: str = Form(""),
    password: str = Form(""),
    password_confirmation: str = Form(""),
    invite: str = Form(""),
    reason: str = Form(""),
    agreement: str = Form(""),
    db: AsyncSession = Depends(get_db),
) -> Response:
    form = {"username": username, "email": email, "invite": invite, "reason": reason}
    try:
        if password != password_confirmation:
            raise ValidationFailed("The passwords don't match.", field="password_confirmation")
        if not agreement:
            raise ValidationFailed("Please accept the rules to join.", field="agreement")
        reg = await accounts.register(
            db,
            username=username,
            email=email,
            password=password,
            invite_code=invite or None,
            reason=reason,
        )
    except ValidationFailed as err:
        return await render(
            request,
            db,
            "auth/sign_up.html",
            {"form": form, "errors": {err.field: err.message}},
            status=422,
        )
    if reg.needs_approval:
        return await render(request, db, "auth/pending.html", {"account": reg.account})
    token = await accounts.start_session(
        db, reg.user, user_agent=request.headers.get("user-agent", "")
    )
    return signed_in_response(request, token, "/home")


@router.get("/auth/sign_in")
async def sign_in_page(
    request: Request,
    next: str = "",
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(current),
) -> Response:
    if me.user:
        return RedirectResponse(safe_next(next), status_code=303)
    return await render(request, db, "auth/sign_in.html", {"form": {"next": next}})


@router.post("/auth/sign_in")
async def sign_in(
    request: Request,
    login: str = Form(""),
    password: str = Form(""),
    next: str = Form(""),
    db: AsyncSession = Depends(get_db),
) -> Response:
    throttle = request.app.state.login_throttle
    try:
        user = await accounts.authenticate(
            db, throttle, login=login, password=password, ip=client_ip(request)
        )
    except (ValidationFailed, RateLimited) as err:
        status = 429 if isinstance(err, RateLimited) else 422
        resp = await render(
            request,
            db,
            "auth/sign_in.html",
            {"form": {"login": login, "next": next}, "errors": {"login": err.message}},
            status=status,
        )
        if isinstance(err, RateLimited):
            resp.headers["Retry-After"] = str(err.retry_after)
        return resp
    needs_2fa = user.totp_enabled_at is not None
    token = await accounts.start_session(
        db, user, user_agent=request.headers.get("user-agent", ""), second_factor_due=needs_2fa
    )
    to = f"/auth/two_factor?next={safe_next(next)}" if needs_2fa else safe_next(next)
    return signed_in_response(request, token, to)


@router.post("/auth/sign_out")
async def sign_out(request: Request, db: AsyncSession = Depends(get_db)) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await accounts.end_session(db, token)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


__all__ = ["router", "RegistrationMode"]
