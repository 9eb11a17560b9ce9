"""The admins' custom emoji page (/admin/emojis): the instance's emoji, a form to add one
(shortcode and image) and a button to remove each. Admins only; the service checks again."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from kith.emojis import service as emojis
from kith.errors import ValidationFailed
from kith.media.images import ImageRejected
from kith.web.deps import Current, admin_only, check_csrf, declares_body_over, get_db
from kith.web.forms import form_str
from kith.web.templating import render


class EmojiUploadTooLarge(ImageRejected):
    status = 413


async def limit_body_size(request: Request) -> None:
    """Refuse a body far larger than an emoji before anything parses it (the CSRF check reads
    the form)."""
    limit = emojis.MAX_EMOJI_BYTES + 64 * 1024
    if declares_body_over(request, limit):
        raise EmojiUploadTooLarge(
            f"The image is too large: at most {emojis.MAX_EMOJI_BYTES // 1024} KB.",
            field="image",
        )


router = APIRouter(
    prefix="/admin/emojis",
    dependencies=[Depends(limit_body_size), Depends(check_csrf), Depends(admin_only)],
)

NOTICES = {"added": "Emoji added.", "removed": "Emoji removed."}


async def _page(
    request: Request,
    db: AsyncSession,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    return await render(
        request,
        db,
        "admin/emojis.html",
        {
            "title": "Custom emoji",
            "emojis": await emojis.list_local(db),
            "form": form or {},
            "errors": errors or {},
            "max_kb": emojis.MAX_EMOJI_BYTES // 1024,
            "notice": NOTICES.get(request.query_params.get("notice", ""), ""),
            "section": "emojis",
        },
        status=status,
    )


@router.get("")
async def emojis_page(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(admin_only)
) -> Response:
    return await _page(request, db)


@router.post("")
async def add_emoji(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(admin_only)
) -> Response:
    """Add an emoji; a refused one (shortcode malformed or taken, image unfit) is a 422 with
    the field's message and nothing written."""
    form = await request.form()
    upload = form.get("image")
    data = await upload.read(emojis.MAX_EMOJI_BYTES + 1) if isinstance(upload, UploadFile) else b""
    shortcode = form_str(form, "shortcode")
    try:
        await emojis.add_local(db, me.viewer, shortcode, data)
    except ValidationFailed as err:
        return await _page(
            request, db, {"shortcode": shortcode}, {err.field or "form": err.message}, 422
        )
    return RedirectResponse("/admin/emojis?notice=added", status_code=303)


@router.post("/remove")
async def remove_emoji(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(admin_only)
) -> Response:
    form = await request.form()
    await emojis.remove_local(db, me.viewer, form_str(form, "shortcode"))
    return RedirectResponse("/admin/emojis?notice=removed", status_code=303)
