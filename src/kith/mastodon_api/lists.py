"""Lists over the API: CRUD, members, and the list timeline."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.errors import NotFound
from kith.lists import service as lists
from kith.lists.models import List
from kith.mastodon_api import render
from kith.mastodon_api.deps import (
    PAGINATION,
    ApiJSON,
    Auth,
    clamp,
    documented,
    link_header,
    parse_id,
    scoped,
)
from kith.mastodon_api.params import read_params
from kith.web.deps import get_db

router = APIRouter(prefix="/api/v1")
LIST_BODY = {"title": "string", "replies_policy": "string", "exclusive": "boolean"}


def _entity(row: List) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "title": row.title,
        "replies_policy": row.replies_policy,
        "exclusive": row.exclusive,
    }


def _id(raw: str) -> int:
    value = parse_id(raw)
    if value is None:
        raise NotFound("Record not found")
    return value


@router.get("/lists")
async def all_lists(
    db: AsyncSession = Depends(get_db), auth: Auth = Depends(scoped("read:lists"))
) -> list[dict[str, Any]]:
    return [_entity(r) for r in await lists.my_lists(db, auth.account.id)]


@router.post("/lists", openapi_extra=documented(body=LIST_BODY))
async def create(
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:lists")),
) -> dict[str, Any]:
    p = await read_params(request)
    row = await lists.create_list(
        db,
        auth.account.id,
        title=p.text("title") or "",
        replies_policy=p.text("replies_policy") or "list",
        exclusive=p.flag("exclusive"),
    )
    return _entity(row)


@router.get("/lists/{list_id}")
async def one(
    list_id: str, db: AsyncSession = Depends(get_db), auth: Auth = Depends(scoped("read:lists"))
) -> dict[str, Any]:
    return _entity(await lists.get_list(db, auth.account.id, _id(list_id)))


@router.put("/lists/{list_id}", openapi_extra=documented(body=LIST_BODY))
async def update(
    list_id: str,
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:lists")),
) -> dict[str, Any]:
    p = await read_params(request)
    row = await lists.update_list(
        db,
        auth.account.id,
        _id(list_id),
        title=p.text("title"),
        replies_policy=p.text("replies_policy"),
        exclusive=p.flag("exclusive") if "exclusive" in p else None,
    )
    return _entity(row)


@router.delete("/lists/{list_id}")
async def delete(
    list_id: str, db: AsyncSession = Depends(get_db), auth: Auth = Depends(scoped("write:lists"))
) -> dict[str, Any]:
    await lists.delete_list(db, auth.account.id, _id(list_id))
    return {}


@router.get("/lists/{list_id}/accounts")
async def members(
    list_id: str,
    limit: int | None = None,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read:lists")),
) -> list[dict[str, Any]]:
    return await render.accounts(
        db, await lists.members(db, auth.account.id, _id(list_id), clamp(limit, 40, 80))
    )


def _account_ids(raw: list[Any]) -> list[int]:
    ids = [parse_id(str(a)) for a in raw]
    return [i for i in ids if i is not None]


@router.post("/lists/{list_id}/accounts", openapi_extra=documented(body={"account_ids": "strings"}))
async def add(
    list_id: str,
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:lists")),
) -> dict[str, Any]:
    p = await read_params(request)
    await lists.add_members(db, auth.account.id, _id(list_id), _account_ids(p.many("account_ids")))
    return {}


@router.delete(
    "/lists/{list_id}/accounts", openapi_extra=documented(body={"account_ids": "strings"})
)
async def remove(
    list_id: str,
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:lists")),
) -> dict[str, Any]:
    p = await read_params(request)
    await lists.remove_members(
        db, auth.account.id, _id(list_id), _account_ids(p.many("account_ids"))
    )
    return {}


@router.get("/accounts/{account_id}/lists")
async def containing(
    account_id: str, db: AsyncSession = Depends(get_db), auth: Auth = Depends(scoped("read:lists"))
) -> list[dict[str, Any]]:
    member = await db.get(Account, _id(account_id))
    if member is None or not await policy.can_see_account(db, auth.viewer, member):
        raise NotFound("Record not found")
    return [_entity(r) for r in await lists.lists_containing(db, auth.account.id, member.id)]


@router.get("/timelines/list/{list_id}", openapi_extra=documented(PAGINATION))
async def timeline(
    list_id: str,
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read:lists")),
) -> JSONResponse:
    p = await read_params(request)
    page = await lists.timeline(
        db,
        auth.viewer,
        _id(list_id),
        max_id=parse_id(p.text("max_id")),
        min_id=parse_id(p.text("min_id")),
        since_id=parse_id(p.text("since_id")),
        limit=clamp(p.integer("limit")),
    )
    items = await render.statuses(db, auth.viewer, page.posts, context="home")
    link = link_header(request, page.posts, lambda x: x.id)
    return ApiJSON(items, headers={"Link": link} if link else {})
