"""A community's icon and banner: checked, cleaned (metadata stripped) and stored by the same
image path as an account's avatar and header (`kith.media.images`, `kith.media.storage`).
Changing them is an edit like any other: its moderators only, logged."""

from __future__ import annotations

import asyncio
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from kith.communities import permissions
from kith.communities.models import Community, ModAction, ModerationLogEntry
from kith.communities.moderation import log_action
from kith.communities.permissions import CommunityAction
from kith.media import images, storage
from kith.runtime import runtime_of

ImageKind = Literal["icon", "banner"]
_FOLDERS = {"icon": "community_icons", "banner": "community_banners"}


def _current(community: Community, kind: ImageKind) -> str | None:
    return community.icon_path if kind == "icon" else community.banner_path


def _set(community: Community, kind: ImageKind, path: str | None) -> None:
    if kind == "icon":
        community.icon_path = path
    else:
        community.banner_path = path


async def _card_changed(
    db: AsyncSession, community: Community, entry: ModerationLogEntry, kind: ImageKind
) -> None:
    """The community's Group sends its new card to its members' servers (`Update`)."""
    from kith.federation import group_moderation  # federation imports this domain: import late

    await group_moderation.card_changed(db, community, entry, [kind])


async def set_image(
    db: AsyncSession, actor_id: int, community: Community, kind: ImageKind, data: bytes
) -> str:
    """Store an uploaded icon (cropped to a square, like an avatar) or banner (like a
    header), replacing the old file once the new path is committed. Raises Forbidden for
    non-moderators and images.ImageRejected (field `icon`/`banner`) for unfit uploads, with
    nothing written. Commits."""
    await permissions.require(db, actor_id, community, CommunityAction.UPDATE)
    settings = runtime_of(db).settings
    convert = images.avatar_from_upload if kind == "icon" else images.header_from_upload
    try:
        webp = await asyncio.to_thread(convert, data, max_bytes=settings.max_avatar_bytes)
    except images.ImageRejected as err:
        err.field = kind
        raise
    media_dir = settings.effective_media_dir
    path = await asyncio.to_thread(storage.save, media_dir, _FOLDERS[kind], webp, ".webp")
    old = _current(community, kind)
    _set(community, kind, path)
    entry = log_action(db, community, actor_id, ModAction.UPDATE, detail=f"changed {kind}")
    await _card_changed(db, community, entry, kind)
    try:
        await db.commit()
    except BaseException:
        await asyncio.to_thread(storage.delete, media_dir, path)
        raise
    await asyncio.to_thread(storage.delete, media_dir, old)
    return path


async def remove_image(
    db: AsyncSession, actor_id: int, community: Community, kind: ImageKind
) -> None:
    """Remove the icon or banner (the file is deleted). Nothing to remove: no change. Commits."""
    await permissions.require(db, actor_id, community, CommunityAction.UPDATE)
    old = _current(community, kind)
    if old is None:
        return
    _set(community, kind, None)
    entry = log_action(db, community, actor_id, ModAction.UPDATE, detail=f"removed {kind}")
    await _card_changed(db, community, entry, kind)
    await db.commit()
    await asyncio.to_thread(storage.delete, runtime_of(db).settings.effective_media_dir, old)
