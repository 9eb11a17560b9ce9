"""Flairs: a small set of labels a community's moderators define for its threads. An author
picks at most one when starting a thread, moderators may change it later, the feed can be
filtered by it and the thread's card shows it. Flairs stay on this server (no documented
ActivityPub shape that Lemmy-compatible peers read yet)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kith.communities import permissions
from kith.communities.models import Community, CommunityFlair, CommunityPost, ModAction
from kith.communities.modlog import check_reason, log_action
from kith.communities.permissions import CommunityAction
from kith.errors import NotFound, ValidationFailed

MAX_FLAIRS = 20
MAX_NAME = 30
# A fixed palette, so every flair is readable on the page's light and dark themes.
PALETTE = ("grey", "red", "orange", "yellow", "green", "teal", "blue", "purple", "pink")


async def flairs_of_community(db: AsyncSession, community: Community) -> list[CommunityFlair]:
    """The community's flairs, in the order they were made (public, like its rules)."""
    rows = await db.scalars(
        select(CommunityFlair)
        .where(CommunityFlair.community_id == community.id)
        .order_by(CommunityFlair.id)
    )
    return list(rows.all())


async def find_flair(db: AsyncSession, community: Community, name: str) -> CommunityFlair | None:
    """The community's flair called `name` (any case), or None."""
    return await db.scalar(
        select(CommunityFlair).where(
            CommunityFlair.community_id == community.id,
            CommunityFlair.name_key == name.strip().lower()[:MAX_NAME],
        )
    )


async def flair_named(db: AsyncSession, community: Community, name: str) -> CommunityFlair | None:
    """The flair an author or moderator chose by name: None for "" (no flair); a name the
    community does not have is refused (field `flair`)."""
    if not name.strip():
        return None
    flair = await find_flair(db, community, name)
    if flair is None:
        raise ValidationFailed(f"!{community.handle} has no flair called that.", field="flair")
    return flair


async def feed_filter(
    db: AsyncSession, community: Community, wanted: str | None
) -> tuple[list[CommunityFlair], CommunityFlair | None, str]:
    """For the community page: its flairs, the one `wanted` names to filter the feed by
    (None: no filter), and an error for a name it has no flair for."""
    available = await flairs_of_community(db, community)
    if not wanted:
        return available, None, ""
    found = await find_flair(db, community, wanted)
    return available, found, "" if found else "This community has no flair called that."


async def create_flair(
    db: AsyncSession, actor_id: int, community: Community, name: str, colour: str
) -> CommunityFlair:
    """Add a flair (moderators). Refused: an empty or too long name, a colour outside the
    palette, a name the community already has (any case), more than MAX_FLAIRS. Logged as an
    edit of the community. Commits."""
    await permissions.require(db, actor_id, community, CommunityAction.UPDATE)
    name = " ".join(name.split())
    if not name or len(name) > MAX_NAME:
        raise ValidationFailed(f"Name the flair in 1 to {MAX_NAME} characters.", field="name")
    if colour not in PALETTE:
        raise ValidationFailed("Choose one of the colours offered.", field="colour")
    if await find_flair(db, community, name) is not None:
        raise ValidationFailed(f"This community already has a flair called {name}.", field="name")
    count = await db.scalar(
        select(func.count())
        .select_from(CommunityFlair)
        .where(CommunityFlair.community_id == community.id)
    )
    if (count or 0) >= MAX_FLAIRS:
        raise ValidationFailed(f"A community has at most {MAX_FLAIRS} flairs.", field="name")
    flair = CommunityFlair(
        community_id=community.id, name=name, name_key=name.lower(), colour=colour
    )
    db.add(flair)
    log_action(db, community, actor_id, ModAction.UPDATE, detail=f"added the flair {name}")
    try:
        await db.commit()  # the unique (community, name) constraint settles a race
    except IntegrityError:
        await db.rollback()
        raise ValidationFailed(
            f"This community already has a flair called {name}.", field="name"
        ) from None
    return flair


async def delete_flair(
    db: AsyncSession, actor_id: int, community: Community, flair_id: int
) -> None:
    """Remove a flair (moderators): the threads wearing it keep no flair. Commits."""
    await permissions.require(db, actor_id, community, CommunityAction.UPDATE)
    flair = await db.get(CommunityFlair, flair_id)
    if flair is None or flair.community_id != community.id:
        raise NotFound("No such flair.")
    log_action(db, community, actor_id, ModAction.UPDATE, detail=f"removed the flair {flair.name}")
    await db.delete(flair)
    await db.commit()


async def set_thread_flair(
    db: AsyncSession,
    actor_id: int,
    community: Community,
    post_id: int,
    name: str,
    reason: str = "",
) -> CommunityPost:
    """A moderator gives a thread another flair ("" takes it off). Refused: not a thread of
    the community, a name the community has no flair for, the flair it already wears.
    Logged. Commits."""
    from kith.posts.models import Post  # posts.service imports this package: import late

    await permissions.require(db, actor_id, community, CommunityAction.MODERATE)
    reason = check_reason(reason)
    flair = await flair_named(db, community, name)
    row = await db.get(CommunityPost, (community.id, post_id))
    if row is None:
        raise NotFound("This post is not in the community.")
    if not row.is_thread:
        raise ValidationFailed("Only a thread's first post has a flair.", field="post_id")
    wanted = flair.id if flair is not None else None
    if row.flair_id == wanted:
        raise ValidationFailed("The thread already has this flair.", field="flair")
    row.flair_id = wanted
    log_action(
        db,
        community,
        actor_id,
        ModAction.FLAIR,
        target_account_id=await db.scalar(select(Post.account_id).where(Post.id == post_id)),
        target_post_id=post_id,
        reason=reason,
        detail=f"flair: {flair.name}" if flair is not None else "flair taken off",
    )
    await db.commit()
    return row


async def flairs_of_threads(
    db: AsyncSession, community: Community, post_ids: Sequence[int]
) -> dict[int, CommunityFlair]:
    """post id → its flair in this community, for the threads' cards (one query)."""
    if not post_ids:
        return {}
    rows = await db.execute(
        select(CommunityPost.post_id, CommunityFlair)
        .join(CommunityFlair, CommunityFlair.id == CommunityPost.flair_id)
        .where(CommunityPost.community_id == community.id, CommunityPost.post_id.in_(post_ids))
    )
    return {post_id: flair for post_id, flair in rows.all()}
