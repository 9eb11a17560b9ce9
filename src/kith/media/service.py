"""Media attachments: upload, describe, attach to a post, and forget (rows and files).

An image is processed in a thread while its upload waits (metadata stripped, a WebP of at most
2560 px and a 400 px preview, a blurhash), so it is READY at once; video (later) will be a job
that moves an attachment from PROCESSING to READY. Files live in the media directory
(`storage`), rows in `media_attachments`. Whoever deletes rows deletes their files too —
explicitly, through this module, never through ORM events: the rows go in the caller's
transaction together with a `media.delete_files` job, so the files go once that commits (and
the post delete path removes them at once as well, after its commit)."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.db import utcnow
from kith.errors import NotFound, ValidationFailed
from kith.jobs.queue import enqueue, job_handler
from kith.media import images, storage
from kith.media.models import MediaAttachment, MediaState, MediaType
from kith.posts.models import Post
from kith.runtime import runtime_of

MAX_ATTACHMENTS = 4
MAX_DESCRIPTION = 1500
UNATTACHED_TTL = timedelta(hours=24)
FOLDER_ORIGINAL = "attachments/original"
FOLDER_SMALL = "attachments/small"
CLEANUP_BATCH = 500


@dataclass(frozen=True)
class Focus:
    """The point of interest of an image, each coordinate in [-1, 1] (0,0 is the centre)."""

    x: float = 0.0
    y: float = 0.0


def parse_focus(raw: str | None) -> Focus | None:
    """Mastodon's `focus` parameter, "x,y"; None when absent. ValidationFailed if malformed."""
    if raw is None or not raw.strip():
        return None
    parts = raw.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        focus = Focus(float(parts[0]), float(parts[1]))
    except ValueError:
        raise ValidationFailed(
            "focus must be two numbers between -1 and 1, as x,y", field="focus"
        ) from None
    return _check_focus(focus)


def _check_focus(focus: Focus) -> Focus:
    for v in (focus.x, focus.y):
        if not math.isfinite(v) or not -1.0 <= v <= 1.0:
            raise ValidationFailed("focus coordinates must be between -1 and 1", field="focus")
    return focus


def _check_description(description: str | None) -> str:
    text = (description or "").strip()
    if len(text) > MAX_DESCRIPTION:
        raise ValidationFailed(
            f"Descriptions are at most {MAX_DESCRIPTION} characters.", field="description"
        )
    return text


async def upload(
    db: AsyncSession,
    account: Account,
    data: bytes,
    content_type: str | None,
    description: str | None = None,
    focus: Focus | None = None,
) -> MediaAttachment:
    """Store an uploaded image (JPEG, PNG, WebP, or a GIF's first frame) as an unattached
    attachment of `account`, cleaned and resized in a thread. Commits. ValidationFailed (field
    "file") for anything that is not an image we take or is over `max_image_bytes`."""
    settings = runtime_of(db).settings
    text = _check_description(description)
    where = _check_focus(focus or Focus())
    if (content_type or "").split("/")[0].strip().lower() in ("video", "audio"):
        raise ValidationFailed("Only images can be attached for now.", field="file")
    # The bytes decide what the file is, not the declared type: Pillow only opens the formats
    # we accept and refuses everything else.
    image = await asyncio.to_thread(
        images.attachment_from_upload, data, max_bytes=settings.max_image_bytes
    )
    media_dir = settings.effective_media_dir
    saved: list[str] = []
    try:
        saved.append(
            await asyncio.to_thread(storage.save, media_dir, FOLDER_ORIGINAL, image.full, ".webp")
        )
        saved.append(
            await asyncio.to_thread(storage.save, media_dir, FOLDER_SMALL, image.preview, ".webp")
        )
        media = MediaAttachment(
            account_id=account.id,
            type=MediaType.IMAGE,
            state=MediaState.READY,
            file_path=saved[0],
            preview_path=saved[1],
            width=image.width,
            height=image.height,
            preview_width=image.preview_width,
            preview_height=image.preview_height,
            blurhash=image.blurhash,
            description=text,
            focus_x=where.x,
            focus_y=where.y,
            created_at=utcnow(),
        )
        db.add(media)
        await db.commit()
    except BaseException:
        await asyncio.to_thread(_delete_files, media_dir, saved)
        raise
    return media


