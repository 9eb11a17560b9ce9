"""Media attachments: upload (v1 and v2), read and describe. Images are processed while the
upload waits, so uploads answer 200 with a ready entity; Mastodon answers 202 (url null) while
a file is still processing, which Kith will do too once video arrives."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from kith.accounts import service as accounts
from kith.errors import NotFound, ValidationFailed
from kith.mastodon_api import entities
from kith.mastodon_api.deps import Auth, parse_id, scoped
from kith.mastodon_api.params import read_params
from kith.media import service as media
from kith.media.models import MediaState
from kith.runtime import runtime_of
from kith.web.deps import get_db

router = APIRouter(prefix="/api")


def _media_id(raw: str) -> int:
    media_id = parse_id(raw)
    if media_id is None:
        raise NotFound("Record not found")
    return media_id


async def _upload(request: Request, db: AsyncSession, auth: Auth) -> JSONResponse:
    p = await read_params(request)
    assert auth.user is not None
    await accounts.require_confirmed(db, auth.user)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ValidationFailed("Send the file as multipart/form-data", field="file")
    upload = (await request.form()).get("file")
    if not isinstance(upload, UploadFile):
        raise ValidationFailed("file is required", field="file")
    limit = runtime_of(db).settings.max_image_bytes
    row = await media.upload(
        db,
        auth.account,
        await upload.read(limit + 1),  # one byte past the limit is enough to refuse
        upload.content_type,
        description=p.text("description"),
        focus=media.parse_focus(p.text("focus")),
    )
    status = 200 if row.state == MediaState.READY else 202
    return JSONResponse(entities.media_attachment(runtime_of(db).settings, row), status_code=status)


@router.post("/v2/media")
async def upload_v2(
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:media")),
) -> JSONResponse:
    return await _upload(request, db, auth)


@router.post("/v1/media")
async def upload_v1(
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:media")),
) -> JSONResponse:
    return await _upload(request, db, auth)


@router.get("/v1/media/{media_id}")
async def get_media(
    media_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:media")),
) -> JSONResponse:
    """An attachment the caller may see (206 while it is still processing, as Mastodon)."""
    row = await media.get_visible(db, auth.viewer, _media_id(media_id))
    status = 200 if row.state == MediaState.READY else 206
    return JSONResponse(entities.media_attachment(runtime_of(db).settings, row), status_code=status)


@router.put("/v1/media/{media_id}")
async def update_media(
    media_id: str,
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:media")),
) -> dict[str, Any]:
    p = await read_params(request)
    row = await media.update(
        db,
        auth.account,
        _media_id(media_id),
        description=p.text("description"),
        focus=media.parse_focus(p.text("focus")),
    )
    return entities.media_attachment(runtime_of(db).settings, row)
