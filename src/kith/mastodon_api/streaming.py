"""Mastodon's streaming API: WebSocket (/api/v1/streaming, multiplexed) and Server-Sent
Events (/api/v1/streaming/<stream>). Every event is rendered for its viewer and asked of
kith.policy first, so a stream never carries what the viewer could not open."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse, StreamingResponse
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy, text
from kith.accounts.models import Account
from kith.bus import Event
from kith.errors import NotFound
from kith.lists.models import List, ListMember
from kith.mastodon_api import render
from kith.mastodon_api.deps import ApiUnauthorized, Auth, optional_auth, parse_id
from kith.notifications import service as notifications
from kith.notifications.models import COMMUNITY_TYPES
from kith.oauth import service as oauth
from kith.oauth.scopes import satisfies
from kith.posts.models import Poll, Post, PostTag, Tag, Visibility
from kith.runtime import Runtime
from kith.timelines import service as timelines
from kith.web.deps import runtime

log = logging.getLogger(__name__)
_BY_AUTHOR = Account.id == Post.account_id  # in an EXISTS over accounts: the post's author
router = APIRouter()
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
    rt: Runtime, viewer: policy.Viewer, inbox: asyncio.Queue[Event], ready: asyncio.Event
) -> None:
    """The viewer's own channel (notifications, filter changes); posts come through the hub."""
    if viewer.account_id is None:
        ready.set()
        return
    async for ev in rt.bus.subscribe(f"user:{viewer.account_id}", ready=ready):
        with contextlib.suppress(asyncio.QueueFull):
            inbox.put_nowait(ev)


SEND = "_send"  # an inbox event carrying messages the hub already made for this connection


@dataclass(eq=False)
class Listener:
    """One open stream: its session and the queue of events it still has to handle."""

    session: StreamSession
    inbox: asyncio.Queue[Event]

    def takes_home(self) -> bool:
        return self.session.viewer.account_id is not None and any(
            s.stream == "user" for s in self.session.subscriptions
        )


class StreamHub:
    """One per process: receives the bus's post events once and fans them out to every open
    stream. A new or edited post is decided for all `user` streams at once (one query for
    whose Home it joins, one rendering shared by everyone it looks the same to), instead of
    a dozen queries per open stream per post; other streams are asked one by one."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.listeners: set[Listener] = set()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def join(self, listener: Listener) -> None:
        """Start receiving post events for this stream (waits, bounded, until the hub's
        subscription is in place, so no event published after this returns is lost)."""
        self.listeners.add(listener)
        if self._task is None or self._task.done():
            self._ready = asyncio.Event()
            self._task = asyncio.create_task(self._run(self._ready))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), 5)

    async def leave(self, listener: Listener) -> None:
        self.listeners.discard(listener)
        if not self.listeners and self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _run(self, ready: asyncio.Event) -> None:
        async for ev in self.rt.bus.subscribe("posts", ready=ready):
            try:
                await self._dispatch(ev)
            except Exception:  # one bad event must not end every stream's updates
                log.exception("stream hub: event %r failed", ev)

    async def _dispatch(self, ev: Event) -> None:
        listeners = list(self.listeners)
        post_id = ev.get("post_id")
        home: set[Listener] = set()
        if ev.get("type") in ("post.created", "post.updated") and isinstance(post_id, int):
            home = {x for x in listeners if x.takes_home()}
            if home:
                try:
                    await self._to_home(ev, post_id, home)
                except Exception:  # fall back to asking each stream
                    log.exception("stream hub: batch for post %s failed", post_id)
                    home = set()
        for x in listeners:
            batched = x in home
            if any(
                s.stream != "user:notification" and not (batched and s.stream == "user")
                for s in x.session.subscriptions
            ):
                with contextlib.suppress(asyncio.QueueFull):
                    x.inbox.put_nowait({**ev, "_hub_user": batched} if batched else ev)

    async def _to_home(self, ev: Event, post_id: int, home: set[Listener]) -> None:
        name = "update" if ev.get("type") == "post.created" else "status.update"
        by_viewer: dict[int, list[Listener]] = {}
        for x in home:
            assert x.session.viewer.account_id is not None
            by_viewer.setdefault(x.session.viewer.account_id, []).append(x)
        payloads: dict[int, str] = {}
        async with self.rt.sessions() as db:
            post = await db.get(Post, post_id)
            if post is None:
                return
            audience = await timelines.home_audience(db, post.id, set(by_viewer))
            if not audience:
                return
            shared_ok = post.reblog_of_id is None and await db.get(Poll, post.id) is None
            others = audience - {post.account_id} if shared_ok else set()
            if others:
                texts: dict[int, str] = {}  # one JSON text per shared entity
                for vid, entity in (
                    await render.status_for_many(db, post, others, context="home")
                ).items():
                    payloads[vid] = texts.setdefault(id(entity), json.dumps(entity))
            for vid in audience - others:
                viewer = by_viewer[vid][0].session.viewer
                items = await render.statuses(db, viewer, [post], context="home")
                if items:
                    payloads[vid] = json.dumps(items[0])
        frames: dict[int, str] = {}  # the WebSocket frame, made once per distinct payload
        for vid, payload in payloads.items():
            frame = frames.get(id(payload))
            if frame is None:
                frame = json.dumps({"stream": ["user"], "event": name, "payload": payload})
                frames[id(payload)] = frame
            message = {"type": SEND, "items": [(["user"], name, payload)], "frame": frame}
            for x in by_viewer[vid]:
                with contextlib.suppress(asyncio.QueueFull):
                    x.inbox.put_nowait(message)


def hub_for(rt: Runtime) -> StreamHub:
    """The process's stream hub for this runtime."""
    hub: StreamHub | None = getattr(rt, "_stream_hub", None)
    if hub is None:
        hub = StreamHub(rt)
        setattr(rt, "_stream_hub", hub)  # noqa: B010 (Runtime has no field for it)
    return hub


