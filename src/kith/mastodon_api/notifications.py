"""Notifications and follow requests over the API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.communities.models import Community
from kith.errors import NotFound
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
from kith.notifications import service as notifications
from kith.notifications.models import COMMUNITY_TYPES, Notification, NotificationType
from kith.posts.models import Post
from kith.runtime import runtime_of
from kith.web.deps import get_db

router = APIRouter(prefix="/api/v1")
router_v2 = APIRouter(prefix="/api/v2")

# Kith keeps replies apart from mentions; Mastodon calls both "mention".
API_TYPE = {NotificationType.REPLY.value: "mention"}
ALL_API_TYPES = {
    "mention",
    "status",
    "reblog",
    "follow",
    "follow_request",
    "favourite",
    "poll",
    "update",
    "admin.sign_up",
    "admin.report",
}


NOTIFICATION_QUERY = {
    **PAGINATION,
    "types": "strings",
    "exclude_types": "strings",
    "account_id": "string",
}


# Kith's community notifications are not Mastodon types (Mastodon's `moderation_warning` and
# `admin.report` mean the instance's moderation, not a community's): a client gets them only
# when it names them in `types[]`, so clients that know nothing of them never see them.
UNASKED_TYPES = [t.value for t in NotificationType if t not in COMMUNITY_TYPES]


def _kith_types(api_types: list[str]) -> list[str]:
    """The Kith types to list for these API types (none asked for: all but the community
    ones)."""
    if not api_types:
        return UNASKED_TYPES
    out = []
    for t in api_types:
        out.append(t)
        if t == "mention":
            out.append(NotificationType.REPLY.value)
    return out


async def entities_for(
    db: AsyncSession, viewer: policy.Viewer, rows: list[Notification]
) -> list[dict[str, Any]]:
    """Notification entities (ones about posts a filter hides are left out)."""
    accounts = {
        a.id: a
        for a in (
            await db.scalars(
                select(Account).where(Account.id.in_({n.from_account_id for n in rows}))
            )
        ).all()
    }
    acc_json = {a["id"]: a for a in await render.accounts(db, list(accounts.values()))}
    post_ids = [n.post_id for n in rows if n.post_id]
    posts = (
        list((await db.scalars(select(Post).where(Post.id.in_(post_ids)))).all())
        if post_ids
        else []
    )
    statuses = {
        s["id"]: s for s in await render.statuses(db, viewer, posts, context="notifications")
    }
    communities = await _community_entities(
        db, {n.community_id for n in rows if n.community_id is not None}
    )
    out = []
    for n in rows:
        status = statuses.get(str(n.post_id)) if n.post_id else None
        if n.post_id and status is None:
            continue  # hidden by a filter
        item = {
            "id": str(n.id),
            "type": API_TYPE.get(n.type, n.type),
            "created_at": iso(n.created_at),
            "group_key": f"ungrouped-{n.id}",
            "account": acc_json.get(str(n.from_account_id)),
            "status": status,
        }
        if n.community_id is not None and n.community_id in communities:
            item["community"] = communities[n.community_id]
        out.append(item)
    return out


async def _community_entities(db: AsyncSession, ids: set[int]) -> dict[int, dict[str, Any]]:
    """A Kith extension on community notifications: which community, and where its page is."""
    if not ids:
        return {}
    base_url = runtime_of(db).settings.base_url
    rows = await db.scalars(select(Community).where(Community.id.in_(ids)))
    return {
        c.id: {
            "id": str(c.id),
            "handle": c.handle,
            "name": c.name,
            "url": f"{base_url}/c/{c.handle}",
        }
        for c in rows.all()
    }


@router.get("/notifications", openapi_extra=documented(NOTIFICATION_QUERY))
async def list_notifications(
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read:notifications")),
) -> JSONResponse:
    p = await read_params(request)
    types = [str(t) for t in p.many("types")]
    exclude = {str(t) for t in p.many("exclude_types")}
    if exclude:
        types = [t for t in (types or sorted(ALL_API_TYPES)) if t not in exclude]
    rows = await notifications.list_notifications(
        db,
        auth.viewer,
        types=_kith_types(types),
        max_id=parse_id(p.text("max_id")),
        min_id=parse_id(p.text("min_id") or p.text("since_id")),
        limit=clamp(p.integer("limit"), 40, 80),
    )
    account_filter = parse_id(p.text("account_id"))
    if account_filter is not None:
        rows = [n for n in rows if n.from_account_id == account_filter]
    items = await entities_for(db, auth.viewer, rows)
    link = link_header(request, rows, lambda n: n.id)
    return ApiJSON(items, headers={"Link": link} if link else {})


@router.get("/notifications/unread_count", openapi_extra=documented({"types": "strings"}))
async def unread_count(
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read:notifications")),
) -> dict[str, int]:
    """Counts what the list would show with the same `types[]` (community types: only when
    named), so a badge never counts what a client cannot list."""
    assert auth.user is not None
    types = [str(t) for t in (await read_params(request)).many("types")]
    return {"count": await notifications.unread_count(db, auth.user, types=_kith_types(types))}


@router.get("/notifications/{notification_id}")
async def get_notification(
    notification_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read:notifications")),
) -> dict[str, Any]:
    nid = parse_id(notification_id)
    n = await notifications.get_notification(db, auth.viewer, nid) if nid else None
    if n is None:
        raise NotFound("Record not found")
    items = await entities_for(db, auth.viewer, [n])
    if not items:
        raise NotFound("Record not found")
    return items[0]


@router.post("/notifications/clear")
async def clear(
    db: AsyncSession = Depends(get_db), auth: Auth = Depends(scoped("write:notifications"))
) -> dict[str, Any]:
    await db.execute(delete(Notification).where(Notification.account_id == auth.account.id))
    await db.commit()
    return {}


@router.post("/notifications/{notification_id}/dismiss")
async def dismiss(
    notification_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:notifications")),
) -> dict[str, Any]:
    nid = parse_id(notification_id)
    result = await db.execute(
        delete(Notification).where(
            Notification.id == (nid or 0), Notification.account_id == auth.account.id
        )
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound("Record not found")  # unknown, or someone else's: the same answer
    await db.commit()
    return {}


@router.get("/follow_requests", openapi_extra=documented(PAGINATION))
async def follow_requests(
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read:follows")),
) -> JSONResponse:
    window = account_window(await read_params(request))
    return await render.account_page(
        request, db, await graph.follow_requests_page(db, auth.account.id, window)
    )


@router.post("/follow_requests/{account_id}/{decision}")
async def answer(
    account_id: str,
    decision: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:follows")),
) -> dict[str, Any]:
    if decision not in ("authorize", "reject"):
        raise NotFound("Record not found")
    aid = parse_id(account_id)
    if aid is None:
        raise NotFound("Record not found")
    await graph.answer_request(db, auth.account.id, aid, accept=decision == "authorize")
    from kith.mastodon_api.accounts import _rel

    return await _rel(db, auth.account.id, aid)


GROUPABLE = {"favourite", "reblog", "follow"}


def _group_key(n: Notification) -> str:
    """Likes and boosts of one post group together, as do follows; the rest stay alone."""
    api_type = API_TYPE.get(n.type, n.type)
    if api_type in ("favourite", "reblog"):
        return f"{api_type}-{n.post_id}"
    if api_type == "follow":
        return f"follow-{n.created_at.date().isoformat()}"
    return f"ungrouped-{n.id}"


@router_v2.get("/notifications", openapi_extra=documented(NOTIFICATION_QUERY))
async def grouped_notifications(
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read:notifications")),
) -> JSONResponse:
    """Grouped notifications (Mastodon 4.3's v2): a page of groups with the accounts and
    statuses they refer to listed once."""
    p = await read_params(request)
    types = [str(t) for t in p.many("types")]
    exclude = {str(t) for t in p.many("exclude_types")}
    if exclude:
        types = [t for t in (types or sorted(ALL_API_TYPES)) if t not in exclude]
    rows = await notifications.list_notifications(
        db,
        auth.viewer,
        types=_kith_types(types),
        max_id=parse_id(p.text("max_id")),
        min_id=parse_id(p.text("min_id") or p.text("since_id")),
        limit=clamp(p.integer("limit"), 40, 80),
    )
    items = await entities_for(db, auth.viewer, rows)
    by_id = {int(i["id"]): i for i in items}
    groups: dict[str, dict[str, Any]] = {}
    for n in rows:
        item = by_id.get(n.id)
        if item is None:
            continue
        key = _group_key(n)
        g = groups.get(key)
        if g is None:
            g = groups[key] = {
                "group_key": key,
                "notifications_count": 0,
                "type": item["type"],
                "most_recent_notification_id": str(n.id),
                "page_min_id": str(n.id),
                "page_max_id": str(n.id),
                "latest_page_notification_at": item["created_at"],
                "sample_account_ids": [],
                "status_id": str(n.post_id) if n.post_id else None,
            }
        g["notifications_count"] += 1
        g["page_min_id"] = str(min(int(g["page_min_id"]), n.id))
        acc = str(n.from_account_id)
        if acc not in g["sample_account_ids"] and len(g["sample_account_ids"]) < 8:
            g["sample_account_ids"].append(acc)
    accounts = {i["account"]["id"]: i["account"] for i in items if i.get("account")}
    statuses = {i["status"]["id"]: i["status"] for i in items if i.get("status")}
    body = {
        "accounts": list(accounts.values()),
        "statuses": list(statuses.values()),
        "notification_groups": list(groups.values()),
    }
    link = link_header(request, rows, lambda n: n.id)
    return JSONResponse(body, headers={"Link": link} if link else {})
