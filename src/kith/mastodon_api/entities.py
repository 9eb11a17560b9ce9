"""Converters from Kith rows and views to Mastodon API entities (documented field names,
string ids, ISO 8601 dates, HTML content). No database access beyond batch look-ups."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account, AccountStats
from kith.config import Settings
from kith.db import utc_day
from kith.emojis import service as emoji_service
from kith.emojis.models import CustomEmoji
from kith.graph.service import Relationship
from kith.media.models import MediaAttachment
from kith.posts.presenter import PollView, PostView

Json = dict[str, Any]


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 with milliseconds and Z, as Mastodon writes dates."""
    if moment is None:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# (statuses, followers, following, the last status's UTC day as "2026-11-26", or None)
Counts = tuple[int, int, int, str | None]

MEDIA_PLACEHOLDER = "media-placeholder.png"  # shown for remote files not cached here


def _media_url(settings: Settings, path: str | None, fallback: str) -> str:
    return f"{settings.base_url}/media/{path}" if path else f"{settings.base_url}/static/{fallback}"


async def account_counts(db: AsyncSession, ids: list[int]) -> dict[int, Counts]:
    """(statuses, followers, following, last status's UTC day) per account, from the counters
    the database keeps (`AccountStats`): one primary-key lookup each."""
    if not ids:
        return {}
    rows = await db.execute(
        select(
            AccountStats.account_id,
            AccountStats.statuses_count,
            AccountStats.followers_count,
            AccountStats.following_count,
            utc_day(AccountStats.last_status_at),
        ).where(AccountStats.account_id.in_(ids))
    )
    found = {r[0]: (int(r[1]), int(r[2]), int(r[3]), r[4]) for r in rows}
    return {i: found.get(i, (0, 0, 0, None)) for i in ids}


def account(
    settings: Settings,
    a: Account,
    counts: Counts | None = None,
    emojis: Sequence[CustomEmoji] = (),
) -> Json:
    """The Account entity (`emojis`: those its name, bio and fields use,
    `emojis.service.for_accounts`)."""
    return account_static(settings, a, emojis) | account_counts_fields(counts)


def account_counts_fields(counts: Counts | None) -> Json:
    """The Account entity's counters (they change all the time: never cached)."""
    statuses, followers, following, last = counts or (0, 0, 0, None)
    return {
        "last_status_at": last,
        "statuses_count": statuses,
        "followers_count": followers,
        "following_count": following,
    }


def account_static(settings: Settings, a: Account, emojis: Sequence[CustomEmoji] = ()) -> Json:
    """The Account entity without its counters: what changes only with `a.render_rev` (the
    emoji are derived from the profile's text when it is rendered)."""
    url = f"{settings.base_url}/@{a.username}" if a.is_local else (a.uri or "")
    hidden = a.hide_network
    return {
        "id": str(a.id),
        "username": a.username,
        "acct": a.acct,
        "url": url,
        "uri": a.uri or url,
        "display_name": a.display_name,
        "note": a.bio_html,
        "avatar": _media_url(settings, a.avatar_path, "avatar.png"),
        "avatar_static": _media_url(settings, a.avatar_path, "avatar.png"),
        "header": _media_url(settings, a.header_path, "header.png"),
        "header_static": _media_url(settings, a.header_path, "header.png"),
        "locked": a.locked,
        "fields": [
            {
                "name": f.get("name", ""),
                "value": f.get("value_html") or f.get("value", ""),
                "verified_at": None,
            }
            for f in (a.fields or [])
        ],
        "emojis": [emoji_service.entity(settings, e) for e in emojis],
        "bot": False,
        "group": False,
        "discoverable": a.discoverable,
        "indexable": a.discoverable,
        "hide_collections": hidden,
        "noindex": not a.discoverable,
        "suspended": a.suspended_at is not None or None,
        "limited": a.silenced_at is not None or None,
        "created_at": iso(a.created_at.replace(hour=0, minute=0, second=0, microsecond=0)),
        "roles": [],
    }