# --- WebSocket ----------------------------------------------------------------------------


async def _ws_auth(ws: WebSocket, rt: Runtime) -> tuple[policy.Viewer, str | None]:
    token = ws.query_params.get("access_token", "")
    header = ws.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        token = header[7:].strip()
    protocol = ws.headers.get("sec-websocket-protocol")
    if not token and protocol:
        token = protocol.split(",")[0].strip()
    if not token:
        return policy.ANONYMOUS, None
    async with rt.sessions() as db:
        info = await oauth.token_info(db, token)
    if info is None or not satisfies(info.scopes, "read:statuses"):
        raise ApiUnauthorized()
    viewer = (
        policy.Viewer(info.user.account_id, info.user.is_admin) if info.user else policy.ANONYMOUS
    )
    return viewer, protocol.split(",")[0].strip() if protocol else None


@router.websocket("/api/v1/streaming")
async def websocket_stream(ws: WebSocket) -> None:
    rt: Runtime = ws.app.state.runtime
    try:
        viewer, protocol = await _ws_auth(ws, rt)
    except ApiUnauthorized:
        await ws.close(code=4001)
        return
    await ws.accept(subprotocol=protocol)
    session = StreamSession(rt, viewer)
    first = ws.query_params.get("stream")
    if first:
        try:
            session.subscribe(first, ws.query_params.get("tag") or ws.query_params.get("list"))
        except (NotFound, ApiUnauthorized) as err:
            await ws.send_json({"error": err.message})
    inbox: asyncio.Queue[Event] = asyncio.Queue(maxsize=1000)
    listening = asyncio.Event()
    pump = asyncio.create_task(_pump(rt, viewer, inbox, listening))
    listener = Listener(session, inbox)
    hub = hub_for(rt)
    # Events published before the bus listens would be lost: wait for it (bounded).
    await hub.join(listener)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(listening.wait(), 5)

    async def reader() -> None:
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
            try:
                if msg["type"] == "subscribe":
                    session.subscribe(stream, str(param) if param else None)
                else:
                    session.unsubscribe(stream, str(param) if param else None)
            except (NotFound, ApiUnauthorized) as err:
                await ws.send_json({"error": err.message})

    read_task = asyncio.create_task(reader())
    try:
        while not read_task.done():
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
            for names, name, payload in await session.outgoing(
                ev, skip_user=bool(ev.get("_hub_user"))
            ):
                await ws.send_text(json.dumps({"stream": names, "event": name, "payload": payload}))
    except WebSocketDisconnect:
        pass
    finally:
        await hub.leave(listener)
        for task in (pump, read_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


# --- Server-Sent Events -------------------------------------------------------------------


async def _sse(rt: Runtime, session: StreamSession) -> AsyncIterator[str]:
    inbox: asyncio.Queue[Event] = asyncio.Queue(maxsize=1000)
    listening = asyncio.Event()
    pump = asyncio.create_task(_pump(rt, session.viewer, inbox, listening))
    listener = Listener(session, inbox)
    hub = hub_for(rt)
    try:
        await hub.join(listener)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(listening.wait(), 5)
        yield ":)\n\n"
        while True:
            try:
                ev = await asyncio.wait_for(inbox.get(), rt.settings.stream_heartbeat_seconds)
            except TimeoutError:
                yield ":thump\n\n"
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
    session = StreamSession(rt, auth.viewer)
    session.subscribe(name, request.query_params.get("tag") or request.query_params.get("list"))
    return StreamingResponse(
        _sse(rt, session),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
