"""Mastodon's streaming API: WebSocket (/api/v1/streaming, multiplexed) and Server-Sent
Events (/api/v1/streaming/<stream>). Every event is rendered for its viewer and asked of
kith.policy first, so a stream never carries what the viewer could not open.

A stream opened with a token ends when the token stops being live (revoked, its app signed
out, its pair refreshed, its account suspended or deleted): `kith.accounts.access` announces
such changes on the viewer's channel and the stream asks the database again — when told,
once it listens, and on every `subscribe` message. A WebSocket is then closed with code
ACCESS_ENDED, an SSE response simply ends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse, StreamingResponse
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy, text
from kith.accounts import access
from kith.accounts.models import Account
from kith.bus import Event
from kith.errors import NotFound
from kith.lists.models import List, ListMember
from kith.mastodon_api import render
from kith.mastodon_api.deps import ApiUnauthorized, Auth, optional_auth, parse_id
from kith.mastodon_api.stream_hub import SEND, Listener, hub_for
from kith.notifications import service as notifications
from kith.notifications.models import COMMUNITY_TYPES
from kith.oauth import service as oauth
from kith.oauth.scopes import satisfies
from kith.posts.models import Post, PostTag, Tag, Visibility
from kith.runtime import Runtime
from kith.timelines import service as timelines
from kith.web.deps import runtime

_BY_AUTHOR = Account.id == Post.account_id  # in an EXISTS over accounts: the post's author
router = APIRouter()
# The WebSocket close code when the stream's access ends (4000 + HTTP 401, a common
# convention for "unauthorized"; the reason says "access ended"). A client that reconnects
# with the same token is refused at the handshake.
ACCESS_ENDED = 4001
# A `subscribe` message asks the database about the stream's token at most this often (a
# client sending a flood of them must not cost a query each).
SUBSCRIBE_RECHECK_SECONDS = 1.0
USER_STREAMS = {"user", "user:notification", "list", "direct"}
ALL_STREAMS = USER_STREAMS | {
    "public",
    "public:local",
    "public:remote",
    "hashtag",
    "hashtag:local",
    "public:media",
    "public:local:media",
    "public:remote:media",
}


@dataclass(frozen=True)
class Subscription:
    stream: str
    param: str | None = None  # hashtag name or list id

    def names(self) -> list[str]:
        return [self.stream] + ([self.param] if self.param else [])


@dataclass
class StreamSession:
    """One client's subscriptions and viewer; turns bus events into outgoing events."""

    rt: Runtime
    viewer: policy.Viewer
    subscriptions: set[Subscription] = field(default_factory=set)
    token_id: int | None = None  # the token it was opened with (None: anonymous)
    checked_at: float = 0.0  # when `still_allowed` last asked the database (monotonic)

    async def still_allowed(self, *, unless_within: float = 0.0) -> bool:
        """Whether the token this stream was opened with is still live (as every API request
        decides: `oauth.token_info`); always, for a stream opened without one. Asked less than
        `unless_within` seconds after the last time, the answer is that one's (True: the
        stream would have closed otherwise)."""
        if self.token_id is None:
            return True
        now = time.monotonic()
        if unless_within and now - self.checked_at < unless_within:
            return True
        self.checked_at = now
        async with self.rt.sessions() as db:
            return await oauth.token_info_by_id(db, self.token_id) is not None

    def subscribe(self, stream: str, param: str | None) -> Subscription:
        if stream not in ALL_STREAMS:
            raise NotFound("Unknown stream type")
        if stream in USER_STREAMS and self.viewer.account_id is None:
            raise ApiUnauthorized("This stream requires an authenticated user")
        if stream.startswith("hashtag"):
            norm = text.normalize_hashtag((param or "").lstrip("#"))
            if not norm:
                raise NotFound("No such hashtag")
            param = norm
        if stream == "list":
            if parse_id(param) is None:  # not an id (or too large to be one): no such list
                raise NotFound("No such list")
        sub = Subscription(stream, param)
        self.subscriptions.add(sub)
        return sub

    def unsubscribe(self, stream: str, param: str | None) -> None:
        if stream.startswith("hashtag"):
            param = text.normalize_hashtag((param or "").lstrip("#")) or param
        self.subscriptions.discard(Subscription(stream, param))

    async def outgoing(
        self, event: Event, *, skip_user: bool = False
    ) -> list[tuple[list[str], str, str]]:
        """(stream names, event name, payload JSON) for each subscription this event concerns
        (`skip_user`: the hub already sent this post to the `user` stream)."""
        kind = event.get("type")
        if kind == SEND:  # made by the hub for this connection
            return [(list(names), name, payload) for names, name, payload in event["items"]]
        out: list[tuple[list[str], str, str]] = []
        async with self.rt.sessions() as db:
            if kind == "notification":
                nid = event.get("id")
                for sub in self.subscriptions:
                    if sub.stream in ("user", "user:notification"):
                        note = await self._notification(db, nid)
                        if note:
                            out.append((sub.names(), "notification", note))
                return out
            if kind == "filters_changed":
                return [
                    (s.names(), "filters_changed", "")
                    for s in self.subscriptions
                    if s.stream == "user"
                ]
            post_id = event.get("post_id")
            if not isinstance(post_id, int):
                return out
            if kind == "post.deleted":
                return [
                    (s.names(), "delete", str(post_id))
                    for s in self.subscriptions
                    if s.stream != "user:notification"
                ]
            name = "update" if kind == "post.created" else "status.update"
            post = await db.get(Post, post_id)
            if post is None or not await policy.can_see_post(db, self.viewer, post):
                return out
            payload: str | None = None
            for sub in self.subscriptions:
                if skip_user and sub.stream == "user":
                    continue
                if await self._wants(db, sub, post):
                    if payload is None:
                        items = await render.statuses(
                            db, self.viewer, [post], context=_context(sub)
                        )
                        if not items:
                            return out  # a "hide" filter matched
                        payload = json.dumps(items[0])
                    if sub.stream == "direct":
                        from kith.mastodon_api.discovery import conversation_entity

                        root = post.thread_root_id or post.id
                        conversation = await conversation_entity(db, self.viewer, root)
                        if conversation is not None:
                            out.append((sub.names(), "conversation", json.dumps(conversation)))
                        continue
                    out.append((sub.names(), name, payload))
        return out

    async def _notification(self, db: AsyncSession, nid: Any) -> str | None:
        # Asked like the list: a stored notification about a post the viewer can no longer
        # see (or from someone blocked since) is never sent.
        n = (
            await notifications.get_notification(db, self.viewer, int(nid))
            if isinstance(nid, int)
            else None
        )
        # A client cannot ask a stream for Kith's community types (the list returns them
        # only when named in `types[]`), so the stream never sends them.
        if n is None or n.type in COMMUNITY_TYPES:
            return None
        from kith.mastodon_api.notifications import entities_for

        items = await entities_for(db, self.viewer, [n])
        return json.dumps(items[0]) if items else None

    async def _wants(self, db: AsyncSession, sub: Subscription, post: Post) -> bool:
        v = self.viewer
        if sub.stream == "user":
            return await timelines.appears_in_home(db, v, post.id)
        if sub.stream == "direct":
            # Conversations are a list: muting the author keeps their direct posts out of it.
            unmuted = select(Post.id).where(Post.id == post.id, policy.not_muted_clause(v))
            return post.visibility == Visibility.DIRECT and (await db.scalar(unmuted)) is not None
        if sub.stream in ("user:notification",) or sub.stream.endswith("media"):
            return False  # no media before the media pipeline
        listed = select(Post.id).where(
            Post.id == post.id, policy.publicly_listed_clause(v), policy.not_muted_clause(v)
        )
        # Posts from other servers arrive through the inbox: the local streams leave them out,
        # public:remote is only them (as timelines.public's `origin`).
        if sub.stream in ("public:local", "hashtag:local"):
            listed = listed.where(exists().where(_BY_AUTHOR, Account.domain == ""))
        elif sub.stream == "public:remote":
            listed = listed.where(exists().where(_BY_AUTHOR, Account.domain != ""))
        if sub.stream in ("public", "public:local", "public:remote"):
            return (await db.scalar(listed)) is not None
        if sub.stream.startswith("hashtag"):
            tagged = (
                listed.join(PostTag, PostTag.post_id == Post.id)
                .join(Tag, Tag.id == PostTag.tag_id)
                .where(Tag.name == sub.param)
            )
            return (await db.scalar(tagged)) is not None
        if sub.stream == "list" and sub.param:
            owner = await db.scalar(select(List.account_id).where(List.id == int(sub.param)))
            if owner != v.account_id:
                return False
            member = await db.get(ListMember, (int(sub.param), post.account_id))
            return (
                member is not None
                and (
                    await db.scalar(
                        select(Post.id).where(Post.id == post.id, policy.not_muted_clause(v))
                    )
                )
                is not None
            )
        return False


