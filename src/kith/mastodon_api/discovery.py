"""Discovery: follow suggestions and conversations (direct posts grouped by thread)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.graph.models import Follow
from kith.mastodon_api import render
from kith.mastodon_api.deps import Auth, clamp, scoped
from kith.posts.models import Mention, Post, Visibility
from kith.web.deps import get_db

router = APIRouter()


@router.get("/api/v2/suggestions")
async def suggestions(
    limit: int | None = None,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read")),
) -> list[dict[str, Any]]:
    """Discoverable local accounts with the most followers that I don't follow or block — a
    plain, explainable rule ("popular here")."""
    me = auth.account.id
    followers = (
        select(Follow.followee_id, func.count().label("n")).group_by(Follow.followee_id).subquery()
    )
    stmt = (
        select(Account)
        .join(followers, followers.c.followee_id == Account.id)
        .where(
            Account.id != me,
            Account.discoverable.is_(True),
            Account.suspended_at.is_(None),
            Account.domain == "",
            ~select(Follow.followee_id)
            .where(Follow.follower_id == me, Follow.followee_id == Account.id)
            .exists(),
            ~policy.blocked_between_clause(me, Account.id),
        )
        .order_by(followers.c.n.desc())
        .limit(clamp(limit, 40, 80))
    )
    accounts = await render.accounts(db, list((await db.scalars(stmt)).all()))
    return [{"source": "global", "sources": ["global"], "account": a} for a in accounts]


@router.get("/api/v1/conversations")
async def conversations(
    limit: int | None = None,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read:statuses")),
) -> list[dict[str, Any]]:
    """Direct conversations I am in, newest first: one entry per thread with its last post
    (posts of accounts I mute are left out). Unread state is not tracked yet (always false)."""
    me = auth.account.id
    thread = func.coalesce(Post.thread_root_id, Post.id)
    mine = select(Post.id).where(
        Post.visibility == Visibility.DIRECT,
        (Post.account_id == me)
        | select(Mention.post_id)
        .where(Mention.post_id == Post.id, Mention.account_id == me)
        .exists(),
        policy.post_visible_clause(auth.viewer),
        policy.not_muted_clause(auth.viewer),  # a list, like Home: muting hides its posts
    )
    latest = (
        select(func.max(Post.id))
        .where(Post.id.in_(mine))
        .group_by(thread)
        .order_by(func.max(Post.id).desc())
        .limit(clamp(limit, 20, 40))
    )
    posts = list(
        (await db.scalars(select(Post).where(Post.id.in_(latest)).order_by(Post.id.desc()))).all()
    )
    statuses = await render.statuses(db, auth.viewer, posts)
    out = []
    for post, status in zip(posts, statuses, strict=False):
        participants = {m["id"] for m in status["mentions"]} | {status["account"]["id"]}
        participants.discard(str(me))
        rows = await db.scalars(
            select(Account).where(Account.id.in_([int(i) for i in participants]))
        )
        out.append(
            {
                "id": str(post.thread_root_id or post.id),
                "unread": False,
                "accounts": await render.accounts(db, list(rows.all())),
                "last_status": status,
            }
        )
    return out
