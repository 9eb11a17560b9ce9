"""Filters v2 (/api/v2/filters): filters with contexts, their keywords and the statuses they
target (each also one at a time), applied server-side."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from kith.errors import NotFound, ValidationFailed
from kith.filters import service as filters
from kith.filters.models import Filter, FilterKeyword, FilterStatus
from kith.filters.service import FilterInput
from kith.mastodon_api.deps import Auth, documented, parse_id, scoped
from kith.mastodon_api.entities import iso
from kith.mastodon_api.params import Params, read_params
from kith.web.deps import get_db

router = APIRouter(prefix="/api/v2")
FILTER_BODY = {
    "title": "string",
    "context": "strings",
    "filter_action": "string",
    "expires_in": "integer",
}


KEYWORD_BODY = {"keyword": "string", "whole_word": "boolean"}
STATUS_BODY = {"status_id": "string"}


def keyword_entity(k: FilterKeyword) -> dict[str, Any]:
    """The FilterKeyword entity."""
    return {"id": str(k.id), "keyword": k.keyword, "whole_word": k.whole_word}


def status_entity(s: FilterStatus) -> dict[str, Any]:
    """The FilterStatus entity."""
    return {"id": str(s.id), "status_id": str(s.post_id)}


def filter_entity(
    f: Filter, keywords: list[FilterKeyword], statuses: list[FilterStatus]
) -> dict[str, Any]:
    """The Filter entity, with its keywords and targeted statuses."""
    return {
        "id": str(f.id),
        "title": f.title,
        "context": list(f.contexts),
        "expires_at": iso(f.expires_at),
        "filter_action": f.action,
        "keywords": [keyword_entity(k) for k in keywords],
        "statuses": [status_entity(s) for s in statuses],
    }


async def _entity(db: AsyncSession, auth: Auth, filter_id: int) -> dict[str, Any]:
    f, kws = await filters.get_filter(db, auth.viewer, filter_id)
    return filter_entity(f, kws, (await filters.statuses_of(db, [f.id])).get(f.id, []))


def _id(raw: str) -> int:
    value = parse_id(raw)
    if value is None:
        raise NotFound("Record not found")
    return value


def _keywords(p: Params, existing: list[FilterKeyword]) -> list[tuple[str, bool]]:
    """keywords_attributes[] as Mastodon clients send them: new ones, edits by id, and
    `_destroy` to remove; keywords not mentioned are kept."""
    raw = p.get("keywords_attributes")
    rows = list(raw.values()) if isinstance(raw, dict) else (raw or [])
    if not isinstance(rows, list):
        raise ValidationFailed("keywords_attributes must be a list", field="keywords_attributes")
    current = {str(k.id): (k.keyword, k.whole_word) for k in existing}
    added: list[tuple[str, bool]] = []
    for row in rows:
        if not isinstance(row, dict):
            raise ValidationFailed("each keyword must be an object", field="keywords_attributes")
        sub = Params(row)
        kid = sub.text("id")
        if sub.flag("_destroy"):
            current.pop(kid or "", None)
            continue
        word = (sub.text("keyword") or "", sub.flag("whole_word", True))
        if kid and kid in current:
            current[kid] = (
                sub.text("keyword") or current[kid][0],
                sub.flag("whole_word", current[kid][1]),
            )
        else:
            added.append(word)
    return list(current.values()) + added


def _input(p: Params, existing: Filter | None, keywords: list[FilterKeyword]) -> FilterInput:
    contexts = [str(c) for c in p.many("context")] or (list(existing.contexts) if existing else [])
    return FilterInput(
        title=p.text("title") or (existing.title if existing else ""),
        keywords=_keywords(p, keywords),
        contexts=contexts,
        action=p.text("filter_action") or (existing.action if existing else "warn"),
        expires_in=p.integer("expires_in") or None,
    )


@router.get("/filters")
async def list_filters(
    db: AsyncSession = Depends(get_db), auth: Auth = Depends(scoped("read:filters"))
) -> list[dict[str, Any]]:
    rows = await filters.list_filters(db, auth.viewer)
    targeted = await filters.statuses_of(db, [f.id for f, _ in rows])
    return [filter_entity(f, kws, targeted.get(f.id, [])) for f, kws in rows]


@router.post("/filters", openapi_extra=documented(body=FILTER_BODY))
async def create(
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:filters")),
) -> dict[str, Any]:
    p = await read_params(request)
    data = _input(p, None, [])
    f = await filters.create_filter(
        db,
        auth.viewer,
        title=data.title,
        keywords=data.keywords,
        contexts=data.contexts,
        action=data.action,
        expires_in=data.expires_in,
        keywords_required=False,  # Mastodon clients add statuses after creating the filter
    )
    return await _entity(db, auth, f.id)


@router.get("/filters/{filter_id}")
async def one(
    filter_id: str, db: AsyncSession = Depends(get_db), auth: Auth = Depends(scoped("read:filters"))
) -> dict[str, Any]:
    return await _entity(db, auth, _id(filter_id))


@router.put("/filters/{filter_id}", openapi_extra=documented(body=FILTER_BODY))
async def update(
    filter_id: str,
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:filters")),
) -> dict[str, Any]:
    p = await read_params(request)
    f, kws = await filters.get_filter(db, auth.viewer, _id(filter_id))
    keep = "expires_in" not in p
    await filters.update_filter(
        db, auth.viewer, f.id, _input(p, f, kws), keep_expiry=keep, keywords_required=False
    )
    return await _entity(db, auth, f.id)


@router.delete("/filters/{filter_id}")
async def delete(
    filter_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:filters")),
) -> dict[str, Any]:
    await filters.delete_filter(db, auth.viewer, _id(filter_id))
    return {}


# Declared before /filters/{filter_id}/…, so that /filters/keywords/… and /filters/statuses/…
# are never read as a filter id.


@router.get("/filters/keywords/{keyword_id}")
async def one_keyword(
    keyword_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read:filters")),
) -> dict[str, Any]:
    return keyword_entity(await filters.get_keyword(db, auth.viewer, _id(keyword_id)))


@router.put("/filters/keywords/{keyword_id}", openapi_extra=documented(body=KEYWORD_BODY))
async def update_keyword(
    keyword_id: str,
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:filters")),
) -> dict[str, Any]:
    p = await read_params(request)
    kid = _id(keyword_id)
    await filters.get_keyword(db, auth.viewer, kid)  # 404 before judging the body
    keyword = p.text("keyword")
    whole_word = p.flag("whole_word") if p.get("whole_word") not in (None, "") else None
    row = await filters.update_keyword(db, auth.viewer, kid, keyword=keyword, whole_word=whole_word)
    return keyword_entity(row)


@router.delete("/filters/keywords/{keyword_id}")
async def delete_keyword(
    keyword_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:filters")),
) -> dict[str, Any]:
    await filters.delete_keyword(db, auth.viewer, _id(keyword_id))
    return {}


@router.get("/filters/statuses/{filter_status_id}")
async def one_status(
    filter_status_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read:filters")),
) -> dict[str, Any]:
    return status_entity(await filters.get_status(db, auth.viewer, _id(filter_status_id)))


@router.delete("/filters/statuses/{filter_status_id}")
async def delete_status(
    filter_status_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:filters")),
) -> dict[str, Any]:
    await filters.delete_status(db, auth.viewer, _id(filter_status_id))
    return {}


@router.get("/filters/{filter_id}/keywords")
async def keywords(
    filter_id: str, db: AsyncSession = Depends(get_db), auth: Auth = Depends(scoped("read:filters"))
) -> list[dict[str, Any]]:
    _, kws = await filters.get_filter(db, auth.viewer, _id(filter_id))
    return [keyword_entity(k) for k in kws]


@router.post("/filters/{filter_id}/keywords", openapi_extra=documented(body=KEYWORD_BODY))
async def add_keyword(
    filter_id: str,
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:filters")),
) -> dict[str, Any]:
    p = await read_params(request)
    fid = _id(filter_id)
    await filters.get_filter(db, auth.viewer, fid)  # 404 before judging the body
    row = await filters.add_keyword(
        db, auth.viewer, fid, p.text("keyword") or "", p.flag("whole_word", True)
    )
    return keyword_entity(row)


@router.get("/filters/{filter_id}/statuses")
async def statuses(
    filter_id: str, db: AsyncSession = Depends(get_db), auth: Auth = Depends(scoped("read:filters"))
) -> list[dict[str, Any]]:
    return [status_entity(s) for s in await filters.list_statuses(db, auth.viewer, _id(filter_id))]


@router.post("/filters/{filter_id}/statuses", openapi_extra=documented(body=STATUS_BODY))
async def add_status(
    filter_id: str,
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:filters")),
) -> dict[str, Any]:
    p = await read_params(request)
    fid = _id(filter_id)
    await filters.get_filter(db, auth.viewer, fid)  # 404 before judging the body
    raw = p.text("status_id")
    if not raw:
        raise ValidationFailed("status_id is required", field="status_id")
    row = await filters.add_status(db, auth.viewer, fid, parse_id(raw))
    return status_entity(row)
