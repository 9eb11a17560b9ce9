"""The stream hub: one per process, it receives the bus's post events once and hands them to
every open stream of the process (mastodon_api.streaming), rendering a new post for all
`user` streams at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kith.bus import Event
from kith.mastodon_api import render
from kith.posts.models import Poll, Post
from kith.runtime import Runtime
from kith.timelines import service as timelines

if TYPE_CHECKING:
    from kith.mastodon_api.streaming import StreamSession

log = logging.getLogger(__name__)

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
