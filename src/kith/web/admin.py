"""The admin area (/admin): reports, account actions, sign-ups waiting for approval and the
instance settings. Admins only; the services check again."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts import deletion
from kith.accounts import service as accounts
from kith.accounts.models import Account, RegistrationMode
from kith.communities.models import CommunityCreation
from kith.errors import NotFound, ValidationFailed
from kith.moderation import instance, sign_ups
from kith.moderation import service as moderation
from kith.web.auth import safe_next
from kith.web.deps import Current, admin_only, check_csrf, get_db
from kith.web.forms import form_str
from kith.web.templating import render
from kith.web.timelines import _cursor

router = APIRouter(prefix="/admin", dependencies=[Depends(check_csrf), Depends(admin_only)])

REGISTRATION_LABELS = {
    RegistrationMode.OPEN: "Anyone can sign up",
    RegistrationMode.APPROVAL: "Anyone can ask; an admin approves each sign-up",
    RegistrationMode.INVITE: "Only people with an invite link",
    RegistrationMode.CLOSED: "Nobody",
}
COMMUNITY_CREATION_LABELS = {
    CommunityCreation.EVERYONE: "Anyone with an account here",
    CommunityCreation.ADMINS: "Only admins",
}
NOTICES = {
    "resolved": "Report resolved.",
    "suspend": "Account suspended.",
    "unsuspend": "Suspension lifted.",
    "silence": "Account silenced.",
    "unsilence": "Account no longer silenced.",
    "approve": "Sign-up approved.",
    "reject": "Sign-up rejected; the account is deleted.",
    "saved": "Settings saved.",
    "deleted": "Account deleted. What it left is being removed, here and on other servers.",
}


def _notice(request: Request) -> str:
    """A message chosen by key after a redirect, so no text is reflected from the URL."""
    return NOTICES.get(request.query_params.get("notice", ""), "")


def _back(next_url: str, default: str, notice: str) -> Response:
    to = safe_next(next_url) if next_url.startswith("/admin") else default
    sep = "&" if "?" in to else "?"
    return RedirectResponse(f"{to}{sep}notice={notice}", status_code=303)


@router.get("")
async def overview(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(admin_only)
) -> Response:
    """What waits for the admins: open reports and pending sign-ups."""
    return await render(
        request,
        db,
        "admin/index.html",
        {
            "title": "Admin",
            "open_reports": len(await moderation.open_reports(db)),
            "pending": len(await sign_ups.pending_sign_ups(db, me.viewer)),
            "section": "",
        },
    )


@router.get("/reports")
async def reports_page(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(admin_only)
) -> Response:
    return await render(
        request,
        db,
        "admin/reports.html",
        {
            "title": "Reports",
            "reports": await moderation.open_report_views(db, me.viewer),
            "notice": _notice(request),
            "section": "reports",
        },
    )


@router.post("/reports/{report_id:int}/resolve")
async def resolve_report(
    report_id: int, db: AsyncSession = Depends(get_db), me: Current = Depends(admin_only)
) -> Response:
    await moderation.resolve_report(db, me.viewer, report_id)
    return RedirectResponse("/admin/reports?notice=resolved", status_code=303)


@router.get("/accounts")
async def accounts_page(
    request: Request,
    q: str = "",
    max_id: str | None = None,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(admin_only),
) -> Response:
    rows = await moderation.list_accounts(db, me.viewer, q=q, max_id=_cursor(max_id))
    return await render(
        request,
        db,
        "admin/accounts.html",
        {
            "title": "Accounts",
            "rows": rows,
            "q": q[:100],
            "older": rows[-1].account.id if len(rows) == 50 else None,
            "notice": _notice(request),
            "section": "accounts",
        },
    )


async def _delete_page(
    request: Request,
    db: AsyncSession,
    account_id: int,
    error: ValidationFailed | None = None,
) -> Response:
    account = await db.get(Account, account_id)
    if account is None or not account.is_local or account.deleted_at is not None:
        raise NotFound("No such account.")
    return await render(
        request,
        db,
        "admin/delete_account.html",
        {
            "title": f"Delete @{account.username}",
            "account": account,
            "errors": {error.field or "form": error.message} if error else {},
            "section": "accounts",
        },
        status=error.status if error else 200,
    )


@router.get("/accounts/{account_id:int}/delete")
async def delete_account_page(
    request: Request,
    account_id: int,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(admin_only),
) -> Response:
    return await _delete_page(request, db, account_id)


@router.post("/accounts/{account_id:int}/delete")
async def delete_account(
    request: Request,
    account_id: int,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(admin_only),
) -> Response:
    """Delete a local account for good, once the admin typed its username to confirm."""
    form = await request.form()
    account = await db.get(Account, account_id)
    try:
        if account is None or form_str(form, "confirm").strip().lstrip("@").lower() != (
            account.username_key
        ):
            raise ValidationFailed("Type the account's username to confirm.", field="confirm")
        await deletion.delete_account(db, me.viewer, account_id)
    except ValidationFailed as err:
        return await _delete_page(request, db, account_id, err)
    return RedirectResponse("/admin/accounts?notice=deleted", status_code=303)


@router.post("/accounts/{account_id:int}/{action}")
async def account_action(
    request: Request,
    account_id: int,
    action: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(admin_only),
) -> Response:
    """Suspend, unsuspend, silence or unsilence; back to the page the form came from."""
    if action not in moderation.ACCOUNT_ACTIONS:
        raise NotFound()
    form = await request.form()
    await moderation.moderate_account(db, me.viewer, account_id, action)
    return _back(form_str(form, "next"), "/admin/accounts", action)


@router.get("/sign_ups")
async def sign_ups_page(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(admin_only)
) -> Response:
    return await render(
        request,
        db,
        "admin/sign_ups.html",
        {
            "title": "Sign-ups",
            "pending": await sign_ups.pending_sign_ups(db, me.viewer),
            "notice": _notice(request),
            "section": "sign_ups",
        },
    )


@router.post("/sign_ups/{account_id:int}/{decision}")
async def decide_sign_up(
    account_id: int,
    decision: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(admin_only),
) -> Response:
    if decision == "approve":
        await sign_ups.approve_sign_up(db, me.viewer, account_id)
    elif decision == "reject":
        await sign_ups.reject_sign_up(db, me.viewer, account_id)
    else:
        raise NotFound()
    return RedirectResponse(f"/admin/sign_ups?notice={decision}", status_code=303)


async def _settings_page(
    request: Request,
    db: AsyncSession,
    form: dict[str, Any],
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return await render(
        request,
        db,
        "admin/settings.html",
        {
            "title": "Instance settings",
            "form": form,
            "errors": errors or {},
            "modes": REGISTRATION_LABELS,
            "creators": COMMUNITY_CREATION_LABELS,
            "max_rules": instance.MAX_RULES,
            "notice": _notice(request),
            "section": "settings",
        },
        status=status,
    )


@router.get("/settings")
async def settings_page(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(admin_only)
) -> Response:
    row = await accounts.get_instance_settings(db)
    form = {
        "name": row.name,
        "description": row.description,
        "rules": "\n".join(row.rules or []),
        "registration_mode": row.registration_mode,
        "require_email_confirmation": "on" if row.require_email_confirmation else "",
        "community_creation": row.community_creation,
    }
    return await _settings_page(request, db, form)


@router.post("/settings")
async def save_settings(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(admin_only)
) -> Response:
    form = await request.form()
    try:
        await instance.update_instance_settings(
            db,
            me.viewer,
            name=form_str(form, "name"),
            description=form_str(form, "description"),
            rules=instance.parse_rules(form_str(form, "rules")),
            registration_mode=form_str(form, "registration_mode"),
            require_email_confirmation=form_str(form, "require_email_confirmation") == "on",
            community_creation=form_str(form, "community_creation") or None,
        )
    except ValidationFailed as err:
        return await _settings_page(
            request, db, dict(form.items()), {err.field or "form": err.message}, status=422
        )
    return RedirectResponse("/admin/settings?notice=saved", status_code=303)