async def get_own(db: AsyncSession, account: Account, media_id: int) -> MediaAttachment:
    """One of the account's own attachments (attached or not); NotFound otherwise."""
    media = await db.get(MediaAttachment, media_id)
    if media is None or media.account_id != account.id:
        raise NotFound("Record not found")
    return media


async def get_visible(db: AsyncSession, viewer: policy.Viewer, media_id: int) -> MediaAttachment:
    """An attachment the viewer may see (see policy.can_see_media); NotFound otherwise."""
    media = await db.get(MediaAttachment, media_id)
    if media is None or not await policy.can_see_media(db, viewer, media):
        raise NotFound("Record not found")
    return media


async def update(
    db: AsyncSession,
    account: Account,
    media_id: int,
    description: str | None = None,
    focus: Focus | None = None,
) -> MediaAttachment:
    """Change the description (alt text) and/or focus of one's own attachment; None leaves a
    value as it is. Allowed after attaching too: alt text is how a post stays accessible, and
    fixing it must not need a new post. Commits."""
    media = await get_own(db, account, media_id)
    if description is not None:
        media.description = _check_description(description)
    if focus is not None:
        where = _check_focus(focus)
        media.focus_x, media.focus_y = where.x, where.y
    await db.commit()
    return media


async def describe(
    db: AsyncSession, attachments: list[MediaAttachment], descriptions: dict[int, str]
) -> None:
    """Set new alt text on some of a post's attachments (an edit), in the caller's transaction.
    ValidationFailed if an id is not one of `attachments` or a text is too long."""
    by_id = {m.id: m for m in attachments}
    if any(media_id not in by_id for media_id in descriptions):
        raise ValidationFailed("That attachment is not on this post.", field="media_ids")
    for media_id, text in descriptions.items():
        by_id[media_id].description = _check_description(text)


async def check_attachable(db: AsyncSession, account: Account, media_ids: list[int]) -> list[int]:
    """The ids, without repeats, if they may be attached to a new post by `account`: at most
    four, each the account's own, ready, and not on another post. ValidationFailed (field
    "media_ids") otherwise. Reads only: call it before writing anything."""
    ids = list(dict.fromkeys(media_ids))
    if len(ids) > MAX_ATTACHMENTS:
        raise ValidationFailed(
            f"A post can have at most {MAX_ATTACHMENTS} attachments.", field="media_ids"
        )
    if not ids:
        return []
    rows = (await db.scalars(select(MediaAttachment).where(MediaAttachment.id.in_(ids)))).all()
    usable = {
        m.id
        for m in rows
        if m.account_id == account.id and m.post_id is None and m.state == MediaState.READY
    }
    if usable != set(ids):
        raise ValidationFailed(
            "An attachment is not yours, is already on a post, or is gone; upload it again.",
            field="media_ids",
        )
    return ids


