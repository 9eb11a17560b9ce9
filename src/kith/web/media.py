"""Serving stored media files (avatars and headers today) from the media directory."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from kith.errors import NotFound
from kith.media import storage
from kith.web.deps import runtime

router = APIRouter()

# Stored names are random and never reused, so a file never changes under its URL.
CACHE_FOREVER = "public, max-age=31536000, immutable"


@router.get("/media/{path:path}")
async def media_file(request: Request, path: str) -> Response:
    """A stored file, with its type and a long cache; anything outside the media directory,
    or of a type we do not serve, is simply not found."""
    found = storage.resolve(runtime(request).settings.effective_media_dir, path)
    if found is None:
        raise NotFound()
    return FileResponse(
        found,
        media_type=storage.content_type(found),
        headers={
            "Cache-Control": CACHE_FOREVER,
            # Even if a file were ever mis-typed, it cannot run script in our origin.
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )
