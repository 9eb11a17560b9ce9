"""The remote media cache: other servers' images, fetched once, cleaned and served from here.

Pages and the client API never point an `<img>` at another server (that would tell it who reads
what, and let it change the picture after the fact). A remote post's attachment, or a remote
actor's avatar and header, is fetched by a job through the SSRF-safe client (`Runtime.http`:
addresses checked at connect time, redirects re-checked, size and time bounded), must say it is
an image and must open as one with Pillow, and is then cleaned exactly like an upload (metadata
stripped, re-encoded, preview and blurhash) and stored in the media directory. Until then the
attachment shows a placeholder and its `remote_url`.

Cached attachment files older than `remote_media_days` are pruned by a periodic job; the rows
stay, and the next time someone is shown the post the file is fetched again."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.db import utcnow
from kith.federation.models import RemoteActor
from kith.federation.origin import origin_of
from kith.jobs.queue import enqueue, job_handler
from kith.media import images, storage
from kith.media.models import MediaAttachment, MediaState, MediaType
from kith.net import FetchError, FetchFailed, FetchTimedOut
from kith.runtime import in_background, runtime_of

log = logging.getLogger(__name__)

# The declared type must be one of these; Pillow then decides from the bytes themselves.
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif"})
FOLDER_ORIGINAL = "cache/original"
FOLDER_SMALL = "cache/small"
FOLDER_AVATARS = "cache/avatars"
FOLDER_HEADERS = "cache/headers"
FETCH_ATTEMPTS = 4  # a server that is down gets a few tries with back-off, then the placeholder
PRUNE_BATCH = 500
FETCH_JOB = "media.fetch_remote"
ACTOR_IMAGES_JOB = "media.fetch_actor_images"
PRUNE_JOB = "media.prune_remote"

# Background refetches started by pages (kept referenced so they are not garbage-collected).


class RemoteMediaRejected(Exception):
    """The remote file will not be cached: not an image, too large, unsafe address, refused
    domain… Retrying would not help."""


async def fetch_image_bytes(db: AsyncSession, url: str, *, max_bytes: int | None = None) -> bytes:
    """GET `url` through the SSRF-safe client and return its bytes if it is an image within
    `max_bytes` (default `remote_media_max_bytes`). RemoteMediaRejected for a permanent
    refusal; FetchFailed / FetchTimedOut (worth retrying) when the server did not answer
    properly."""
    settings = runtime_of(db).settings
    host = origin_of(url)
    if not host:
        raise RemoteMediaRejected(f"not an http(s) URL: {url[:200]}")
    from kith.federation import domain_blocks  # federation builds on media, not the reverse

    if await domain_blocks.rejects_media(db, host):
        raise RemoteMediaRejected(f"media from {host} is rejected by a domain block")
    try:
        fetched = await runtime_of(db).http.get(
            url,
            headers={"Accept": ", ".join(sorted(IMAGE_TYPES))},
            max_bytes=max_bytes or settings.remote_media_max_bytes,
        )
    except (FetchFailed, FetchTimedOut):
        raise
    except FetchError as exc:  # unsafe address, too large, too many redirects
        raise RemoteMediaRejected(str(exc)) from exc
    if fetched.status >= 500 or fetched.status in (408, 429):
        raise FetchFailed(f"{url[:200]} answered {fetched.status}")
    if fetched.status != 200:
        raise RemoteMediaRejected(f"{url[:200]} answered {fetched.status}")
    declared = fetched.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if declared not in IMAGE_TYPES:
        raise RemoteMediaRejected(f"{url[:200]} is not an image ({declared or 'no type'})")
    return fetched.content


async def _clean(data: bytes, max_bytes: int) -> images.ProcessedImage:
    try:
        return await asyncio.to_thread(images.attachment_from_upload, data, max_bytes=max_bytes)
    except images.ImageRejected as exc:
        raise RemoteMediaRejected(exc.message) from exc


async def cache_attachment(db: AsyncSession, media_id: int) -> str:
    """Fetch, clean and store one remote attachment (in the caller's transaction, which it
    commits only through the job). Returns the outcome. Nothing is written while fetching."""
    media = await db.get(MediaAttachment, media_id)
    if media is None or media.remote_url is None:
        return "gone"
    if media.file_path is not None:
        return "already cached"
    if media.type != MediaType.IMAGE:
        return "not an image: left as a link"
    settings = runtime_of(db).settings
    try:
        data = await fetch_image_bytes(db, media.remote_url)
        image = await _clean(data, settings.remote_media_max_bytes)
    except RemoteMediaRejected as exc:
        log.info("remote media %s not cached: %s", media_id, exc)
        await db.execute(
            update(MediaAttachment)
            .where(MediaAttachment.id == media_id, MediaAttachment.file_path.is_(None))
            .values(state=MediaState.FAILED)
            .execution_options(synchronize_session=False)
        )
        return f"rejected: {exc}"
    media_dir = settings.effective_media_dir
    full = await asyncio.to_thread(storage.save, media_dir, FOLDER_ORIGINAL, image.full, ".webp")
    small = await asyncio.to_thread(storage.save, media_dir, FOLDER_SMALL, image.preview, ".webp")
    # Conditional: the post may have been deleted (or another worker cached it) meanwhile.
    result = await db.execute(
        update(MediaAttachment)
        .where(MediaAttachment.id == media_id, MediaAttachment.file_path.is_(None))
        .values(
            file_path=full,
            preview_path=small,
            width=image.width,
            height=image.height,
            preview_width=image.preview_width,
            preview_height=image.preview_height,
            blurhash=image.blurhash,
            state=MediaState.READY,
            remote_fetched_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        await asyncio.to_thread(_delete, media_dir, [full, small])
        return "gone meanwhile"
    # If the job's commit never happens, these files are orphans: the job runs again and
    # writes new ones; a lost pair is a few hundred kilobytes, never a leak of data.
    return "cached"


def _delete(media_dir: Any, paths: list[str]) -> None:
    for path in paths:
        storage.delete(media_dir, path)


@job_handler(FETCH_JOB)
async def fetch_remote_job(db: AsyncSession, payload: dict[str, Any]) -> None:
    """Cache one remote attachment; a server error raises, so the job retries with back-off."""
    media_id = payload.get("media_id")
    if isinstance(media_id, int):
        await cache_attachment(db, media_id)


async def enqueue_fetch(db: AsyncSession, media_ids: list[int]) -> None:
    """Jobs (in the caller's transaction) that cache these remote attachments, one per file;
    a fetch already waiting for the same attachment is not queued twice."""
    for media_id in media_ids:
        await enqueue(
            db,
            FETCH_JOB,
            {"media_id": media_id},
            dedupe_key=f"{FETCH_JOB}:{media_id}",
            max_attempts=FETCH_ATTEMPTS,
        )


def needs_fetch(media: MediaAttachment) -> bool:
    """A remote image that is not cached (never fetched, or pruned) and not refused."""
    return (
        media.remote_url is not None
        and media.file_path is None
        and media.type == MediaType.IMAGE
        and media.state != MediaState.FAILED
    )


def refetch_soon(db: AsyncSession, rows: list[MediaAttachment]) -> None:
    """Someone is being shown these attachments: queue a fetch of those not cached, in a
    session of its own once the caller's work is done (a page must not write, nor wait)."""
    wanted = [m.id for m in rows if needs_fetch(m)]
    if not wanted:
        return

    async def queue_them(own: AsyncSession) -> None:
        await enqueue_fetch(own, wanted)
        await own.commit()

    in_background(db, queue_them, f"queue fetches of remote media {wanted}")


# --- avatars and headers ---------------------------------------------------------------------


async def actor_images_changed(db: AsyncSession, remote: RemoteActor) -> None:
    """Queue a (re)fetch of an actor's avatar and header, in the caller's transaction."""
    await enqueue(
        db,
        ACTOR_IMAGES_JOB,
        {"account_id": remote.account_id},
        dedupe_key=f"{ACTOR_IMAGES_JOB}:{remote.account_id}",
        max_attempts=FETCH_ATTEMPTS,
    )


async def _actor_image(db: AsyncSession, url: str | None, kind: str) -> bytes | None:
    if url is None:
        return None
    settings = runtime_of(db).settings
    convert = images.avatar_from_upload if kind == "avatar" else images.header_from_upload
    try:
        data = await fetch_image_bytes(db, url)
        return await asyncio.to_thread(convert, data, max_bytes=settings.remote_media_max_bytes)
    except (RemoteMediaRejected, images.ImageRejected) as exc:
        log.info("remote %s %s not cached: %s", kind, url[:200], exc)
        return None


async def cache_actor_images(db: AsyncSession, account_id: int) -> str:
    """Fetch and store a remote account's avatar and header (placeholders when refused)."""
    remote = await db.scalar(select(RemoteActor).where(RemoteActor.account_id == account_id))
    account = await db.get(Account, account_id)
    if remote is None or account is None or account.is_local:
        return "gone"
    avatar = await _actor_image(db, remote.avatar_url, "avatar")
    header = await _actor_image(db, remote.header_url, "header")
    media_dir = runtime_of(db).settings.effective_media_dir
    old = [p for p in (account.avatar_path, account.header_path) if p]
    account.avatar_path = (
        await asyncio.to_thread(storage.save, media_dir, FOLDER_AVATARS, avatar, ".webp")
        if avatar
        else None
    )
    account.header_path = (
        await asyncio.to_thread(storage.save, media_dir, FOLDER_HEADERS, header, ".webp")
        if header
        else None
    )
    remote.images_fetched_at = utcnow()
    if old:
        await enqueue(db, "media.delete_files", {"paths": old})
    return "cached"


@job_handler(ACTOR_IMAGES_JOB)
async def fetch_actor_images_job(db: AsyncSession, payload: dict[str, Any]) -> None:
    account_id = payload.get("account_id")
    if isinstance(account_id, int):
        await cache_actor_images(db, account_id)


# --- pruning ---------------------------------------------------------------------------------


async def prune_cached(db: AsyncSession) -> int:
    """Forget cached copies of remote attachments fetched more than `remote_media_days` ago:
    the rows go back to "not cached" (their files are deleted by a job once this commits), so
    the next page that shows the post fetches them again. Returns how many were pruned."""
    days = runtime_of(db).settings.remote_media_days
    if days == 0:
        return 0
    cutoff = utcnow() - timedelta(days=days)
    rows = (
        await db.execute(
            select(MediaAttachment.id, MediaAttachment.file_path, MediaAttachment.preview_path)
            .where(
                MediaAttachment.remote_url.is_not(None),
                MediaAttachment.remote_fetched_at < cutoff,
            )
            .limit(PRUNE_BATCH)
        )
    ).all()
    if not rows:
        return 0
    await db.execute(
        update(MediaAttachment)
        .where(MediaAttachment.id.in_([r[0] for r in rows]))
        .values(
            file_path=None,
            preview_path=None,
            remote_fetched_at=None,
            state=MediaState.PROCESSING,
        )
        .execution_options(synchronize_session=False)
    )
    paths = [p for r in rows for p in (r[1], r[2]) if p]
    if paths:
        await enqueue(db, "media.delete_files", {"paths": paths})
    return len(rows)


@job_handler(PRUNE_JOB)
async def prune_remote_job(db: AsyncSession, payload: dict[str, Any]) -> None:
    """The periodic pruning of the remote media cache (kith.jobs.worker.PERIODIC_JOBS)."""
    await prune_cached(db)