def _context(sub: Subscription) -> str:
    return {"user": "home", "list": "home", "direct": "thread"}.get(sub.stream, "public")


async def _pump(
    rt: Runtime, session: StreamSession, inbox: asyncio.Queue[Event], ready: asyncio.Event
) -> None:
    """The viewer's own channel (notifications, filter changes, access changes) — or, for a
    token with no user, the token's (access changes); posts come through the hub."""
    if session.viewer.account_id is not None:
        channel = access.user_channel(session.viewer.account_id)
    elif session.token_id is not None:
        channel = access.token_channel(session.token_id)
    else:
        ready.set()
        return
    async for ev in rt.bus.subscribe(channel, ready=ready):
        with contextlib.suppress(asyncio.QueueFull):
            inbox.put_nowait(ev)


# --- WebSocket ----------------------------------------------------------------------------


async def _ws_auth(ws: WebSocket, rt: Runtime) -> tuple[policy.Viewer, str | None, int | None]:
    """(viewer, the subprotocol to answer, the token's id) of a WebSocket's handshake."""
    token = ws.query_params.get("access_token", "")
    header = ws.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        token = header[7:].strip()
    protocol = ws.headers.get("sec-websocket-protocol")
    if not token and protocol:
        token = protocol.split(",")[0].strip()
    if not token:
        return policy.ANONYMOUS, None, None
    async with rt.sessions() as db:
        info = await oauth.token_info(db, token)
    if info is None or not satisfies(info.scopes, "read:statuses"):
        raise ApiUnauthorized()
    viewer = (
        policy.Viewer(info.account_id, info.is_admin)
        if info.account_id is not None
        else policy.ANONYMOUS
    )
    return viewer, protocol.split(",")[0].strip() if protocol else None, info.token_id


