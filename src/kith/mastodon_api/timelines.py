"""Timelines: home, public (local), hashtag — with Mastodon's pagination and Link header."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from kith.mastodon_api import render
from kith.mastodon_api.deps import (
    PAGINATION,
    ApiJSON,
    Auth,
    clamp,
    documented,
    link_header,
    optional_auth,
    parse_id,
    scoped,
)
from kith.mastodon_api.params import read_params
from kith.timelines import service as timelines
from kith.timelines.service import Page
from kith.timelines.shapes import REFS, PostRef
from kith.web.deps import get_db

router = APIRouter(prefix="/api/v1/timelines")


async def _respond(
    request: Request, db: AsyncSession, auth: Auth, page: Page[PostRef], context: str
) -> JSONResponse:
    items = await render.statuses(db, auth.viewer, page.posts, context=context)
    headers = {}
    link = link_header(request, page.posts, lambda p: p.id)
    if link:
        headers["Link"] = link
    return ApiJSON(items, headers=headers)


async def _cursors(request: Request) -> dict[str, Any]:
    p = await read_params(request)
    return {
        "max_id": parse_id(p.text("max_id")),
        "min_id": parse_id(p.text("min_id")),
        "since_id": parse_id(p.text("since_id")),
        "limit": clamp(p.integer("limit")),
    }


@router.get("/home", openapi_extra=documented(PAGINATION))
async def home(
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read:statuses")),
) -> JSONResponse:
    page = await timelines.home(db, auth.viewer, shape=REFS, **await _cursors(request))
    return await _respond(request, db, auth, page, "home")


@router.get(
    "/public",
    openapi_extra=documented(
        {**PAGINATION, "local": "boolean", "remote": "boolean", "only_media": "boolean"}
    ),
)
async def public(
    request: Request, db: AsyncSession = Depends(get_db), auth: Auth = Depends(optional_auth)
) -> JSONResponse:
    p = await read_params(request)
    origin = "local" if p.flag("local") else "remote" if p.flag("remote") else "all"
    page = await timelines.public(
        db,
        auth.viewer,
        origin=origin,
        only_media=p.flag("only_media"),
        shape=REFS,
        **await _cursors(request),
    )
    return await _respond(request, db, auth, page, "public")


@router.get("/tag/{hashtag}", openapi_extra=documented({**PAGINATION, "only_media": "boolean"}))
async def tag(
    hashtag: str,
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(optional_auth),
) -> JSONResponse:
    only_media = (await read_params(request)).flag("only_media")
    page = await timelines.hashtag(
        db,
        auth.viewer,
        hashtag[:100],
        only_media=only_media,
        shape=REFS,
        **await _cursors(request),
    )
    return await _respond(request, db, auth, page, "public")
