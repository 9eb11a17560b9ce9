"""Sign-up, sign-in (with its two-factor step), sign-out, email confirmation and password
reset pages."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts import credentials, two_factor
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


# Messages the sign-in page may show after a redirect (a key, so no text is reflected).
SIGN_IN_NOTICES = {
    "reset": "Your password was changed and every session signed out. Sign in with the new one.",
    "expired": "Your sign-in took too long. Sign in again.",
    "deleted": "Your account is deleted. What it left is being removed, here and on the "
    "other servers that knew it.",
}


@router.get("/auth/sign_in")
async def sign_in_page(
    request: Request,
    next: str = "",
    notice: str = "",
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(current),
) -> Response:
    if me.user:
        return RedirectResponse(safe_next(next), status_code=303)
    return await render(
        request,
        db,
        "auth/sign_in.html",
        {"form": {"next": next}, "notice": SIGN_IN_NOTICES.get(notice)},
    )


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


# --- the second step of signing in --------------------------------------------------------


@router.get("/auth/two_factor")
async def two_factor_page(
    request: Request,
    next: str = "",
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(current),
) -> Response:
    if me.user:
        return RedirectResponse(safe_next(next), status_code=303)
    if not me.awaiting_second_factor:
        return RedirectResponse("/auth/sign_in?notice=expired", status_code=303)
    return await render(request, db, "auth/two_factor.html", {"form": {"next": safe_next(next)}})


@router.post("/auth/two_factor")
async def two_factor_submit(
    request: Request,
    code: str = Form(""),
    next: str = Form(""),
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(current),
) -> Response:
    half = await accounts.session_for_token(db, me.session_token or "")
    user = await accounts.get_user(db, half.user_id) if half else None
    if half is None or user is None or not half.awaiting_second_factor:
        return RedirectResponse("/auth/sign_in?notice=expired", status_code=303)
    try:
        await two_factor.verify_sign_in(db, user, code, request.app.state.second_factor_throttle)
        token = await accounts.finish_second_factor(
            db, me.session_token or "", user_agent=request.headers.get("user-agent", "")
        )
    except (ValidationFailed, RateLimited) as err:
        resp = await render(
            request,
            db,
            "auth/two_factor.html",
            {"form": {"next": safe_next(next)}, "errors": {"code": err.message}},
            status=429 if isinstance(err, RateLimited) else 422,
        )
        if isinstance(err, RateLimited):
            resp.headers["Retry-After"] = str(err.retry_after)
        return resp
    return signed_in_response(request, token, safe_next(next))


# --- email confirmation and password reset ------------------------------------------------


@router.get("/auth/confirm")
async def confirm(
    request: Request, token: str = "", db: AsyncSession = Depends(get_db)
) -> Response:
    try:
        await credentials.confirm_email(db, token)
    except ValidationFailed as err:
        return await render(request, db, "auth/confirmed.html", {"error": err.message}, status=400)
    return await render(request, db, "auth/confirmed.html", {})


@router.get("/auth/password/forgot")
async def forgot_page(request: Request, db: AsyncSession = Depends(get_db)) -> Response:
    return await render(request, db, "auth/forgot.html", {})


@router.post("/auth/password/forgot")
async def forgot(
    request: Request, email: str = Form(""), db: AsyncSession = Depends(get_db)
) -> Response:
    throttle: credentials.MailThrottle = request.app.state.mail_throttle
    try:
        throttle.check_ip(client_ip(request))
        await credentials.request_password_reset(db, email, throttle)
    except (ValidationFailed, RateLimited) as err:
        resp = await render(
            request,
            db,
            "auth/forgot.html",
            {"form": {"email": email}, "errors": {"email": err.message}},
            status=429 if isinstance(err, RateLimited) else 422,
        )
        if isinstance(err, RateLimited):
            resp.headers["Retry-After"] = str(err.retry_after)
        return resp
    return await render(request, db, "auth/forgot.html", {"sent": True})


@router.get("/auth/password/reset")
async def reset_page(
    request: Request, token: str = "", db: AsyncSession = Depends(get_db)
) -> Response:
    try:
        await credentials.check_reset_token(db, token)
    except ValidationFailed as err:
        return await render(request, db, "auth/reset.html", {"invalid": err.message}, status=400)
    return await render(request, db, "auth/reset.html", {"token": token})


@router.post("/auth/password/reset")
async def reset(
    request: Request,
    token: str = Form(""),
    password: str = Form(""),
    password_confirmation: str = Form(""),
    db: AsyncSession = Depends(get_db),
) -> Response:
    try:
        if password != password_confirmation:
            await credentials.check_reset_token(db, token)
            raise ValidationFailed("The passwords don't match.", field="password_confirmation")
        await credentials.reset_password(db, token, password)
    except ValidationFailed as err:
        if err.field == "token":
            return await render(
                request, db, "auth/reset.html", {"invalid": err.message}, status=400
            )
        return await render(
            request,
            db,
            "auth/reset.html",
            {"token": token, "errors": {err.field: err.message}},
            status=422,
        )
    response = RedirectResponse("/auth/sign_in?notice=reset", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


__all__ = ["router", "RegistrationMode"]
