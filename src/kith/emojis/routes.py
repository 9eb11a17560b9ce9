"""The emoji URLs: `/emojis/ID.png` (the picture, for pages, apps and other servers) and
`/emojis/ID` (a local emoji as an ActivityPub `Emoji`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kith.emojis import activitypub as emoji_ap
from kith.emojis import remote
from kith.emojis.models import CustomEmoji
from kith.errors import NotFound
from kith.federation.activitypub import AS_CONTEXT
from kith.federation.negotiation import FederationRoute, activity_json
from kith.media import storage
from kith.runtime import runtime_of
from kith.web.deps import get_db

router = APIRouter(route_class=FederationRoute)

# A remote emoji's picture may be replaced under the same URL when its server changes it:
# cached for a day, not forever as media files are.
CACHE_A_DAY = "public, max-age=86400"


async def _emoji(db: AsyncSession, emoji_id: int) -> CustomEmoji:
    emoji = await db.get(CustomEmoji, emoji_id)
    if emoji is None:
        raise NotFound("No such emoji.")
    return emoji


@router.get("/emojis/{emoji_id:int}.png")
async def emoji_image(emoji_id: int, db: AsyncSession = Depends(get_db)) -> Response:
    """The emoji's cleaned PNG. A remote one not cached yet (or any more) is 404 and its
    fetch is queued; one whose image was refused stays 404."""
    emoji = await _emoji(db, emoji_id)
    media_dir = runtime_of(db).settings.effective_media_dir
    found = storage.resolve(media_dir, emoji.image_path) if emoji.image_path else None
    if found is None:
        remote.fetch_soon(db, emoji)
        raise NotFound("This emoji's picture is not here (yet).")
    return FileResponse(
        found,
        media_type="image/png",
        headers={
            "Cache-Control": CACHE_A_DAY,
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )


@router.get("/emojis/{emoji_id:int}")
async def emoji_object(
    request: Request, emoji_id: int, db: AsyncSession = Depends(get_db)
) -> Response:
    """A local emoji as the `Emoji` its tags carry (remote emoji are their servers' to serve)."""
    emoji = await _emoji(db, emoji_id)
    if not emoji.is_local or not emoji.image_path:
        raise NotFound("No such emoji.")
    return activity_json(
        {"@context": [AS_CONTEXT, {"toot": "http://joinmastodon.org/ns#", "Emoji": "toot:Emoji"}]}
        | emoji_ap.emoji_tag(runtime_of(db).settings, emoji)
    )