def credential_account(
    settings: Settings,
    a: Account,
    counts: Any,
    *,
    privacy: str = "public",
    follow_requests: int = 0,
    emojis: Sequence[CustomEmoji] = (),
) -> Json:
    """The CredentialAccount entity (verify_credentials): Account + `source` + `role`."""
    data = account(settings, a, counts, emojis)
    data["source"] = {
        "privacy": privacy,
        "sensitive": False,
        "language": None,
        "note": a.bio_source,
        "fields": [
            {"name": f.get("name", ""), "value": f.get("value", ""), "verified_at": None}
            for f in (a.fields or [])
        ],
        "follow_requests_count": follow_requests,
        "hide_collections": a.hide_network,
        "discoverable": a.discoverable,
        "indexable": a.discoverable,
    }
    data["role"] = None
    return data


def relationship(
    account_id: int, r: Relationship, *, show_reblogs: bool = True, notify: bool = False
) -> Json:
    """The Relationship entity."""
    return {
        "id": str(account_id),
        "following": r.following,
        "showing_reblogs": r.following and show_reblogs,
        "notifying": r.following and notify,
        "languages": None,
        "followed_by": r.followed_by,
        "blocking": r.blocking,
        "blocked_by": r.blocked_by,
        "muting": r.muting,
        "muting_notifications": r.muting_notifications,
        "requested": r.requested,
        "requested_by": r.requested_by,
        "domain_blocking": False,
        "endorsed": False,
        "note": "",
    }


def _dimensions(width: int | None, height: int | None) -> Json | None:
    if not width or not height:
        return None
    return {
        "width": width,
        "height": height,
        "size": f"{width}x{height}",
        "aspect": round(width / height, 6),
    }


def media_attachment(settings: Settings, m: MediaAttachment) -> Json:
    """The MediaAttachment entity (`url` is null while a file is still processing)."""
    base = f"{settings.base_url}/media/"
    meta: Json = {"focus": {"x": m.focus_x, "y": m.focus_y}}
    original = _dimensions(m.width, m.height)
    small = _dimensions(m.preview_width, m.preview_height)
    if original:
        meta["original"] = original
    if small:
        meta["small"] = small
    if m.remote_url is not None and m.file_path is None:
        # A remote file not cached here (yet): a placeholder of ours and the file's address on
        # its server as `remote_url` (clients offer it as a link), never an image from there.
        placeholder = f"{settings.base_url}/static/{MEDIA_PLACEHOLDER}"
        return {
            "id": str(m.id),
            "type": "unknown",
            "url": placeholder,
            "preview_url": placeholder,
            "remote_url": m.remote_url,
            "preview_remote_url": None,
            "text_url": None,
            "meta": meta,
            "description": m.description or None,
            "blurhash": m.blurhash,
        }
    return {
        "id": str(m.id),
        "type": m.type,
        "url": base + m.file_path if m.file_path else None,
        "preview_url": base + m.preview_path if m.preview_path else None,
        "remote_url": m.remote_url,
        "preview_remote_url": None,
        "text_url": None,
        "meta": meta,
        "description": m.description or None,
        "blurhash": m.blurhash,
    }


def poll(v: PostView) -> Json | None:
    """The Poll entity of a post view (counts null while hidden from the viewer)."""
    return poll_of(v.post.id, v.poll, is_own=v.is_own)


def poll_of(post_id: int, p: PollView | None, *, is_own: bool) -> Json | None:
    """The Poll entity of post `post_id` as its viewer sees it (`p`), None without a poll."""
    if p is None:
        return None
    return {
        "id": str(post_id),
        "expires_at": iso(p.expires_at),
        "expired": p.expired,
        "multiple": p.multiple,
        "votes_count": p.votes_count,
        "voters_count": p.voters_count,
        "options": [
            {"title": title, "votes_count": p.counts[i] if p.counts is not None else None}
            for i, title in enumerate(p.options)
        ],
        "emojis": [],
        "voted": p.voted if is_own is False else True,
        "own_votes": p.own_votes,
    }


