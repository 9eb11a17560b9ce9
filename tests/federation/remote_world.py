"""Remote people and posts for the media, retention, move and poll tests, written the way the
inbox job would have stored them (no delivery needed), plus images to serve from a peer."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.db import new_id
from kith.federation.models import RemoteActor
from kith.media.models import MediaAttachment, MediaState
from kith.posts.models import Post, Visibility
from tests.federation.local_http import LocalServer, respond


async def remote_account(db: AsyncSession, server: LocalServer, name: str) -> Account:
    """A remote account on `server` (its actor is not served: add_actor does that)."""
    uri = f"{server.base}/users/{name}"
    account = Account(username=name, username_key=name.casefold(), domain=server.authority, uri=uri)
    db.add(account)
    await db.flush()
    db.add(
        RemoteActor(
            account_id=account.id,
            inbox_url=f"{uri}/inbox",
            shared_inbox_url=f"{server.base}/inbox",
            followers_url=f"{uri}/followers",
        )
    )
    await db.commit()
    return account


async def remote_post(
    db: AsyncSession,
    author: Account,
    *,
    text: str = "<p>from afar</p>",
    images: list[str] | None = None,
    post_id: int | None = None,
    visibility: Visibility = Visibility.PUBLIC,
    **extra: Any,
) -> Post:
    """A stored remote post by `author`, with not-yet-cached attachments at `images` URLs."""
    pid = post_id or new_id()
    post = Post(
        id=pid,
        account_id=author.id,
        visibility=visibility,
        content_html=text,
        uri=f"{author.uri}/statuses/{pid}",
        **extra,
    )
    db.add(post)
    await db.flush()
    for i, url in enumerate(images or []):
        db.add(
            MediaAttachment(
                account_id=author.id,
                post_id=post.id,
                state=MediaState.PROCESSING,
                remote_url=url,
                position=i,
            )
        )
    await db.commit()
    return post


def jpeg_with_gps(size: tuple[int, int] = (640, 480)) -> bytes:
    """A JPEG carrying EXIF with a GPS position and a camera serial number."""
    img = Image.new("RGB", size, (200, 40, 40))
    exif = Image.Exif()
    exif[0xA431] = "SERIAL-1234"  # BodySerialNumber
    exif.get_ifd(0x8825)[2] = (48.0, 51.0, 24.0)  # GPSLatitude
    out = io.BytesIO()
    img.save(out, format="JPEG", exif=exif.tobytes())
    return out.getvalue()


def serve_image(server: LocalServer, path: str, data: bytes, content_type: str) -> str:
    server.routes[path] = respond(200, data, {"Content-Type": content_type})
    return f"{server.base}{path}"