@router.websocket("/api/v1/streaming")
async def websocket_stream(ws: WebSocket) -> None:
    rt: Runtime = ws.app.state.runtime
    try:
        viewer, protocol, token_id = await _ws_auth(ws, rt)
    except ApiUnauthorized:
        await ws.close(code=4001)
        return
    await ws.accept(subprotocol=protocol)
    session = StreamSession(rt, viewer, token_id=token_id)
    first = ws.query_params.get("stream")
    if first:
        try:
            session.subscribe(first, ws.query_params.get("tag") or ws.query_params.get("list"))
        except (NotFound, ApiUnauthorized) as err:
            await ws.send_json({"error": err.message})
    inbox: asyncio.Queue[Event] = asyncio.Queue(maxsize=1000)
    listening = asyncio.Event()
    pump = asyncio.create_task(_pump(rt, session, inbox, listening))
    listener = Listener(session, inbox)
    hub = hub_for(rt)
    # Events published before the bus listens would be lost: wait for it (bounded).
    await hub.join(listener)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(listening.wait(), 5)
    # Asked again now that the bus listens: access that ended since the handshake was
    # announced before this stream could hear it.
    ended = not await session.still_allowed()

    async def reader() -> bool:
        """Applies the client's messages; True when its access ended (asked at each
        `subscribe`), False never (a gone client ends it with WebSocketDisconnect)."""
        while True:
            try:
                msg = json.loads(await ws.receive_text())
            except ValueError:
                await ws.send_json({"error": "Malformed message"})
                continue
            if not isinstance(msg, dict) or msg.get("type") not in ("subscribe", "unsubscribe"):
                await ws.send_json({"error": "Unknown message type"})
                continue
            stream, param = str(msg.get("stream", "")), msg.get("tag") or msg.get("list")
            if msg["type"] == "subscribe" and not await session.still_allowed(
                unless_within=SUBSCRIBE_RECHECK_SECONDS
            ):
                return True
            try:
                if msg["type"] == "subscribe":
                    session.subscribe(stream, str(param) if param else None)
                else:
                    session.unsubscribe(stream, str(param) if param else None)
            except (NotFound, ApiUnauthorized) as err:
                await ws.send_json({"error": err.message})

    read_task = asyncio.create_task(reader())
    try:
        while not ended and not read_task.done():
            # Wait for an event or for the client to go away, whichever comes first.
            getter = asyncio.create_task(inbox.get())
            await asyncio.wait({getter, read_task}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                break
            ev = getter.result()
            if ev.get("type") == SEND and "frame" in ev:
                await ws.send_text(ev["frame"])
                continue
            if ev.get("type") == access.ACCESS_CHANGED:
                ended = not await session.still_allowed()
                continue
            for names, name, payload in await session.outgoing(
                ev, skip_user=bool(ev.get("_hub_user"))
            ):
                await ws.send_text(json.dumps({"stream": names, "event": name, "payload": payload}))
        if ended or (read_task.done() and _reader_ended(read_task)):
            # A client that went away meanwhile makes `close` raise: nothing left to do.
            with contextlib.suppress(RuntimeError, OSError):
                await ws.close(code=ACCESS_ENDED, reason="access ended")
    except WebSocketDisconnect:
        pass
    finally:
        await hub.leave(listener)
        for task in (pump, read_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _reader_ended(read_task: asyncio.Task[bool]) -> bool:
    """Whether the finished reader stopped because the stream's access ended."""
    return not read_task.cancelled() and read_task.exception() is None and read_task.result()


# --- Server-Sent Events -------------------------------------------------------------------


async def _sse(rt: Runtime, session: StreamSession) -> AsyncIterator[str]:
    inbox: asyncio.Queue[Event] = asyncio.Queue(maxsize=1000)
    listening = asyncio.Event()
    pump = asyncio.create_task(_pump(rt, session, inbox, listening))
    listener = Listener(session, inbox)
    hub = hub_for(rt)
    try:
        await hub.join(listener)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(listening.wait(), 5)
        if not await session.still_allowed():  # ended before the bus listened
            return
        yield ":)\n\n"
        while True:
            try:
                ev = await asyncio.wait_for(inbox.get(), rt.settings.stream_heartbeat_seconds)
            except TimeoutError:
                yield ":thump\n\n"
                continue
            if ev.get("type") == access.ACCESS_CHANGED:
                if not await session.still_allowed():
                    return  # the response ends; the client's token no longer opens one
                continue
            for _names, name, payload in await session.outgoing(
                ev, skip_user=bool(ev.get("_hub_user"))
            ):
                yield f"event: {name}\ndata: {payload}\n\n"
    finally:
        await hub.leave(listener)
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump


@router.get("/api/v1/streaming/health")
async def health() -> PlainTextResponse:
    return PlainTextResponse("OK")


@router.get("/api/v1/streaming/{stream:path}")
async def sse_stream(
    stream: str, request: Request, auth: Auth = Depends(optional_auth)
) -> StreamingResponse:
    name = stream.strip("/").replace("/", ":")
    if auth.info is not None and not satisfies(auth.info.scopes, "read:statuses"):
        raise ApiUnauthorized()
    rt = runtime(request)
    session = StreamSession(rt, auth.viewer, token_id=auth.info.token_id if auth.info else None)
    session.subscribe(name, request.query_params.get("tag") or request.query_params.get("list"))
    return StreamingResponse(
        _sse(rt, session),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