def status(settings: Settings, v: PostView, counts: dict[int, Any]) -> Json:
    """The Status entity of a post view (a boost carries its original in `reblog`)."""
    p = v.post
    data = status_static(settings, v)
    data["account"] = account(settings, v.author, counts.get(v.author.id))
    data["reblog"] = status(settings, v.reblog, counts) if v.reblog else None
    data.update(status_counts_fields(p.replies_count, p.reblogs_count, p.likes_count))
    data.update(
        status_viewer_fields(
            liked=v.liked,
            boosted=v.boosted,
            bookmarked=v.bookmarked,
            pinned=v.pinned if v.is_own else None,
            hits=v.filter_hits,
        )
    )
    data["poll"] = poll(v)
    return data


def status_counts_fields(replies: int, reblogs: int, likes: int) -> Json:
    return {"reblogs_count": reblogs, "favourites_count": likes, "replies_count": replies}


def status_viewer_fields(
    *, liked: bool, boosted: bool, bookmarked: bool, pinned: bool | None, hits: list[Any]
) -> Json:
    """What differs per viewer in a Status entity (besides its poll)."""
    return {
        "favourited": liked,
        "reblogged": boosted,
        "bookmarked": bookmarked,
        "pinned": pinned,
        "filtered": [
            {
                "filter": {
                    "id": str(h.filter.id),
                    "title": h.filter.title,
                    "context": list(h.filter.contexts),
                    "expires_at": iso(h.filter.expires_at),
                    "filter_action": h.filter.action,
                },
                "keyword_matches": h.keyword_matches or None,
                "status_matches": [str(i) for i in h.status_matches] or None,
            }
            for h in hits
        ],
    }


def status_static(settings: Settings, v: PostView) -> Json:
    """The Status entity of `v.post` without its author, its boosted original, its counters,
    its poll and what differs per viewer: what changes only with the post's `render_rev`."""
    p = v.post
    author_url = (
        f"{settings.base_url}/@{v.author.username}" if v.author.is_local else (v.author.uri or "")
    )
    url = f"{author_url}/{p.id}" if v.author.is_local else (p.uri or "")
    return {
        "id": str(p.id),
        "uri": p.uri or url,
        "url": url if p.reblog_of_id is None else None,
        "created_at": iso(p.created_at),
        "content": p.content_html,
        "visibility": p.visibility,
        "sensitive": p.sensitive,
        "spoiler_text": p.spoiler_text,
        "media_attachments": [media_attachment(settings, m) for m in v.media],
        "application": None,
        "mentions": [
            {
                "id": str(m.id),
                "username": m.username,
                "acct": m.acct,
                "url": f"{settings.base_url}/@{m.username}" if m.is_local else (m.uri or ""),
            }
            for m in v.mentions
        ],
        "tags": [{"name": t, "url": f"{settings.base_url}/tags/{t}"} for t in v.tags],
        "emojis": [emoji_service.entity(settings, e) for e in v.emojis],
        "quotes_count": 0,
        "in_reply_to_id": str(p.in_reply_to_id) if p.in_reply_to_id else None,
        "in_reply_to_account_id": str(p.in_reply_to_account_id)
        if p.in_reply_to_account_id
        else None,
        "card": None,
        "language": p.language,
        "text": None,
        "edited_at": iso(p.edited_at),
        "muted": False,
    }


def all_accounts(views: list[PostView]) -> list[int]:
    """Ids of every author in these views (for one batch of counts)."""
    ids: set[int] = set()
    for v in views:
        ids.add(v.author.id)
        if v.reblog:
            ids.add(v.reblog.author.id)
    return list(ids)
