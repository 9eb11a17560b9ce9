"""Trends: the hashtags, posts and links trending here (after moderator review), with offset
pagination as Mastodon does. No token needed; with one, statuses respect blocks and mutes and
tags say whether the caller follows them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.mastodon_api import render
from kith.mastodon_api.deps import ApiJSON, Auth, clamp, optional_auth
from kith.mastodon_api.params import read_params
from kith.posts.models import Tag
from kith.runtime import runtime_of
from kith.timelines.models import TagFollow
from kith.trends import service as trends
from kith.trends.models import TrendLink, TrendTag
from kith.web.deps import get_db

router = APIRouter(prefix="/api/v1")


async def _page(request: Request, default: int, maximum: int) -> tuple[int, int]:
    """`limit` (clamped) and `offset` (at least 0) from the request."""
    p = await read_params(request)
    return clamp(p.integer("limit"), default, maximum), max(p.integer("offset") or 0, 0)


def _respond(
    request: Request, items: list[Any], limit: int, offset: int, *, full: bool | None = None
) -> JSONResponse:
    """The items, with a `Link: rel="next"` to the following page when this one is full."""
    headers = {}
    if full if full is not None else len(items) == limit:
        url = request.url.remove_query_params("offset").include_query_params(offset=offset + limit)
        headers["Link"] = f'<{url}>; rel="next"'
    return ApiJSON(items, headers=headers)


async def _tag_entities(
    db: AsyncSession, auth: Auth, rows: list[tuple[TrendTag, Tag]]
) -> list[dict[str, Any]]:
    """Tag entities with the stored week of history (trendable posts only)."""
    base = runtime_of(db).settings.base_url
    followed: set[int] | None = None
    if auth.user is not None and rows:
        followed = set(
            (
                await db.scalars(
                    select(TagFollow.tag_id).where(
                        TagFollow.account_id == auth.account.id,
                        TagFollow.tag_id.in_([tag.id for _, tag in rows]),
                    )
                )
            ).all()
        )
    out = []
    for trend, tag in rows:
        entity: dict[str, Any] = {
            "id": str(tag.id),
            "name": tag.display_name or tag.name,
            "url": f"{base}/tags/{tag.name}",
            "history": trend.history,
        }
        if followed is not None:
            entity["following"] = tag.id in followed
        out.append(entity)
    return out


def preview_card(link: TrendLink) -> dict[str, Any]:
    """A PreviewCard for a trending link. Kith fetches no link previews yet, so everything
    beyond the URL (also used as title), the type and the history is empty."""
    return {
        "url": link.url,
        "title": link.url,
        "description": "",
        "type": "link",
        "authors": [],
        "author_name": "",
        "author_url": "",
        "provider_name": "",
        "provider_url": "",
        "html": "",
        "width": 0,
        "height": 0,
        "image": None,
        "image_description": "",
        "embed_url": "",
        "blurhash": None,
        "published_at": None,
        "language": None,
        "history": link.history,
    }


@router.get("/trends")
@router.get("/trends/tags")
async def trending_tags(
    request: Request, db: AsyncSession = Depends(get_db), auth: Auth = Depends(optional_auth)
) -> JSONResponse:
    """Hashtags trending now (`/api/v1/trends` is Mastodon's older name for this)."""
    limit, offset = await _page(request, 10, 20)
    rows = await trends.trending_tags(db, limit=limit, offset=offset)
    return _respond(request, await _tag_entities(db, auth, rows), limit, offset)


@router.get("/trends/statuses")
async def trending_statuses(
    request: Request, db: AsyncSession = Depends(get_db), auth: Auth = Depends(optional_auth)
) -> JSONResponse:
    """Posts trending now that the caller may see and does not mute, one per author."""
    limit, offset = await _page(request, 20, 40)
    posts = await trends.trending_statuses(db, auth.viewer, limit=limit, offset=offset)
    items = await render.statuses(db, auth.viewer, posts, context="public")
    # A full page of posts has a next page even when a keyword filter hid some of them.
    return _respond(request, items, limit, offset, full=len(posts) == limit)


@router.get("/trends/links")
async def trending_links(
    request: Request, db: AsyncSession = Depends(get_db), auth: Auth = Depends(optional_auth)
) -> JSONResponse:
    """Links trending now, as PreviewCards with history."""
    limit, offset = await _page(request, 10, 20)
    rows = await trends.trending_links(db, limit=limit, offset=offset)
    return _respond(request, [preview_card(r) for r in rows], limit, offset)
