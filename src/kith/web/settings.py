"""Settings pages of the signed-in person: profile (with avatar and header), account (password,
email), two-factor sign-in and invite links."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData, UploadFile

from kith.accounts import credentials, deletion, invites, profile, two_factor
from kith.accounts.models import User
from kith.accounts.service import get_instance_settings
from kith.errors import KithError, RateLimited, ValidationFailed
from kith.media.images import ImageRejected
from kith.web.deps import (
    SESSION_COOKIE,
    Current,
    check_csrf,
    declares_body_over,
    get_db,
    runtime,
    signed_in,
)
from kith.web.forms import form_int, form_str
from kith.web.templating import render


class UploadTooLarge(ImageRejected):
    status = 413


async def limit_body_size(request: Request) -> None:
    """Refuse a body larger than the biggest upload allowed before anything parses it (the
    CSRF check reads the form). No settings form needs more than an image and some text."""
    limit = runtime(request).settings.max_avatar_bytes + 256 * 1024
    if declares_body_over(request, limit):
        raise UploadTooLarge(
            f"The upload is too large: at most {limit // (1024 * 1024)} MB.", field="form"
        )


router = APIRouter(dependencies=[Depends(limit_body_size), Depends(check_csrf)])

# Shown after a redirect, chosen by key so no text is reflected from the URL.
NOTICES = {
    "saved": "Saved.",
    "password": "Password changed. Every other browser was signed out.",
    "email": "Address changed. We sent a confirmation link to the new address.",
    "confirmation": "We sent you a new confirmation link.",
    "disabled": "Two-factor sign-in is off.",
    "revoked": "The invite link no longer works.",
}


def _user(me: Current) -> User:
    assert me.user is not None  # `signed_in` guarantees it
    return me.user


def _done(path: str, notice: str) -> Response:
    return RedirectResponse(f"{path}?notice={notice}", status_code=303)


async def _page(
    request: Request,
    db: AsyncSession,
    template: str,
    context: dict[str, Any],
    *,
    notice: str = "",
    error: KithError | None = None,
) -> Response:
    """Render a settings page, with a form error (and the right status) when there is one."""
    ctx = {"notice": NOTICES.get(notice), "section": template.split("/")[-1][:-5], **context}
    status = 200
    if error is not None:
        ctx["errors"] = {error.field or "form": error.message}
        status = 429 if isinstance(error, RateLimited) else error.status
    response = await render(request, db, template, ctx, status=status)
    if isinstance(error, RateLimited):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


@router.get("/settings")
async def settings_index(me: Current = Depends(signed_in)) -> Response:
    return RedirectResponse("/settings/profile", status_code=303)


# --- profile -----------------------------------------------------------------------------


def _profile_form(account: Any) -> dict[str, Any]:
    fields = [(f.get("name", ""), f.get("value", "")) for f in account.fields]
    fields += [("", "")] * (profile.MAX_FIELDS - len(fields))
    return {
        "display_name": account.display_name,
        "bio": account.bio_source,
        "pronouns": account.pronouns,
        "fields": fields,
        "locked": account.locked,
        "discoverable": account.discoverable,
        "hide_network": account.hide_network,
    }


def _profile_input(form: FormData) -> profile.ProfileInput:
    return profile.ProfileInput(
        display_name=form_str(form, "display_name"),
        bio=form_str(form, "bio"),
        pronouns=form_str(form, "pronouns"),
        fields=[
            (form_str(form, f"field_{i}_name"), form_str(form, f"field_{i}_value"))
            for i in range(profile.MAX_FIELDS)
        ],
        locked=form_str(form, "locked") == "on",
        discoverable=form_str(form, "discoverable") == "on",
        hide_network=form_str(form, "hide_network") == "on",
    )


@router.get("/settings/profile")
async def profile_page(
    request: Request,
    notice: str = "",
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    account = _user(me).account
    return await _page(
        request,
        db,
        "settings/profile.html",
        {"form": _profile_form(account), "account": account},
        notice=notice,
    )


@router.post("/settings/profile")
async def profile_save(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    account = _user(me).account
    data = _profile_input(await request.form())
    try:
        await profile.update_profile(db, account, data)
    except ValidationFailed as err:
        form = vars(data)
        return await _page(
            request, db, "settings/profile.html", {"form": form, "account": account}, error=err
        )
    return _done("/settings/profile", "saved")


async def _read_upload(form: FormData, name: str, limit: int) -> bytes:
    """The uploaded file's bytes, reading at most one byte past `limit` (enough to refuse)."""
    upload = form.get(name)
    if not isinstance(upload, UploadFile):
        return b""
    return await upload.read(limit + 1)


