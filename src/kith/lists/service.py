"""Create, rename and delete lists; add and remove members; the list timeline."""

from __future__ import annotations

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.errors import NotFound, ValidationFailed
from kith.graph.models import Follow
from kith.lists.models import List, ListMember
from kith.posts.models import Post
from kith.timelines.service import Page, paginate
from kith.timelines.shapes import ENTITIES

MAX_LISTS = 50
REPLIES_POLICIES = ("followed", "list", "none")


def _check(title: str, replies_policy: str) -> str:
    title = title.strip()
    if not 1 <= len(title) <= 100:
        raise ValidationFailed("A list needs a title of 1–100 characters.", field="title")
    if replies_policy not in REPLIES_POLICIES:
        raise ValidationFailed(
            "replies_policy is one of followed, list, none.", field="replies_policy"
        )
    return title


async def create_list(
    db: AsyncSession,
    owner: int,
    *,
    title: str,
    replies_policy: str = "list",
    exclusive: bool = False,
) -> List:
    title = _check(title, replies_policy)
    count = await db.scalar(select(func.count()).select_from(List).where(List.account_id == owner))
    if (count or 0) >= MAX_LISTS:
        raise ValidationFailed(f"You can have at most {MAX_LISTS} lists.", field="title")
    row = List(account_id=owner, title=title, replies_policy=replies_policy, exclusive=exclusive)
    db.add(row)
    await db.commit()
    return row


async def get_list(db: AsyncSession, owner: int, list_id: int) -> List:
    """One of the owner's lists (someone else's list is NotFound)."""
    row = await db.get(List, list_id)
    if row is None or row.account_id != owner:
        raise NotFound("Record not found")
    return row


async def my_lists(db: AsyncSession, owner: int) -> list[List]:
    return list(
        (await db.scalars(select(List).where(List.account_id == owner).order_by(List.id))).all()
    )


async def update_list(
    db: AsyncSession,
    owner: int,
    list_id: int,
    *,
    title: str | None,
    replies_policy: str | None,
    exclusive: bool | None,
) -> List:
    row = await get_list(db, owner, list_id)
    row.title = _check(
        title if title is not None else row.title, replies_policy or row.replies_policy
    )
    row.replies_policy = replies_policy or row.replies_policy
    if exclusive is not None:
        row.exclusive = exclusive
    await db.commit()
    return row


async def delete_list(db: AsyncSession, owner: int, list_id: int) -> None:
    row = await get_list(db, owner, list_id)
    await db.execute(delete(List).where(List.id == row.id))
    await db.commit()


async def add_members(db: AsyncSession, owner: int, list_id: int, account_ids: list[int]) -> None:
    """Add accounts the owner follows (as Mastodon requires); others are refused."""
    row = await get_list(db, owner, list_id)
    for aid in dict.fromkeys(account_ids):
        if await db.get(Follow, (owner, aid)) is None:
            raise ValidationFailed("You can only add accounts you follow.", field="account_ids")
        if await db.get(ListMember, (row.id, aid)) is None:
            db.add(ListMember(list_id=row.id, account_id=aid))
    await db.commit()


async def remove_members(
    db: AsyncSession, owner: int, list_id: int, account_ids: list[int]
) -> None:
    row = await get_list(db, owner, list_id)
    await db.execute(
        delete(ListMember).where(
            ListMember.list_id == row.id, ListMember.account_id.in_(account_ids)
        )
    )
    await db.commit()


async def members(db: AsyncSession, owner: int, list_id: int, limit: int = 40) -> list[Account]:
    row = await get_list(db, owner, list_id)
    rows = await db.scalars(
        select(Account)
        .join(ListMember, ListMember.account_id == Account.id)
        .where(ListMember.list_id == row.id)
        .limit(limit)
    )
    return list(rows.all())


async def lists_containing(db: AsyncSession, owner: int, account_id: int) -> list[List]:
    rows = await db.scalars(
        select(List)
        .join(ListMember, ListMember.list_id == List.id)
        .where(List.account_id == owner, ListMember.account_id == account_id)
    )
    return list(rows.all())


async def timeline(
    db: AsyncSession,
    viewer: policy.Viewer,
    list_id: int,
    *,
    max_id: int | None = None,
    min_id: int | None = None,
    since_id: int | None = None,
    limit: int | None = None,
) -> Page[Post]:
    """Posts of the list's members the viewer may see, newest first."""
    assert viewer.account_id is not None
    row = await get_list(db, viewer.account_id, list_id)
    member_ids = select(ListMember.account_id).where(ListMember.list_id == row.id)
    stmt = select(Post).where(
        Post.account_id.in_(member_ids),
        policy.post_visible_clause(viewer),
        policy.not_muted_clause(viewer),
    )
    if row.replies_policy == "none":
        stmt = stmt.where(Post.in_reply_to_id.is_(None))
    elif row.replies_policy == "list":
        stmt = stmt.where(
            or_(
                Post.in_reply_to_account_id.is_(None),
                Post.in_reply_to_account_id.in_(member_ids),
                Post.in_reply_to_account_id == viewer.account_id,
            )
        )
    return await paginate(
        db, stmt, max_id=max_id, min_id=min_id, since_id=since_id, limit=limit, shape=ENTITIES
    )
