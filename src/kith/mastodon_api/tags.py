"""Hashtags: look one up, follow and unfollow it, list the ones I follow."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy, text
from kith.db import id_for_time, utcnow
from kith.errors import NotFound
from kith.mastodon_api.deps import Auth, clamp, optional_auth, scoped
from kith.posts.models import Post, PostTag, Tag
from kith.runtime import runtime_of
from kith.timelines.models import TagFollow
from kith.web.deps import get_db

router = APIRouter(prefix="/api/v1")


async def tag_entity(db: AsyncSession, tag: Tag, following: bool | None) -> dict[str, Any]:
    """The Tag entity with a week of daily usage history (uses and distinct accounts)."""
    base = runtime_of(db).settings.base_url
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    history = []
    for days_ago in range(7):
        start = today - timedelta(days=days_ago)
        lo, hi = id_for_time(start), id_for_time(start + timedelta(days=1))
        uses, accounts = (
            await db.execute(
                select(func.count(), func.count(func.distinct(Post.account_id)))
                .join(PostTag, PostTag.post_id == Post.id)
                .where(
                    PostTag.tag_id == tag.id,
                    Post.id >= lo,
                    Post.id < hi,
                    # only what anyone may see counts: private posts must not leak as numbers
                    policy.trendable_clause(Post),
                )
            )
        ).one()
        history.append(
            {"day": str(int(start.timestamp())), "uses": str(uses), "accounts": str(accounts)}
        )
    data: dict[str, Any] = {
        "name": tag.display_name or tag.name,
        "url": f"{base}/tags/{tag.name}",
        "history": history,
    }
    if following is not None:
        data["following"] = following
    return data


async def _tag(db: AsyncSession, name: str, *, create: bool = False) -> Tag:
    normalized = text.normalize_hashtag(name.lstrip("#"))
    if normalized is None:
        raise NotFound("Record not found")
    tag = await db.scalar(select(Tag).where(Tag.name == normalized))
    if tag is None and create:
        tag = Tag(name=normalized, display_name=name.lstrip("#"))
        db.add(tag)
        await db.flush()
    if tag is None:
        raise NotFound("Record not found")
    return tag


@router.get("/tags/{name}")
async def get_tag(
    name: str, db: AsyncSession = Depends(get_db), auth: Auth = Depends(optional_auth)
) -> dict[str, Any]:
    tag = await _tag(db, name)
    following = None
    if auth.user is not None:
        following = await db.get(TagFollow, (auth.account.id, tag.id)) is not None
    return await tag_entity(db, tag, following)


@router.post("/tags/{name}/follow")
async def follow_tag(
    name: str, db: AsyncSession = Depends(get_db), auth: Auth = Depends(scoped("write:follows"))
) -> dict[str, Any]:
    tag = await _tag(db, name, create=True)
    if await db.get(TagFollow, (auth.account.id, tag.id)) is None:
        db.add(TagFollow(account_id=auth.account.id, tag_id=tag.id))
    await db.commit()
    return await tag_entity(db, tag, True)


@router.post("/tags/{name}/unfollow")
async def unfollow_tag(
    name: str, db: AsyncSession = Depends(get_db), auth: Auth = Depends(scoped("write:follows"))
) -> dict[str, Any]:
    tag = await _tag(db, name)
    row = await db.get(TagFollow, (auth.account.id, tag.id))
    if row is not None:
        await db.delete(row)
        await db.commit()
    return await tag_entity(db, tag, False)


@router.get("/followed_tags")
async def followed_tags(
    limit: int | None = None,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read:follows")),
) -> list[dict[str, Any]]:
    rows = await db.scalars(
        select(Tag)
        .join(TagFollow, TagFollow.tag_id == Tag.id)
        .where(TagFollow.account_id == auth.account.id)
        .order_by(TagFollow.id.desc())
        .limit(clamp(limit, 100, 200))
    )
    return [await tag_entity(db, t, True) for t in rows.all()]