@router.post("/settings/profile/{kind}")
async def image_upload(
    request: Request,
    kind: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    if kind not in ("avatar", "header"):
        raise ValidationFailed("Unknown image.", field="form")
    account = _user(me).account
    form = await request.form()
    try:
        if form_str(form, "remove") == "on":
            await profile.remove_image(db, account, kind)  # type: ignore[arg-type]
        else:
            limit = runtime(request).settings.max_avatar_bytes
            data = await _read_upload(form, kind, limit)
            await profile.set_image(db, account, kind, data)  # type: ignore[arg-type]
    except ValidationFailed as err:
        return await _page(
            request,
            db,
            "settings/profile.html",
            {"form": _profile_form(account), "account": account},
            error=err,
        )
    return _done("/settings/profile", "saved")


# --- account: password and email ---------------------------------------------------------


@router.get("/settings/account")
async def account_page(
    request: Request,
    notice: str = "",
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    return await _page(request, db, "settings/account.html", {}, notice=notice)


@router.post("/settings/account/password")
async def password_change(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    form = await request.form()
    try:
        if form_str(form, "password") != form_str(form, "password_confirmation"):
            raise ValidationFailed("The passwords don't match.", field="password_confirmation")
        await credentials.change_password(
            db,
            _user(me),
            current_password=form_str(form, "current_password"),
            new_password=form_str(form, "password"),
            keep_session=me.session_token,
        )
    except ValidationFailed as err:
        return await _page(request, db, "settings/account.html", {}, error=err)
    return _done("/settings/account", "password")


@router.post("/settings/account/email")
async def email_change(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    form = await request.form()
    try:
        await credentials.change_email(
            db,
            _user(me),
            current_password=form_str(form, "email_password"),
            new_email=form_str(form, "email"),
            throttle=request.app.state.mail_throttle,
        )
    except (ValidationFailed, RateLimited) as err:
        if err.field == "current_password":
            err.field = "email_password"
        return await _page(
            request,
            db,
            "settings/account.html",
            {"form": {"email": form_str(form, "email")}},
            error=err,
        )
    return _done("/settings/account", "email")


@router.post("/settings/account/confirmation")
async def confirmation_resend(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    try:
        await credentials.resend_confirmation(db, _user(me), request.app.state.mail_throttle)
    except (ValidationFailed, RateLimited) as err:
        err.field = "confirmation"
        return await _page(request, db, "settings/account.html", {}, error=err)
    return _done("/settings/account", "confirmation")


# --- two-factor sign-in ------------------------------------------------------------------


async def _two_factor_context(request: Request, db: AsyncSession, user: User) -> dict[str, Any]:
    context: dict[str, Any] = {"enabled": user.totp_enabled_at is not None}
    if user.totp_enabled_at is not None:
        context["codes_left"] = await two_factor.recovery_codes_left(db, user)
    elif user.totp_secret:
        instance_name = (await get_instance_settings(db)).name or runtime(request).settings.domain
        context["secret"] = user.totp_secret
        context["uri"] = two_factor.provisioning_uri(user, user.totp_secret, instance_name)
    return context


async def _two_factor_page(
    request: Request,
    db: AsyncSession,
    user: User,
    *,
    notice: str = "",
    error: KithError | None = None,
    codes: list[str] | None = None,
) -> Response:
    context = await _two_factor_context(request, db, user)
    context["recovery_codes"] = codes
    response = await _page(
        request, db, "settings/two_factor.html", context, notice=notice, error=error
    )
    response.headers["Cache-Control"] = "no-store"  # a secret or codes may be on it
    return response


@router.get("/settings/two_factor")
async def two_factor_page(
    request: Request,
    notice: str = "",
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    return await _two_factor_page(request, db, _user(me), notice=notice)


@router.post("/settings/two_factor/{action}")
async def two_factor_action(
    request: Request,
    action: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    user = _user(me)
    form = await request.form()
    throttle: two_factor.SecondFactorThrottle = request.app.state.second_factor_throttle
    code, password = form_str(form, "code"), form_str(form, "password")
    codes: list[str] | None = None
    try:
        if action == "setup":
            await two_factor.begin_setup(db, user, password=password, throttle=throttle)
        elif action == "enable":
            codes = await two_factor.enable(db, user, code=code, throttle=throttle)
        elif action == "disable":
            await two_factor.disable(db, user, code=code, password=password, throttle=throttle)
            return _done("/settings/two_factor", "disabled")
        elif action == "recovery_codes":
            codes = await two_factor.regenerate_recovery_codes(
                db, user, code=code, throttle=throttle
            )
        else:
            raise ValidationFailed("Unknown action.", field="form")
    except (ValidationFailed, RateLimited) as err:
        # Name the form the error belongs to; a throttle error belongs to its main input.
        err.field = f"{action}_{err.field or ('password' if action == 'setup' else 'code')}"
        return await _two_factor_page(request, db, user, error=err)
    # The recovery codes exist only in this response: render it rather than redirect.
    return await _two_factor_page(request, db, user, codes=codes)


# --- deleting the account ----------------------------------------------------------------


@router.get("/settings/delete")
async def delete_page(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    return await _delete_page(request, db, _user(me))


async def _delete_page(
    request: Request, db: AsyncSession, user: User, error: KithError | None = None
) -> Response:
    context = {"two_factor": user.totp_enabled_at is not None}
    response = await _page(request, db, "settings/delete.html", context, error=error)
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/settings/delete")
async def delete_account(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    """Delete the signed-in person's account (password, and a code when two-factor sign-in
    is on); the session goes with it."""
    user = _user(me)
    form = await request.form()
    try:
        await deletion.delete_own_account(
            db,
            user,
            password=form_str(form, "password"),
            code=form_str(form, "code"),
            throttle=request.app.state.second_factor_throttle,
        )
    except (ValidationFailed, RateLimited) as err:
        if err.field is None:
            err.field = "password"
        return await _delete_page(request, db, user, error=err)
    response = RedirectResponse("/auth/sign_in?notice=deleted", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


# --- invites -----------------------------------------------------------------------------


@router.get("/settings/invites")
async def invites_page(
    request: Request,
    notice: str = "",
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    return await _invites_page(request, db, _user(me), notice=notice)


async def _invites_page(
    request: Request,
    db: AsyncSession,
    user: User,
    *,
    notice: str = "",
    error: KithError | None = None,
) -> Response:
    base = runtime(request).settings.base_url
    context = {
        "may_invite": await invites.may_invite(db, user),
        "invites": await invites.list_invites(db, user, base),
        "expiry_choices": invites.EXPIRY_CHOICES,
        "max_uses_choices": invites.MAX_USES_CHOICES,
    }
    return await _page(request, db, "settings/invites.html", context, notice=notice, error=error)


@router.post("/settings/invites")
async def invite_create(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    form = await request.form()
    try:
        await invites.create_invite(
            db,
            _user(me),
            expires_in=form_int(form, "expires_in"),
            max_uses=form_int(form, "max_uses"),
        )
    except ValidationFailed as err:
        return await _invites_page(request, db, _user(me), error=err)
    return _done("/settings/invites", "saved")


@router.post("/settings/invites/{invite_id:int}/revoke")
async def invite_revoke(
    invite_id: int, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    await invites.revoke_invite(db, _user(me), invite_id)
    return _done("/settings/invites", "revoked")
