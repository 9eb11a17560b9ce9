"""Custom emoji: admins add and remove local ones; posts, content warnings and profiles use
them as `:shortcode:`, and the surfaces ask here which emoji a text uses.

Which emoji a text shows is derived from the text when it is rendered: the `:shortcode:`s in
it that name an emoji of the author's domain (local ones for local people; for a remote
author, the ones their server declared in `Emoji` tags, stored by `emojis.remote`). A post
rendered before its emoji existed shows the plain `:shortcode:` until it is rendered again."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.config import Settings
from kith.emojis.models import CustomEmoji
from kith.errors import NotFound, ValidationFailed
from kith.jobs.queue import enqueue
from kith.media import images, storage
from kith.moderation.roles import require_moderator
from kith.posts.models import Post
from kith.runtime import runtime_of

Json = dict[str, Any]

MAX_SHORTCODE = 64
SHORTCODE_RE = re.compile(r"[a-zA-Z0-9_]{2,64}")
# A `:shortcode:` in text, not glued to a letter, digit or colon on either side (so times like
# 10:30:00 and URLs are left alone), as Mastodon reads it.
IN_TEXT_RE = re.compile(r"(?<![a-zA-Z0-9_:]):([a-zA-Z0-9_]{2,64}):(?![a-zA-Z0-9_:])")
MAX_EMOJI_BYTES = 256 * 1024  # as Mastodon's limit for an emoji's image
FOLDER = "emoji"
DUPLICATE = "An emoji with this shortcode exists already."


def check_shortcode(value: str) -> str:
    """The shortcode as stored (colons around it are dropped); ValidationFailed otherwise."""
    code = value.strip().strip(":")
    if not SHORTCODE_RE.fullmatch(code):
        raise ValidationFailed(
            "A shortcode is 2 to 64 letters, digits or underscores.", field="shortcode"
        )
    return code


def shortcodes_in(*texts: str | None) -> set[str]:
    """The shortcodes `:written:` in these texts (plain text or HTML)."""
    found: set[str] = set()
    for t in texts:
        if t and ":" in t:
            found.update(IN_TEXT_RE.findall(t))
    return found


# --- local emoji (admins) -----------------------------------------------------------------


async def _local(db: AsyncSession, code: str) -> CustomEmoji | None:
    """The local emoji of this shortcode, whatever its case (`:Blob:` and `:blob:` would be
    two emoji nobody can tell apart in a picker)."""
    return await db.scalar(
        select(CustomEmoji).where(
            CustomEmoji.domain == "", func.lower(CustomEmoji.shortcode) == code.lower()
        )
    )


async def add_local(
    db: AsyncSession, admin: policy.Viewer, shortcode: str, data: bytes
) -> CustomEmoji:
    """Add a local emoji from an uploaded image (PNG, GIF or WebP, at most 256 KB; stored as a
    cleaned PNG of at most 128 px) and commit. Nothing is written when anything is refused:
    ValidationFailed on `shortcode` (malformed, taken) or `image`."""
    require_moderator(admin)
    code = check_shortcode(shortcode)
    if await _local(db, code) is not None:
        raise ValidationFailed(DUPLICATE, field="shortcode")
    png = await asyncio.to_thread(images.emoji_from_upload, data, max_bytes=MAX_EMOJI_BYTES)
    media_dir = runtime_of(db).settings.effective_media_dir
    path = await asyncio.to_thread(storage.save, media_dir, FOLDER, png, ".png")
    emoji = CustomEmoji(shortcode=code, domain="", image_path=path)
    db.add(emoji)
    try:
        await db.commit()
    except IntegrityError:  # added by someone else meanwhile
        await db.rollback()
        await asyncio.to_thread(storage.delete, media_dir, path)
        raise ValidationFailed(DUPLICATE, field="shortcode") from None
    except BaseException:
        await db.rollback()
        await asyncio.to_thread(storage.delete, media_dir, path)
        raise
    return emoji


async def remove_local(db: AsyncSession, admin: policy.Viewer, shortcode: str) -> None:
    """Remove a local emoji (committed); its file is deleted by a job once this commits. Posts
    that used it show the plain `:shortcode:` once rendered again."""
    require_moderator(admin)
    emoji = await _local(db, shortcode.strip().strip(":"))
    if emoji is None:
        raise NotFound("No such emoji.")
    await db.execute(delete(CustomEmoji).where(CustomEmoji.id == emoji.id))
    if emoji.image_path:
        await enqueue(db, "media.delete_files", {"paths": [emoji.image_path]})
    await db.commit()


async def list_local(db: AsyncSession) -> list[CustomEmoji]:
    """This instance's emoji, by shortcode."""
    rows = await db.scalars(
        select(CustomEmoji).where(CustomEmoji.domain == "").order_by(CustomEmoji.shortcode)
    )
    return list(rows.all())


