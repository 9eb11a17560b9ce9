"""The viewer's own collections: bookmarks, favourites, preferences, markers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.db import utcnow
from kith.graph import service as graph
from kith.mastodon_api import render
from kith.mastodon_api.deps import (
    PAGINATION,
    ApiJSON,
    Auth,
    account_window,
    clamp,
    documented,
    link_header,
    parse_id,
    scoped,
)
from kith.mastodon_api.entities import iso
from kith.mastodon_api.params import read_params
from kith.posts.models import Bookmark, Like, Post
from kith.timelines.models import Marker
from kith.web.deps import get_db

router = APIRouter(prefix="/api/v1")


async def _saved(
    request: Request, db: AsyncSession, auth: Auth, model: type[Bookmark] | type[Like]
) -> JSONResponse:
    """Posts the viewer bookmarked or liked, newest saving first; paginated by the save's id."""
    p = await read_params(request)
    stmt = (
        select(Post, model.id)
        .join(model, model.post_id == Post.id)
        .where(model.account_id == auth.account.id, policy.post_visible_clause(auth.viewer))
    )
    max_id, min_id = parse_id(p.text("max_id")), parse_id(p.text("min_id") or p.text("since_id"))
    if max_id is not None:
        stmt = stmt.where(model.id < max_id)
    if min_id is not None:
        stmt = stmt.where(model.id > min_id)
    rows = (await db.execute(stmt.order_by(model.id.desc()).limit(clamp(p.integer("limit"))))).all()
    items = await render.statuses(db, auth.viewer, [post for post, _ in rows])
    link = link_header(request, list(rows), lambda row: int(row[1]))
    headers = {"Link": link} if link else {}
    return ApiJSON(items, headers=headers)


@router.get("/bookmarks", openapi_extra=documented(PAGINATION))
async def bookmarks(
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read:bookmarks")),
) -> JSONResponse:
    return await _saved(request, db, auth, Bookmark)


@router.get("/favourites", openapi_extra=documented(PAGINATION))
async def favourites(
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read:favourites")),
) -> JSONResponse:
    return await _saved(request, db, auth, Like)


@router.get("/preferences")
async def preferences(auth: Auth = Depends(scoped("read:accounts"))) -> dict[str, Any]:
    return {
        "posting:default:visibility": "public",
        "posting:default:sensitive": False,
        "posting:default:language": None,
        "reading:expand:media": "default",
        "reading:expand:spoilers": False,
    }


def _marker(m: Marker) -> dict[str, Any]:
    return {
        "last_read_id": str(m.last_read_id),
        "version": m.version,
        "updated_at": iso(m.updated_at),
    }


@router.get("/markers", openapi_extra=documented({"timeline": "strings"}))
async def get_markers(
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read:statuses")),
) -> dict[str, Any]:
    p = await read_params(request)
    wanted = [str(t) for t in p.many("timeline")] or ["home", "notifications"]
    rows = await db.scalars(
        select(Marker).where(Marker.account_id == auth.account.id, Marker.timeline.in_(wanted))
    )
    return {m.timeline: _marker(m) for m in rows.all()}


@router.post("/markers")
async def set_markers(
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:statuses")),
) -> dict[str, Any]:
    p = await read_params(request)
    out = {}
    for timeline in ("home", "notifications"):
        sub = p.obj(timeline)
        last = parse_id(sub.text("last_read_id"))
        if last is None:
            continue
        m = await db.get(Marker, (auth.account.id, timeline))
        if m is None:
            m = Marker(account_id=auth.account.id, timeline=timeline, last_read_id=last, version=0)
            db.add(m)
        m.last_read_id, m.version, m.updated_at = last, (m.version or 0) + 1, utcnow()
        if timeline == "notifications" and auth.user is not None:
            auth.user.notifications_read_id = max(auth.user.notifications_read_id, last)
        out[timeline] = m
    await db.commit()
    return {k: _marker(m) for k, m in out.items()}


@router.get("/blocks", openapi_extra=documented(PAGINATION))
async def blocks(
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read:blocks")),
) -> JSONResponse:
    window = account_window(await read_params(request))
    return await render.account_page(
        request, db, await graph.blocks_page(db, auth.account.id, window)
    )


@router.get("/mutes", openapi_extra=documented(PAGINATION))
async def mutes(
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read:mutes")),
) -> JSONResponse:
    window = account_window(await read_params(request))
    return await render.account_page(
        request, db, await graph.mutes_page(db, auth.account.id, window)
    )


@router.get("/accounts/familiar_followers", openapi_extra=documented({"id": "strings"}))
async def familiar_followers(
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read:follows")),
) -> list[dict[str, Any]]:
    p = await read_params(request)
    out = []
    for raw in p.many("id")[:40]:
        aid = parse_id(str(raw))
        target = await db.get(Account, aid) if aid is not None else None
        if target is None or not await policy.can_see_account(db, auth.viewer, target):
            continue
        people = await graph.familiar_followers(db, auth.viewer, target)
        out.append({"id": str(target.id), "accounts": await render.accounts(db, people)})
    return out
