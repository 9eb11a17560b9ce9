"""Editing one's public profile: names, bio, profile fields, switches, avatar and header.

Display name, pronouns and field names are plain text (templates escape them). The bio and
field values are rendered once here through kith.text (Markdown subset, sanitized, URLs
linked) and stored beside their source."""

from __future__ import annotations

import asyncio
import unicodedata
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import text
from kith.accounts.models import Account
from kith.errors import ValidationFailed
from kith.media import images, storage
from kith.runtime import runtime_of

MAX_DISPLAY_NAME = 100
MAX_BIO = 500
MAX_PRONOUNS = 40
MAX_FIELDS = 4
MAX_FIELD_NAME = 100
MAX_FIELD_VALUE = 255


@dataclass
class ProfileInput:
    """What the profile form sends. `fields` are (name, value) pairs; empty pairs are dropped."""

    display_name: str = ""
    bio: str = ""
    pronouns: str = ""
    fields: list[tuple[str, str]] = field(default_factory=list)
    locked: bool = False
    discoverable: bool = True
    hide_network: bool = False


# Bidi embeddings, overrides and isolates: they can flip the text around a name ("@evil"
# shown as "@live"). Zero-width joiners stay: emoji sequences need them.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _one_line(value: str) -> str:
    """Plain text on one line: newlines and tabs become spaces, other control characters and
    bidi controls are dropped, outer spaces trimmed."""
    kept = (" " if ch in "\r\n\t" else ch for ch in value)
    return "".join(
        ch for ch in kept if unicodedata.category(ch) != "Cc" and ch not in _BIDI_CONTROLS
    ).strip()


def _check_length(value: str, limit: int, field_name: str, label: str) -> str:
    if len(value) > limit:
        raise ValidationFailed(f"{label} can be at most {limit} characters.", field=field_name)
    return value


async def _mention_urls(db: AsyncSession, source: str, base: str) -> dict[str, str]:
    """Links for the local accounts a bio mentions (unknown names stay text)."""
    names = [m for m in text.parse_text(source).mentions if "@" not in m]
    if not names:
        return {}
    found = await db.scalars(
        select(Account).where(
            Account.username_key.in_(names),
            Account.domain == "",
            Account.suspended_at.is_(None),
        )
    )
    return {a.username_key: f"{base}/@{a.username}" for a in found}


def _inline_html(html: str) -> str:
    """A one-paragraph rendering without its <p>…</p> wrapper (a field value is inline)."""
    if html.startswith("<p>") and html.endswith("</p>") and html.count("<p>") == 1:
        return html[3:-4]
    return html


async def _render(db: AsyncSession, source: str) -> str:
    base = runtime_of(db).settings.base_url
    return text.render_bio(
        source,
        mention_urls=await _mention_urls(db, source, base),
        hashtag_url=lambda tag: f"{base}/tags/{tag}",
    )


async def _fields(db: AsyncSession, pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    # Keep each pair's place in the form, so an error points at the row that caused it.
    rows = [(i, _one_line(n), _one_line(v)) for i, (n, v) in enumerate(pairs)]
    rows = [(i, n, v) for i, n, v in rows if n or v]
    if len(rows) > MAX_FIELDS:
        raise ValidationFailed(f"At most {MAX_FIELDS} profile fields.", field="fields")
    result = []
    for i, name, value in rows:
        if not name:
            raise ValidationFailed("Give each field a label.", field=f"field_{i}")
        _check_length(name, MAX_FIELD_NAME, f"field_{i}", "A field label")
        _check_length(value, MAX_FIELD_VALUE, f"field_{i}", "A field value")
        value_html = _inline_html(await _render(db, value))
        result.append({"name": name, "value": value, "value_html": value_html})
    return result


async def update_profile(db: AsyncSession, account: Account, data: ProfileInput) -> Account:
    """Check and save the profile; commits, or raises ValidationFailed with nothing written."""
    display_name = _check_length(
        _one_line(data.display_name), MAX_DISPLAY_NAME, "display_name", "The display name"
    )
    pronouns = _check_length(_one_line(data.pronouns), MAX_PRONOUNS, "pronouns", "Pronouns")
    bio = _check_length(data.bio.replace("\r\n", "\n").strip(), MAX_BIO, "bio", "The bio")
    fields = await _fields(db, data.fields)
    bio_html = await _render(db, bio)
    account.display_name = display_name
    account.pronouns = pronouns
    account.bio_source = bio
    account.bio_html = bio_html
    account.fields = fields
    account.locked = data.locked
    account.discoverable = data.discoverable
    account.hide_network = data.hide_network
    from kith.federation import outbound  # federation builds on accounts, not the reverse

    await outbound.profile_updated(db, account)
    await db.commit()
    return account


ImageKind = Literal["avatar", "header"]


async def set_image(db: AsyncSession, account: Account, kind: ImageKind, data: bytes) -> str:
    """Check, clean and store an uploaded avatar or header, replacing the old file.

    The image work runs in a thread; the old file is deleted only once the new path is
    committed. Returns the new media path. Raises images.ImageRejected for unfit uploads."""
    settings = runtime_of(db).settings
    convert = images.avatar_from_upload if kind == "avatar" else images.header_from_upload
    webp = await asyncio.to_thread(convert, data, max_bytes=settings.max_avatar_bytes)
    media_dir = settings.effective_media_dir
    path = await asyncio.to_thread(storage.save, media_dir, f"{kind}s", webp, ".webp")
    old = account.avatar_path if kind == "avatar" else account.header_path
    if kind == "avatar":
        account.avatar_path = path
    else:
        account.header_path = path
    try:
        await db.commit()
    except BaseException:
        await asyncio.to_thread(storage.delete, media_dir, path)
        raise
    await asyncio.to_thread(storage.delete, media_dir, old)
    return path


async def remove_image(db: AsyncSession, account: Account, kind: ImageKind) -> None:
    """Remove the avatar or header (the file is deleted, not just unlinked). Commits."""
    old = account.avatar_path if kind == "avatar" else account.header_path
    if kind == "avatar":
        account.avatar_path = None
    else:
        account.header_path = None
    await db.commit()
    await asyncio.to_thread(storage.delete, runtime_of(db).settings.effective_media_dir, old)
