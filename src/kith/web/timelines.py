"""Timeline pages: Home, Local and hashtags."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kith.filters import service as filters
from kith.posts import presenter
from kith.timelines import service as timelines
from kith.timelines.service import Page
from kith.timelines.shapes import ENTITIES
from kith.web.deps import Current, current, get_db, signed_in
from kith.web.templating import render

router = APIRouter()


def _cursor(value: str | None) -> int | None:
    """Cursors are ids; anything else is ignored (the first page is shown)."""
    return int(value) if value and value.isdigit() and len(value) < 20 else None


async def _timeline_page(
    request: Request,
    db: AsyncSession,
    me: Current,
    page: Page,
    *,
    title: str,
    context: str,
    live: str | None = None,
    extra: dict[str, object] | None = None,
) -> Response:
    views = await presenter.present(db, me.viewer, page.posts)
    views = await filters.apply(db, me.viewer, views, context=context)
    await presenter.with_communities(db, views)
    return await render(
        request,
        db,
        "timeline.html",
        {
            "title": title,
            "views": views,
            "page": page,
            "live": live,
            **(extra or {}),
        },
    )


@router.get("/")
async def index(me: Current = Depends(current)) -> Response:
    return RedirectResponse("/home" if me.user else "/local", status_code=303)


@router.get("/home")
async def home(
    request: Request,
    max_id: str | None = None,
    min_id: str | None = None,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    page = await timelines.home(
        db, me.viewer, max_id=_cursor(max_id), min_id=_cursor(min_id), shape=ENTITIES
    )
    return await _timeline_page(
        request,
        db,
        me,
        page,
        title="Home",
        context="home",
        live="/stream/home",
        extra={"compose": True},
    )


@router.get("/local")
async def local(
    request: Request,
    max_id: str | None = None,
    min_id: str | None = None,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(current),
) -> Response:
    page = await timelines.local(db, me.viewer, max_id=_cursor(max_id), min_id=_cursor(min_id))
    return await _timeline_page(
        request, db, me, page, title="Local", context="public", live="/stream/local"
    )


@router.get("/tags/{name}")
async def tag(
    request: Request,
    name: str,
    max_id: str | None = None,
    min_id: str | None = None,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(current),
) -> Response:
    page = await timelines.hashtag(
        db, me.viewer, name[:100], max_id=_cursor(max_id), min_id=_cursor(min_id), shape=ENTITIES
    )
    return await _timeline_page(request, db, me, page, title=f"#{name[:100]}", context="public")