# --- which emoji a text uses --------------------------------------------------------------


async def lookup(
    db: AsyncSession, wanted: dict[str, set[str]]
) -> dict[tuple[str, str], CustomEmoji]:
    """{(domain, shortcode): emoji} for the shortcodes wanted per domain, in one query (none
    when nothing is wanted). Remote emoji whose image was refused are left out."""
    wanted = {d: codes for d, codes in wanted.items() if codes}
    if not wanted:
        return {}
    clauses = [
        and_(CustomEmoji.domain == d, CustomEmoji.shortcode.in_(sorted(codes)))
        for d, codes in wanted.items()
    ]
    rows = await db.scalars(select(CustomEmoji).where(or_(*clauses), CustomEmoji.failed.is_(False)))
    return {(e.domain, e.shortcode): e for e in rows.all()}


def _pick(
    found: dict[tuple[str, str], CustomEmoji], domain: str, codes: Iterable[str]
) -> list[CustomEmoji]:
    return [found[(domain, c)] for c in sorted(codes) if (domain, c) in found]


async def for_posts(
    db: AsyncSession, posts: Iterable[Post], authors: dict[int, Account]
) -> dict[int, list[CustomEmoji]]:
    """{post id: the emoji its text and content warning use}, by shortcode; posts without a
    `:shortcode:` cost nothing, and the rest one query together."""
    codes_of: dict[int, tuple[str, set[str]]] = {}
    for p in posts:
        codes = shortcodes_in(p.content_html, p.spoiler_text)
        author = authors.get(p.account_id)
        if codes and author is not None:
            codes_of[p.id] = (author.domain or "", codes)
    wanted: dict[str, set[str]] = {}
    for domain, codes in codes_of.values():
        wanted.setdefault(domain, set()).update(codes)
    found = await lookup(db, wanted)
    return {pid: _pick(found, domain, codes) for pid, (domain, codes) in codes_of.items()}


def account_texts(a: Account) -> list[str]:
    """The texts of a profile that may hold `:shortcode:`s: name, bio, profile fields."""
    texts = [a.display_name or "", a.bio_html or ""]
    for f in a.fields or []:
        texts += [str(f.get("name", "")), str(f.get("value_html") or f.get("value", ""))]
    return texts


async def for_accounts(
    db: AsyncSession, accounts: Iterable[Account]
) -> dict[int, list[CustomEmoji]]:
    """{account id: the emoji its name, bio and fields use} (at most one query)."""
    codes_of = {
        a.id: (a.domain or "", codes)
        for a in accounts
        if (codes := shortcodes_in(*account_texts(a)))
    }
    wanted: dict[str, set[str]] = {}
    for domain, codes in codes_of.values():
        wanted.setdefault(domain, set()).update(codes)
    found = await lookup(db, wanted)
    return {aid: _pick(found, domain, codes) for aid, (domain, codes) in codes_of.items()}


# --- how an emoji is shown ----------------------------------------------------------------


def image_url(settings: Settings, emoji: CustomEmoji) -> str:
    """The emoji's picture, always served from here (`emojis.routes`): a stable URL whatever
    the state of a remote emoji's cached copy, so entities cached with it stay right."""
    return f"{settings.base_url}/emojis/{emoji.id}.png"


def entity(settings: Settings, emoji: CustomEmoji) -> Json:
    """Mastodon's CustomEmoji entity, as statuses and accounts carry it."""
    url = image_url(settings, emoji)
    return {
        "shortcode": emoji.shortcode,
        "url": url,
        "static_url": url,
        "visible_in_picker": emoji.visible_in_picker,
    }
