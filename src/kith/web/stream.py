"""Server-Sent Events for live pages: "new posts" on Home and Local, new notifications.

Each event on the bus is checked against kith.policy for this viewer before it is sent, so a
stream never reveals a post the viewer could not open.

Events: `ready` (the stream listens; sent once per connection), `update` ({"id": post id}: a
new post for this feed) and `notification` ({"id": ...}: the viewer has a new notification).

A signed-in stream ends when its session does (sign-out, a password change that signs out
other browsers, suspension, deletion): `kith.accounts.access` announces the change and the
stream asks again whether its session still signs its viewer in."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts import access
from kith.bus import Event
from kith.posts.models import Post
from kith.runtime import Runtime
from kith.timelines import service as timelines
from kith.web.deps import Current, current, current_for_token, runtime, signed_in

log = logging.getLogger(__name__)
router = APIRouter()
HEARTBEAT_SECONDS = 15.0


async def _wants(db: AsyncSession, viewer: policy.Viewer, feed: str, event: Event) -> bool:
    if event.get("type") != "post.created":
        return False
    post_id = event.get("post_id")
    if not isinstance(post_id, int):
        return False
    if feed == "home":
        return await timelines.appears_in_home(db, viewer, post_id)
    stmt = select(Post.id).where(
        Post.id == post_id,
        policy.publicly_listed_clause(viewer),
        policy.post_visible_clause(viewer),
        policy.not_muted_clause(viewer),
    )
    return (await db.scalar(stmt)) is not None


async def _still_signed_in(rt: Runtime, viewer: policy.Viewer, token: str | None) -> bool:
    """Whether the session this stream was opened with still signs its viewer in (always,
    for a stream opened by nobody in particular)."""
    if viewer.account_id is None:
        return True
    async with rt.sessions() as db:
        now = await current_for_token(db, token or "")
    return now.user is not None and now.user.account_id == viewer.account_id


async def _events(
    rt: Runtime, viewer: policy.Viewer, feed: str, session_token: str | None
) -> AsyncIterator[str]:
    """The frames of one connection: `ready`, then the updates and notifications this viewer
    may see, with a comment every HEARTBEAT_SECONDS so proxies keep the connection open;
    the response ends when the viewer's session does."""
    channels = ["posts"] + ([access.user_channel(viewer.account_id)] if viewer.account_id else [])
    # None in the inbox means the subscription ended: the stream closes and the browser's
    # EventSource connects again after `retry`.
    inbox: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=1000)
    subscribed = asyncio.Event()

    async def pump() -> None:
        try:
            async for ev in rt.bus.subscribe(*channels, ready=subscribed):
                with contextlib.suppress(asyncio.QueueFull):
                    inbox.put_nowait(ev)
        except Exception:
            log.exception("stream: bus subscription failed")
        finally:
            with contextlib.suppress(asyncio.QueueFull):
                inbox.put_nowait(None)

    task = asyncio.create_task(pump())
    try:
        yield "retry: 3000\n\n"
        # `ready` only once the bus listens: a client that acts on it (a page, a test) must
        # not miss what happens right after.
        while not subscribed.is_set() and not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(subscribed.wait(), HEARTBEAT_SECONDS)
            if not subscribed.is_set():
                yield ": waiting for the bus\n\n"
        # Asked once the bus listens, so a sign-out between the page's request and now is
        # not missed.
        if not await _still_signed_in(rt, viewer, session_token):
            return
        yield "event: ready\ndata: {}\n\n"
        while True:
            try:
                ev = await asyncio.wait_for(inbox.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if ev is None:
                return
            if ev.get("type") == access.ACCESS_CHANGED:
                if not await _still_signed_in(rt, viewer, session_token):
                    return
                continue
            if ev.get("type") == "notification":
                yield f"event: notification\ndata: {json.dumps({'id': str(ev.get('id'))})}\n\n"
                continue
            async with rt.sessions() as db:
                if await _wants(db, viewer, feed, ev):
                    yield f"event: update\ndata: {json.dumps({'id': str(ev['post_id'])})}\n\n"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def _sse(rt: Runtime, me: Current, feed: str) -> StreamingResponse:
    return StreamingResponse(
        _events(rt, me.viewer, feed, me.session_token),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/stream/home")
async def stream_home(request: Request, me: Current = Depends(signed_in)) -> StreamingResponse:
    return _sse(runtime(request), me, "home")


@router.get("/stream/local")
async def stream_local(request: Request, me: Current = Depends(current)) -> StreamingResponse:
    return _sse(runtime(request), me, "local")
