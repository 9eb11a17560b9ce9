"""Discovery: follow suggestions and conversations (direct posts grouped by thread)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.errors import NotFound
from kith.graph.models import Follow
from kith.mastodon_api import render
from kith.mastodon_api.deps import Auth, clamp, parse_id, scoped
from kith.posts.models import Mention, Post, Visibility
from kith.timelines.models import ConversationState
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


def _direct_posts_of(viewer: policy.Viewer) -> Any:
    """Ids of direct posts the viewer wrote or is mentioned in, and may see (posts of accounts
    the viewer mutes are left out: conversations are a list, like Home)."""
    me = viewer.account_id
    mentioned = select(Mention.post_id).where(Mention.post_id == Post.id, Mention.account_id == me)
    return select(Post.id).where(
        Post.visibility == Visibility.DIRECT,
        (Post.account_id == me) | mentioned.exists(),
        policy.post_visible_clause(viewer),
        policy.not_muted_clause(viewer),
    )


THREAD = func.coalesce(Post.thread_root_id, Post.id)


async def conversation_entity(
    db: AsyncSession, viewer: policy.Viewer, root_id: int
) -> dict[str, Any] | None:
    """The Conversation entity of one direct thread for this viewer (None if nothing visible
    is left in it, or the viewer removed it and nothing new came)."""
    me = viewer.account_id
    assert me is not None
    latest_id = await db.scalar(
        select(func.max(Post.id)).where(Post.id.in_(_direct_posts_of(viewer)), THREAD == root_id)
    )
    if latest_id is None:
        return None
    state = await db.get(ConversationState, (me, root_id))
    if state is not None and state.hidden_up_to_id >= latest_id:
        return None
    post = await db.get(Post, latest_id)
    assert post is not None
    status = (await render.statuses(db, viewer, [post]))[0]
    participants = {m["id"] for m in status["mentions"]} | {status["account"]["id"]}
    participants.discard(str(me))
    rows = await db.scalars(select(Account).where(Account.id.in_([int(i) for i in participants])))
    unread = post.account_id != me and (state is None or state.last_read_id < latest_id)
    return {
        "id": str(root_id),
        "unread": unread,
        "accounts": await render.accounts(db, list(rows.all())),
        "last_status": status,
    }


@router.get("/api/v1/conversations")
async def conversations(
    limit: int | None = None,
    max_id: str | None = None,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read:statuses")),
) -> list[dict[str, Any]]:
    """Direct conversations I am in, newest activity first: one per thread."""
    latest = func.max(Post.id)
    stmt = select(THREAD).where(Post.id.in_(_direct_posts_of(auth.viewer))).group_by(THREAD)
    before = parse_id(max_id)
    if before is not None:
        stmt = stmt.having(latest < before)
    roots = (await db.scalars(stmt.order_by(latest.desc()).limit(clamp(limit, 20, 40)))).all()
    out = []
    for root in roots:
        entity = await conversation_entity(db, auth.viewer, int(root))
        if entity is not None:
            out.append(entity)
    return out


async def _state(db: AsyncSession, auth: Auth, raw: str) -> tuple[ConversationState, int]:
    root = parse_id(raw)
    latest = None
    if root is not None:
        latest = await db.scalar(
            select(func.max(Post.id)).where(
                Post.id.in_(_direct_posts_of(auth.viewer)), THREAD == root
            )
        )
    if root is None or latest is None:
        raise NotFound("Record not found")
    state = await db.get(ConversationState, (auth.account.id, root))
    if state is None:
        state = ConversationState(
            account_id=auth.account.id, root_id=root, last_read_id=0, hidden_up_to_id=0
        )
        db.add(state)
    return state, latest


@router.post("/api/v1/conversations/{conversation_id}/read")
async def read_conversation(
    conversation_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:conversations")),
) -> dict[str, Any]:
    state, latest = await _state(db, auth, conversation_id)
    state.last_read_id = max(state.last_read_id, latest)
    await db.commit()
    entity = await conversation_entity(db, auth.viewer, state.root_id)
    if entity is None:
        raise NotFound("Record not found")
    return entity


@router.delete("/api/v1/conversations/{conversation_id}")
async def remove_conversation(
    conversation_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:conversations")),
) -> dict[str, Any]:
    """Remove a conversation from my list until someone writes in it again."""
    state, latest = await _state(db, auth, conversation_id)
    state.hidden_up_to_id = max(state.hidden_up_to_id, latest)
    state.last_read_id = max(state.last_read_id, latest)
    await db.commit()
    return {}
