"""Filters v2 (/api/v2/filters): keyword filters with contexts, applied server-side."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from kith.errors import NotFound, ValidationFailed
from kith.filters import service as filters
from kith.filters.models import Filter, FilterKeyword
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


def filter_entity(f: Filter, keywords: list[FilterKeyword] | None) -> dict[str, Any]:
    """The Filter entity (keywords omitted when not loaded, as inside FilterResult)."""
    data: dict[str, Any] = {
        "id": str(f.id),
        "title": f.title,
        "context": list(f.contexts),
        "expires_at": iso(f.expires_at),
        "filter_action": f.action,
        "statuses": [],
    }
    if keywords is not None:
        data["keywords"] = [
            {"id": str(k.id), "keyword": k.keyword, "whole_word": k.whole_word} for k in keywords
        ]
    return data


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
    return [filter_entity(f, kws) for f, kws in await filters.list_filters(db, auth.viewer)]


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
    )
    return filter_entity(*await filters.get_filter(db, auth.viewer, f.id))


@router.get("/filters/{filter_id}")
async def one(
    filter_id: str, db: AsyncSession = Depends(get_db), auth: Auth = Depends(scoped("read:filters"))
) -> dict[str, Any]:
    return filter_entity(*await filters.get_filter(db, auth.viewer, _id(filter_id)))


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
    await filters.update_filter(db, auth.viewer, f.id, _input(p, f, kws), keep_expiry=keep)
    return filter_entity(*await filters.get_filter(db, auth.viewer, f.id))


@router.delete("/filters/{filter_id}")
async def delete(
    filter_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:filters")),
) -> dict[str, Any]:
    await filters.delete_filter(db, auth.viewer, _id(filter_id))
    return {}


@router.get("/filters/{filter_id}/keywords")
async def keywords(
    filter_id: str, db: AsyncSession = Depends(get_db), auth: Auth = Depends(scoped("read:filters"))
) -> list[dict[str, Any]]:
    _, kws = await filters.get_filter(db, auth.viewer, _id(filter_id))
    return [{"id": str(k.id), "keyword": k.keyword, "whole_word": k.whole_word} for k in kws]
