"""Settings page for account migration: name the old accounts moving here (aliases), or move
this account to a new one. Rules in `kith.federation.moves`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts import passwords
from kith.accounts.models import Account
from kith.errors import ValidationFailed
from kith.federation import moves
from kith.web.deps import Current, check_csrf, get_db, signed_in
from kith.web.forms import form_str
from kith.web.templating import render

router = APIRouter(dependencies=[Depends(check_csrf)])

NOTICES = {"aliases": "Aliases saved.", "moved": "Your followers are being moved."}


async def _page(
    request: Request,
    db: AsyncSession,
    me: Current,
    *,
    notice: str = "",
    error: ValidationFailed | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    assert me.account is not None
    moved_to = await db.get(Account, me.account.moved_to_id) if me.account.moved_to_id else None
    context = {
        "section": "migration",
        "notice": NOTICES.get(notice),
        "aliases": list(me.account.also_known_as or []),
        "moved_to": moved_to,
        "errors": {error.field or "form": error.message} if error else {},
        "form": form or {},
        "title": "Account migration",
    }
    return await render(
        request, db, "settings/migration.html", context, status=error.status if error else 200
    )


@router.get("/settings/migration")
async def migration_page(
    request: Request,
    notice: str = "",
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    return await _page(request, db, me, notice=notice)


@router.post("/settings/migration/aliases")
async def set_aliases(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    assert me.account is not None
    raw = form_str(await request.form(), "aliases")
    try:
        await moves.set_aliases(db, me.account, raw.replace(",", "\n").splitlines())
    except ValidationFailed as err:
        return await _page(request, db, me, error=err, form={"aliases": raw})
    return RedirectResponse("/settings/migration?notice=aliases", status_code=303)


@router.post("/settings/migration/move")
async def move(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    assert me.account is not None and me.user is not None
    form = await request.form()
    target = form_str(form, "target")
    try:
        if not passwords.verify_password(me.user.password_hash, form_str(form, "password")):
            raise ValidationFailed("Your current password is not right.", field="password")
        await moves.move_account(db, me.account, target)
    except ValidationFailed as err:
        return await _page(request, db, me, error=err, form={"target": target})
    return RedirectResponse("/settings/migration?notice=moved", status_code=303)