async def attach(
    db: AsyncSession, account: Account, post: Post, media_ids: list[int]
) -> list[MediaAttachment]:
    """Attach the account's uploads to its new post, in the order given, in the caller's
    transaction (no commit). ValidationFailed (field "media_ids") as `check_attachable`; the
    caller must then roll back. Each row is claimed with a conditional UPDATE, so two posts
    racing for one upload cannot both get it."""
    ids = await check_attachable(db, account, media_ids)
    for position, media_id in enumerate(ids):
        result = await db.execute(
            sql_update(MediaAttachment)
            .where(
                MediaAttachment.id == media_id,
                MediaAttachment.account_id == account.id,
                MediaAttachment.post_id.is_(None),
                MediaAttachment.state == MediaState.READY,
            )
            .values(post_id=post.id, position=position)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != 1:
            raise ValidationFailed("An attachment is already on another post.", field="media_ids")
    return await for_post(db, post.id)


async def for_post(db: AsyncSession, post_id: int) -> list[MediaAttachment]:
    """A post's attachments in order."""
    return (await for_posts(db, [post_id])).get(post_id, [])


async def for_posts(db: AsyncSession, post_ids: list[int]) -> dict[int, list[MediaAttachment]]:
    """Attachments of many posts in one query, each list in the post's order. Callers have
    already decided (kith.policy) that the viewer may see these posts."""
    if not post_ids:
        return {}
    rows = await db.scalars(
        select(MediaAttachment)
        .where(MediaAttachment.post_id.in_(post_ids))
        .order_by(MediaAttachment.post_id, MediaAttachment.position, MediaAttachment.id)
        .execution_options(populate_existing=True)
    )
    out: dict[int, list[MediaAttachment]] = {}
    for m in rows.all():
        assert m.post_id is not None
        out.setdefault(m.post_id, []).append(m)
    return out


def _paths(rows: Any) -> list[str]:
    return [p for row in rows for p in row if p]


async def forget_post_media(db: AsyncSession, post_id: int) -> list[str]:
    """Delete a post's attachment rows in the caller's transaction, with a job that deletes
    their files once it commits. Returns the file paths (for `remove_files` after commit)."""
    rows = await db.execute(
        delete(MediaAttachment)
        .where(MediaAttachment.post_id == post_id)
        .returning(MediaAttachment.file_path, MediaAttachment.preview_path)
    )
    paths = _paths(rows.all())
    if paths:
        await enqueue(db, "media.delete_files", {"paths": paths})
    return paths


async def discard(db: AsyncSession, account: Account, media_ids: list[int]) -> None:
    """Delete the account's own unattached uploads now, rows and files (a composer whose post
    was refused drops what it uploaded for it). Commits; ids that don't qualify are ignored."""
    if not media_ids:
        return
    rows = await db.execute(
        delete(MediaAttachment)
        .where(
            MediaAttachment.id.in_(media_ids),
            MediaAttachment.account_id == account.id,
            MediaAttachment.post_id.is_(None),
        )
        .returning(MediaAttachment.file_path, MediaAttachment.preview_path)
        .execution_options(synchronize_session=False)
    )
    paths = _paths(rows.all())
    await db.commit()
    await remove_files(db, paths)


async def remove_files(db: AsyncSession, paths: list[str]) -> None:
    """Delete stored files now (after the rows naming them are gone for good)."""
    if paths:
        await asyncio.to_thread(_delete_files, runtime_of(db).settings.effective_media_dir, paths)


async def forget_stale_uploads(db: AsyncSession) -> int:
    """Delete uploads never attached to a post within a day (rows now, files by a job once the
    caller commits). The DELETE re-checks "unattached", so an upload attached at the last
    moment stays. Returns how many went. Called by the periodic clean-up job."""
    cutoff = utcnow() - UNATTACHED_TTL
    stale = (
        select(MediaAttachment.id)
        .where(MediaAttachment.post_id.is_(None), MediaAttachment.created_at < cutoff)
        .limit(CLEANUP_BATCH)
    )
    rows = (
        await db.execute(
            delete(MediaAttachment)
            .where(
                MediaAttachment.id.in_(stale.scalar_subquery()),
                MediaAttachment.post_id.is_(None),
            )
            .returning(MediaAttachment.file_path, MediaAttachment.preview_path)
            .execution_options(synchronize_session=False)
        )
    ).all()
    paths = _paths(rows)
    if paths:
        await enqueue(db, "media.delete_files", {"paths": paths})
    return len(rows)


def _delete_files(media_dir: Any, paths: list[str]) -> None:
    for path in paths:
        storage.delete(media_dir, path)


@job_handler("media.delete_files")
async def delete_files_job(db: AsyncSession, payload: dict[str, Any]) -> None:
    """Remove files whose rows were deleted (idempotent: a missing file is fine)."""
    paths = [str(p) for p in payload.get("paths", []) if isinstance(p, str)]
    await remove_files(db, paths)
