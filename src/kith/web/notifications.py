"""The notifications page."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.communities.models import Community
from kith.filters import service as filters
from kith.notifications import service as notifications
from kith.notifications.models import COMMUNITY_TYPES, NotificationType
from kith.posts import presenter
from kith.posts.models import Post
from kith.web.deps import Current, check_csrf, get_db, signed_in
from kith.web.templating import render
from kith.web.timelines import _cursor

router = APIRouter(dependencies=[Depends(check_csrf)])

TYPE_GROUPS = {
    "": None,
    "mentions": [NotificationType.MENTION, NotificationType.REPLY],
    "follows": [NotificationType.FOLLOW, NotificationType.FOLLOW_REQUEST],
    "likes": [NotificationType.LIKE],
    "boosts": [NotificationType.BOOST],
    "polls": [NotificationType.POLL],
    "edits": [NotificationType.UPDATE],
    "communities": sorted(COMMUNITY_TYPES),
}


@router.get("/notifications")
async def notifications_page(
    request: Request,
    type: str = "",
    max_id: str | None = None,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    types = TYPE_GROUPS.get(type)
    assert me.user is not None
    items = await notifications.list_notifications(
        db, me.viewer, types=types, max_id=_cursor(max_id)
    )
    accounts = {
        a.id: a
        for a in (
            await db.scalars(
                select(Account).where(Account.id.in_({n.from_account_id for n in items}))
            )
        ).all()
    }
    post_ids = [n.post_id for n in items if n.post_id]
    posts = (
        list((await db.scalars(select(Post).where(Post.id.in_(post_ids)))).all())
        if post_ids
        else []
    )
    views = await filters.apply(
        db, me.viewer, await presenter.present(db, me.viewer, posts), context="notifications"
    )
    await presenter.with_communities(db, views)
    by_id = {v.post.id: v for v in views}
    rows = [
        (n, accounts.get(n.from_account_id), by_id.get(n.post_id) if n.post_id else None)
        for n in items
    ]
    rows = [r for r in rows if r[0].post_id is None or r[2] is not None]
    community_ids = {n.community_id for n in items if n.community_id is not None}
    communities = (
        {
            c.id: c
            for c in await db.scalars(select(Community).where(Community.id.in_(community_ids)))
        }
        if community_ids
        else {}
    )
    read_up_to = me.user.notifications_read_id
    return await render(
        request,
        db,
        "notifications.html",
        {
            "rows": rows,
            "communities": communities,
            "type": type,
            "groups": list(TYPE_GROUPS),
            "read_up_to": read_up_to,
            "older": items[-1].id if len(items) == 40 else None,
            "title": "Notifications",
        },
    )


@router.post("/notifications/read")
async def mark_read(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    assert me.user is not None
    await notifications.mark_read(db, me.user)
    return RedirectResponse("/notifications", status_code=303)
