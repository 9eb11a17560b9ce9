"""Instance information: /api/v1/instance, /api/v2/instance, peers, rules, custom emojis."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import __version__
from kith.accounts import service as accounts
from kith.accounts.models import Account, User
from kith.emojis import service as emoji_service
from kith.federation import domain_blocks
from kith.mastodon_api.render import one_account
from kith.posts.models import Post
from kith.posts.service import MAX_PINS, POLL_MAX_SECONDS, POLL_MIN_SECONDS, POLL_OPTION_MAX
from kith.runtime import runtime_of
from kith.web.deps import get_db

router = APIRouter()
VERSION = f"4.3.0 (compatible; Kith {__version__})"


async def _common(db: AsyncSession) -> dict[str, Any]:
    settings = runtime_of(db).settings
    inst = await accounts.get_instance_settings(db)
    admin = await db.scalar(
        select(Account)
        .join(User, User.account_id == Account.id)
        .where(User.is_admin.is_(True))
        .order_by(User.id)
        .limit(1)
    )
    return {"settings": settings, "inst": inst, "admin": admin}


STATS_SECONDS = 60.0  # how long this process reuses its counts of people and posts
_clock = time.monotonic


async def _counts(db: AsyncSession) -> tuple[int, int]:
    """(people, posts) known here, counted at most once a minute per process: every client
    asks for the instance at launch, and counting a million posts cost ~15 ms of CPU per
    request on SQLite (Mastodon caches these figures too)."""
    caches = runtime_of(db).caches
    held = caches.get("instance_counts")
    now = _clock()
    if held is not None and now < held[0]:
        return held[1], held[2]
    users = int(await db.scalar(select(func.count()).select_from(User)) or 0)
    posts = int(await db.scalar(select(func.count()).select_from(Post)) or 0)
    caches["instance_counts"] = (now + STATS_SECONDS, users, posts)
    return users, posts


def _rules(rules: list[str]) -> list[dict[str, str]]:
    return [{"id": str(i + 1), "text": r, "hint": ""} for i, r in enumerate(rules)]


def _configuration(max_chars: int, max_options: int, max_image: int) -> dict[str, Any]:
    return {
        "urls": {"streaming": None, "status": None},
        "accounts": {"max_featured_tags": 0, "max_pinned_statuses": MAX_PINS},
        "statuses": {
            "max_characters": max_chars,
            "max_media_attachments": 4,
            "characters_reserved_per_url": 23,
        },
        "media_attachments": {
            "supported_mime_types": ["image/jpeg", "image/png", "image/gif", "image/webp"],
            "image_size_limit": max_image,
            "image_matrix_limit": 33_177_600,
            "video_size_limit": 0,
            "video_frame_rate_limit": 0,
            "video_matrix_limit": 0,
        },
        "polls": {
            "max_options": max_options,
            "max_characters_per_option": POLL_OPTION_MAX,
            "min_expiration": POLL_MIN_SECONDS,
            "max_expiration": POLL_MAX_SECONDS,
        },
        "translation": {"enabled": False},
    }


@router.get("/api/v2/instance")
async def instance_v2(db: AsyncSession = Depends(get_db)) -> dict[str, Any]:
    c = await _common(db)
    s, inst = c["settings"], c["inst"]
    users, _posts = await _counts(db)
    config = _configuration(s.max_post_chars, s.max_poll_options, s.max_image_bytes)
    config["urls"] = {"streaming": f"{'wss' if s.https else 'ws'}://{s.domain}"}
    return {
        "domain": s.domain,
        "title": inst.name,
        "version": VERSION,
        "source_url": "https://kith.invalid/source",
        "description": inst.description,
        "usage": {"users": {"active_month": users}},
        "thumbnail": {"url": f"{s.base_url}/static/header.png"},
        "languages": ["en"],
        "configuration": config,
        "registrations": {
            "enabled": inst.registration_mode != "closed",
            "approval_required": inst.registration_mode in ("approval", "invite"),
            "message": None,
            "url": None,
        },
        "api_versions": {"mastodon": 2},
        "contact": {
            "email": "",
            "account": await one_account(db, c["admin"]) if c["admin"] else None,
        },
        "rules": _rules(inst.rules or []),
    }


@router.get("/api/v1/instance")
async def instance_v1(db: AsyncSession = Depends(get_db)) -> dict[str, Any]:
    c = await _common(db)
    s, inst = c["settings"], c["inst"]
    users, posts = await _counts(db)
    stats = {"user_count": users, "status_count": posts, "domain_count": 0}
    return {
        "uri": s.domain,
        "title": inst.name,
        "short_description": inst.description[:200],
        "description": inst.description,
        "email": "",
        "version": VERSION,
        "urls": {"streaming_api": f"{'wss' if s.https else 'ws'}://{s.domain}"},
        "stats": stats,
        "thumbnail": f"{s.base_url}/static/header.png",
        "languages": ["en"],
        "registrations": inst.registration_mode != "closed",
        "approval_required": inst.registration_mode in ("approval", "invite"),
        "invites_enabled": True,
        "configuration": _configuration(s.max_post_chars, s.max_poll_options, s.max_image_bytes),
        "contact_account": await one_account(db, c["admin"]) if c["admin"] else None,
        "rules": _rules(inst.rules or []),
    }


@router.get("/api/v1/instance/peers")
async def peers() -> list[str]:
    return []


@router.get("/api/v1/instance/domain_blocks")
async def domain_blocks_list(db: AsyncSession = Depends(get_db)) -> list[dict[str, str]]:
    """The moderated servers with their public reason (Mastodon's DomainBlock entity)."""
    return [
        {"domain": b.domain, "digest": b.digest, "severity": b.severity, "comment": b.comment}
        for b in await domain_blocks.public_blocks(db)
    ]


@router.get("/api/v1/instance/rules")
async def rules(db: AsyncSession = Depends(get_db)) -> list[dict[str, str]]:
    return _rules((await accounts.get_instance_settings(db)).rules or [])


@router.get("/api/v1/custom_emojis")
async def custom_emojis(db: AsyncSession = Depends(get_db)) -> list[Any]:
    """This instance's custom emoji (CustomEmoji entities, with `category`: Kith has none)."""
    settings = runtime_of(db).settings
    return [
        emoji_service.entity(settings, e) | {"category": None}
        for e in await emoji_service.list_local(db)
    ]
