"""Other servers' custom emoji: remembered from the `Emoji` tags of their posts and profiles,
their images fetched by a job through the SSRF-safe client (as remote media are: addresses
checked at connect time, redirects re-checked, at most 256 KB, must be an image) and cleaned
into a PNG served from here. A refused image is not tried again until the emoji changes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from kith.db import new_id, utcnow
from kith.emojis.activitypub import EmojiTag
from kith.emojis.models import CustomEmoji
from kith.emojis.service import MAX_EMOJI_BYTES
from kith.jobs.queue import enqueue, job_handler
from kith.media import images, storage
from kith.media.remote import RemoteMediaRejected, fetch_image_bytes
from kith.runtime import in_background, runtime_of

log = logging.getLogger(__name__)

FETCH_JOB = "emoji.fetch_remote"
FOLDER = "cache/emoji"
FETCH_ATTEMPTS = 4


async def remember(db: AsyncSession, domain: str, tags: list[EmojiTag]) -> None:
    """Store the emoji an actor of `domain` used (in the caller's transaction), under that
    domain only — a server defines its own emoji, never another's — and queue a fetch of each
    new or changed image. An older `updated` than the one stored changes nothing."""
    if not domain or not tags:
        return
    codes = [t.shortcode for t in tags]
    insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
    now = utcnow()
    await db.execute(
        insert(CustomEmoji)
        .values(
            [
                {
                    "id": new_id(),
                    "shortcode": t.shortcode,
                    "domain": domain,
                    "remote_url": t.url,
                    "uri": t.uri,
                    "visible_in_picker": False,
                    "failed": False,
                    "created_at": now,
                    "updated_at": t.updated or now,
                }
                for t in tags
            ]
        )
        .on_conflict_do_nothing(index_elements=["domain", "shortcode"])
    )
    stored = {
        e.shortcode: e
        for e in (
            await db.scalars(
                select(CustomEmoji)
                .where(CustomEmoji.domain == domain, CustomEmoji.shortcode.in_(codes))
                .execution_options(populate_existing=True)
            )
        ).all()
    }
    for tag in tags:
        emoji = stored.get(tag.shortcode)
        if emoji is None:
            continue
        if emoji.remote_url != tag.url:
            if tag.updated is not None and tag.updated < emoji.updated_at:
                continue  # an older copy of the post or profile
            emoji.remote_url, emoji.uri = tag.url, tag.uri or emoji.uri
            emoji.updated_at, emoji.failed = tag.updated or now, False
        elif emoji.image_path is not None or emoji.failed:
            continue
        await enqueue_fetch(db, emoji.id)


async def enqueue_fetch(db: AsyncSession, emoji_id: int) -> None:
    """A job (in the caller's transaction) that caches this emoji's image."""
    await enqueue(
        db,
        FETCH_JOB,
        {"emoji_id": emoji_id},
        dedupe_key=f"{FETCH_JOB}:{emoji_id}",
        max_attempts=FETCH_ATTEMPTS,
    )


def fetch_soon(db: AsyncSession, emoji: CustomEmoji) -> None:
    """Someone asked for a remote emoji not cached (yet, or any more): queue its fetch, in a
    session of its own once the caller's work is done."""
    if emoji.is_local or emoji.failed or emoji.remote_url is None:
        return
    emoji_id = emoji.id

    async def queue_it(own: AsyncSession) -> None:
        await enqueue_fetch(own, emoji_id)
        await own.commit()

    in_background(db, queue_it, f"queue a fetch of remote emoji {emoji_id}")


async def cache_image(db: AsyncSession, emoji_id: int) -> str:
    """Fetch, clean and store one remote emoji's image (in the job's transaction). Returns
    the outcome; a server error raises, so the job retries with back-off."""
    emoji = await db.get(CustomEmoji, emoji_id)
    if emoji is None or emoji.is_local or emoji.remote_url is None:
        return "gone"
    url = emoji.remote_url
    try:
        data = await fetch_image_bytes(db, url, max_bytes=MAX_EMOJI_BYTES)
        png = await asyncio.to_thread(
            images.emoji_from_upload,
            data,
            max_bytes=MAX_EMOJI_BYTES,
            formats=images.ACCEPTED_FORMATS,
        )
    except (RemoteMediaRejected, images.ImageRejected) as exc:
        log.info("remote emoji %s not cached: %s", emoji_id, exc)
        emoji.failed = True
        return f"rejected: {exc}"
    media_dir = runtime_of(db).settings.effective_media_dir
    path = await asyncio.to_thread(storage.save, media_dir, FOLDER, png, ".png")
    old = emoji.image_path
    # Conditional: the emoji may have changed (or gone) while its image was being fetched.
    result = await db.execute(
        update(CustomEmoji)
        .where(CustomEmoji.id == emoji_id, CustomEmoji.remote_url == url)
        .values(image_path=path, failed=False)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        await asyncio.to_thread(storage.delete, media_dir, path)
        return "changed meanwhile"
    if old:
        await enqueue(db, "media.delete_files", {"paths": [old]})
    return "cached"


@job_handler(FETCH_JOB)
async def fetch_remote_job(db: AsyncSession, payload: dict[str, Any]) -> None:
    emoji_id = payload.get("emoji_id")
    if isinstance(emoji_id, int):
        await cache_image(db, emoji_id)
