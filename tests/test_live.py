"""Live updates: the Server-Sent Events streams (in-process over ASGI), the Redis bus, and two
real `kith serve` processes sharing a database and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.app import create_app
from kith.bus import RedisBus
from kith.config import Settings
from kith.graph import service as graph
from kith.posts import service as posts
from kith.posts.models import Post, Visibility
from kith.runtime import Runtime, wait_for_background
from tests.browser.servers import KithServer, running_servers
from tests.world import Browser, person, post, viewer

REPO = Path(__file__).resolve().parent.parent
EVENT_TIMEOUT = 10.0


# --- reading an event stream ------------------------------------------------------------------


class EventStream:
    """The events of one Server-Sent Events response, as (name, data) pairs, in order."""

    def __init__(self) -> None:
        self.chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self._buffer = ""

    async def next(self, *names: str, seconds: float = EVENT_TIMEOUT) -> tuple[str, str]:
        """The next event (of one of `names`, when given; others are skipped)."""
        async with asyncio.timeout(seconds):
            while True:
                event = self._take_event()
                if event is None:
                    self._buffer += (await self.chunks.get()).decode()
                elif not names or event[0] in names:
                    return event

    def _take_event(self) -> tuple[str, str] | None:
        while "\n\n" in self._buffer:
            frame, self._buffer = self._buffer.split("\n\n", 1)
            name, data = "message", []
            for line in frame.split("\n"):
                field, _, value = line.partition(":")
                if field == "event":
                    name = value.strip()
                elif field == "data":
                    data.append(value.removeprefix(" "))
            if data:  # comments and the `retry` frame carry no data: not events
                return name, "\n".join(data)
        return None


async def update_id(stream: EventStream) -> int:
    """The post id of the next `update` event."""
    _, data = await stream.next("update")
    return int(json.loads(data)["id"])


@asynccontextmanager
async def asgi_stream(
    app: FastAPI, path: str, cookies: httpx.Cookies
) -> AsyncIterator[EventStream]:
    """GET `path` straight through the ASGI app (httpx's ASGI transport would wait for the end
    of a response that never ends), until the block exits and the client "disconnects"."""
    stream = EventStream()
    gone = asyncio.Event()
    started: list[int] = []
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"kith.test"),
            (b"accept", b"text/event-stream"),
            (b"cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()).encode()),
        ],
        "client": ("203.0.113.7", 1234),
        "server": ("kith.test", 80),
    }
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            started.append(message["status"])
        elif message["type"] == "http.response.body" and message.get("body"):
            stream.chunks.put_nowait(message["body"])

    task = asyncio.create_task(app(scope, receive, send))
    try:
        name, _ = await stream.next()
        assert started == [200] and name == "ready", (started, name)
        yield stream
    finally:
        gone.set()
        try:
            await asyncio.wait_for(task, 5)
        except TimeoutError:
            pytest.fail("the stream did not end when its client left")


@asynccontextmanager
async def http_stream(client: httpx.AsyncClient, path: str) -> AsyncIterator[EventStream]:
    """GET `path` over real HTTP and read its events while the block runs."""
    stream = EventStream()
    async with client.stream("GET", path, timeout=httpx.Timeout(5, read=None)) as response:
        assert response.status_code == 200, response.status_code

        async def pump() -> None:
            async for chunk in response.aiter_bytes():
                stream.chunks.put_nowait(chunk)

        reader = asyncio.create_task(pump())
        try:
            name, _ = await stream.next()
            assert name == "ready"
            yield stream
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


# --- in one process, over ASGI ----------------------------------------------------------------


@pytest.fixture
async def live_app(settings: Settings, rt: Runtime) -> AsyncIterator[FastAPI]:
    """The app with its lifespan run (its own runtime and in-process bus; database wiped)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def app_runtime(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


@asynccontextmanager
async def signed_in(app: FastAPI, name: str) -> AsyncIterator[Browser]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://kith.test") as client:
        b = Browser(client)
        r = await b.sign_in(name)
        assert r.status_code == 303, r.text
        yield b


async def test_home_stream__a_followed_authors_new_post_arrives_as_an_update(
    live_app: FastAPI, db: AsyncSession
) -> None:
    # Given bob follows alice and has Home open
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await graph.follow(db, bob.id, alice.id)
    async with (
        signed_in(live_app, "bob") as b,
        asgi_stream(live_app, "/stream/home", b.client.cookies) as stream,
    ):
        # When alice posts (publishing on the app's bus, as a web request would)
        async with app_runtime(live_app).sessions() as s:
            p = await post(s, alice, "Fresh bread at the bakery")
        # Then bob's stream tells him about it
        assert await update_id(stream) == p.id


async def test_home_stream__leaves_out_a_strangers_followers_only_post_and_a_blocked_authors(
    live_app: FastAPI, db: AsyncSession
) -> None:
    # Given bob follows alice and carol, and blocked mallory; dan is a stranger to him
    alice, bob, carol, dan, mallory = [
        await person(db, n) for n in ("alice", "bob", "carol", "dan", "mallory")
    ]
    for followed in (alice, carol, mallory):
        await graph.follow(db, bob.id, followed.id)
    await graph.block(db, bob.id, mallory.id)
    async with (
        signed_in(live_app, "bob") as b,
        asgi_stream(live_app, "/stream/home", b.client.cookies) as stream,
    ):
        async with app_runtime(live_app).sessions() as s:
            # When dan posts to his followers, mallory posts and carol boosts mallory's post
            await post(s, dan, "Dan's followers-only news", visibility=Visibility.PRIVATE)
            await post(s, dan, "Dan's public news")
            loud = await post(s, mallory, "Mallory shouting")
            await posts.boost(s, viewer(carol), loud.id)
            # And then alice posts
            p = await post(s, alice, "Alice's news")
        # Then the first update bob gets is alice's post: none of the others came through
        assert await update_id(stream) == p.id


async def test_home_stream__tells_the_viewer_about_a_new_notification(
    live_app: FastAPI, db: AsyncSession
) -> None:
    # Given bob posted and has Home open
    alice, bob = await person(db, "alice"), await person(db, "bob")
    bobs = await post(db, bob, "Who wants rhubarb?")
    async with (
        signed_in(live_app, "bob") as b,
        asgi_stream(live_app, "/stream/home", b.client.cookies) as stream,
    ):
        # When alice likes his post
        async with app_runtime(live_app).sessions() as s:
            await posts.like(s, viewer(alice), bobs.id)
        # Then his stream says he has a notification
        name, _ = await stream.next("notification")
        assert name == "notification"


async def test_local_stream__leaves_out_a_blocked_authors_and_followers_only_posts(
    live_app: FastAPI, db: AsyncSession
) -> None:
    # Given bob blocked mallory and watches the Local timeline
    alice, bob, mallory = [await person(db, n) for n in ("alice", "bob", "mallory")]
    await graph.block(db, bob.id, mallory.id)
    async with (
        signed_in(live_app, "bob") as b,
        asgi_stream(live_app, "/stream/local", b.client.cookies) as stream,
    ):
        async with app_runtime(live_app).sessions() as s:
            # When mallory posts publicly, alice posts to her followers, then publicly
            await post(s, mallory, "Mallory again")
            await post(s, alice, "For followers", visibility=Visibility.PRIVATE)
            p = await post(s, alice, "For everyone")
        # Then only alice's public post reaches bob
        assert await update_id(stream) == p.id


async def test_home_stream__needs_a_signed_in_viewer(live_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=live_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://kith.test") as client:
        r = await client.get("/stream/home", headers={"accept": "text/event-stream"})
    assert r.status_code in (303, 401)


# --- the Redis bus --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_url() -> str:
    """KITH_TEST_REDIS_URL, else what scripts/test-redis-url finds or starts."""
    url = (
        os.environ.get("KITH_TEST_REDIS_URL")
        or subprocess.run(
            [str(REPO / "scripts" / "test-redis-url")],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        ).stdout.strip()
    )
    redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    return url


def run_prefix() -> str:
    """A channel namespace of this test run alone (runs in parallel share one Redis)."""
    return f"kith-test-{os.getpid()}-{uuid.uuid4().hex[:8]}:"


async def _stop_listening(
    reads: list[asyncio.Future[Any]], subscriptions: list[Any], buses: list[RedisBus]
) -> None:
    """A bus test's end: its pending reads cancelled, its subscriptions ended, its buses
    closed."""
    for read in reads:
        read.cancel()
    for subscription in subscriptions:
        with contextlib.suppress(Exception):
            await subscription.aclose()
    for bus in buses:
        await bus.close()


async def test_redis_bus__delivers_to_other_connections_with_the_same_prefix_only(
    redis_url: str,
) -> None:
    # Given two buses on one prefix (as two processes of one instance) and one on another
    prefix = run_prefix()
    here, there, elsewhere = (
        RedisBus(redis_url, prefix),
        RedisBus(redis_url, prefix),
        RedisBus(redis_url, run_prefix()),
    )
    ready, ready_elsewhere = asyncio.Event(), asyncio.Event()
    got_there = there.subscribe("posts", ready=ready)
    got_elsewhere = elsewhere.subscribe("posts", ready=ready_elsewhere)
    first = asyncio.ensure_future(anext(got_there))
    stray = asyncio.ensure_future(anext(got_elsewhere))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        await asyncio.wait_for(ready_elsewhere.wait(), 5)
        # When one publishes
        await here.publish("posts", {"type": "post.created", "post_id": 7})
        # Then the other gets the event, and the other instance doesn't
        assert await asyncio.wait_for(first, 5) == {"type": "post.created", "post_id": 7}
        await asyncio.sleep(0.2)
        assert not stray.done()
    finally:
        await _stop_listening([first, stray], [got_there, got_elsewhere], [here, there, elsewhere])


async def test_redis_bus__publish_many_delivers_each_event_in_order(redis_url: str) -> None:
    # Given two buses on one prefix, one listening on a user's channel and on posts
    prefix = run_prefix()
    here, there = RedisBus(redis_url, prefix), RedisBus(redis_url, prefix)
    ready = asyncio.Event()
    got = there.subscribe("posts", "user:5", ready=ready)
    first = asyncio.ensure_future(anext(got))  # (the subscription starts with the first read)
    try:
        await asyncio.wait_for(ready.wait(), 5)
        # When a post and its notification are published together (one round trip)
        await here.publish_many(
            [
                ("posts", {"type": "post.created", "post_id": 7}),
                ("user:5", {"type": "notification", "id": 9}),
            ]
        )
        # Then both arrive, in that order
        assert await asyncio.wait_for(first, 5) == {"type": "post.created", "post_id": 7}
        assert await asyncio.wait_for(anext(got), 5) == {"type": "notification", "id": 9}
    finally:
        await _stop_listening([first], [got], [here, there])


def _gate_pipelines(bus: RedisBus, gate: asyncio.Event) -> list[int]:
    """Make every pipeline of `bus` wait at `gate` before it runs; returns a counter of the
    pipelines run ([n])."""
    trips = [0]
    real = bus.client.pipeline

    def gated(*a: Any, **kw: Any) -> Any:
        pipe = real(*a, **kw)
        execute = pipe.execute

        async def at_the_gate(*a: Any, **kw: Any) -> Any:
            trips[0] += 1
            await gate.wait()
            return await execute(*a, **kw)

        pipe.execute = at_the_gate
        return pipe

    bus.client.pipeline = gated  # type: ignore[method-assign]
    return trips


async def test_redis_bus__publishing_does_not_wait_for_redis_and_keeps_the_order(
    redis_url: str,
) -> None:
    # Given two buses on one prefix, one listening, the other's exchanges with Redis held at
    # a gate the test opens
    prefix = run_prefix()
    here, there = RedisBus(redis_url, prefix), RedisBus(redis_url, prefix)
    gate = asyncio.Event()
    trips = _gate_pipelines(here, gate)
    ready = asyncio.Event()
    got = there.subscribe("posts", ready=ready)
    first = asyncio.ensure_future(anext(got))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        # When three events are published by separate calls while Redis has not answered
        for i in range(3):
            await asyncio.wait_for(here.publish("posts", {"n": i}), 0.1)  # (no waiting)
            await asyncio.sleep(0)  # (the first call's exchange is under way)
        gate.set()
        # Then they arrive in publishing order, the two queued meanwhile in one exchange
        assert await asyncio.wait_for(first, 5) == {"n": 0}
        assert [await asyncio.wait_for(anext(got), 5) for _ in range(2)] == [{"n": 1}, {"n": 2}]
        assert trips[0] == 2
    finally:
        await _stop_listening([first], [got], [here, there])


async def test_redis_bus__publishing_while_redis_is_down_only_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a bus whose Redis does not answer (nothing listens on port 1)
    bus = RedisBus("redis://127.0.0.1:1/0", run_prefix())
    try:
        # When a service publishes after its commit, it doesn't fail: the bus logs a warning
        with caplog.at_level(logging.WARNING, logger="kith.bus"):
            await bus.publish("posts", {"type": "post.created", "post_id": 1})
            await bus.publish_many([("posts", {}), ("user:1", {})])
            await bus.flush()
        assert "could not publish 3 events" in caplog.text
        # and once Redis is back the next events go out (here: the outbox is empty again)
        assert not bus._outbox
    finally:
        await bus.close()


# --- two real server processes ----------------------------------------------------------------


@pytest.fixture(scope="module")
def two_servers(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[KithServer]]:
    """Servers A and B on the test database (SQLite file or PostgreSQL) and one Redis."""
    workdir = tmp_path_factory.mktemp("two-servers")
    with running_servers(
        2, workdir, database_url, redis_url=redis_url, redis_prefix=run_prefix()
    ) as servers:
        yield servers


@asynccontextmanager
async def signed_in_at(server: KithServer, name: str) -> AsyncIterator[Browser]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        b = Browser(client)
        r = await b.sign_in(name)
        assert r.status_code == 303, r.text
        yield b


async def latest_post_of(db: AsyncSession, author: Account) -> int:
    post_id = await db.scalar(
        select(Post.id).where(Post.account_id == author.id).order_by(Post.id.desc()).limit(1)
    )
    assert post_id is not None
    return post_id


@pytest.mark.slow
async def test_two_servers__a_post_made_through_b_reaches_a_stream_on_a(
    two_servers: list[KithServer], db: AsyncSession
) -> None:
    server_a, server_b = two_servers
    # Given bob follows alice (carol is a stranger to him) and bob posted once
    alice, bob, carol = [await person(db, n) for n in ("alice", "bob", "carol")]
    await graph.follow(db, bob.id, alice.id)
    bobs = await post(db, bob, "Anyone seen my trowel?")
    async with (
        signed_in_at(server_a, "bob") as bob_at_a,
        signed_in_at(server_b, "alice") as alice_at_b,
        signed_in_at(server_b, "carol") as carol_at_b,
        http_stream(bob_at_a.client, "/stream/home") as stream,
    ):
        # When carol posts to her followers and then alice posts, both through server B
        r = await carol_at_b.post("/posts", {"status": "Carol's secret", "visibility": "private"})
        assert r.status_code == 303, r.text
        r = await alice_at_b.post("/posts", {"status": "Alice via B", "visibility": "public"})
        assert r.status_code == 303, r.text
        # Then bob's stream on server A gets alice's post (and not carol's)
        assert await update_id(stream) == await latest_post_of(db, alice)

        # When alice likes bob's post through server B
        r = await alice_at_b.post(f"/posts/{bobs.id}/like")
        assert r.status_code == 303, r.text
        # Then bob's stream on server A tells him
        name, _ = await stream.next("notification")
        assert name == "notification"


@pytest.mark.slow
async def test_two_servers__mastodon_streaming_api_crosses_processes(
    two_servers: list[KithServer], db: AsyncSession
) -> None:
    from kith.oauth import service as oauth

    server_a, server_b = two_servers
    # Given bob follows alice, and both hold API tokens
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await graph.follow(db, bob.id, alice.id)
    bob_token = (await oauth.create_personal_token(db, bob, "t", "read")).access_token
    alice_token = (await oauth.create_personal_token(db, alice, "t", "read write")).access_token
    async with (
        httpx.AsyncClient(base_url=server_a.base_url, timeout=10) as at_a,
        httpx.AsyncClient(base_url=server_b.base_url, timeout=10) as at_b,
        at_a.stream(
            "GET", "/api/v1/streaming/user", headers={"Authorization": f"Bearer {bob_token}"}
        ) as response,
    ):
        assert response.status_code == 200
        lines = response.aiter_lines()
        assert (await asyncio.wait_for(anext(lines), 10)).startswith(":")  # listening
        # When alice posts through server B's API
        r = await at_b.post(
            "/api/v1/statuses",
            json={"status": "across processes"},
            headers={"Authorization": f"Bearer {alice_token}"},
        )
        assert r.status_code == 200, r.text
        # Then bob's user stream on server A carries the status entity
        event = data = None
        while data is None:
            line = await asyncio.wait_for(anext(lines), 10)
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "update":
                data = json.loads(line[6:])
        assert data["id"] == r.json()["id"] and data["content"].startswith("<p>across")


async def test_api_rate_limit__is_shared_by_every_process_through_redis(redis_url: str) -> None:
    # Given two processes' limiters (as with `kith serve --workers 2`) on one Redis and prefix
    from kith.mastodon_api.ratelimit import ApiRateLimiter

    prefix = run_prefix()
    buses = [RedisBus(redis_url, prefix), RedisBus(redis_url, prefix)]
    limiters = [ApiRateLimiter(), ApiRateLimiter()]
    try:
        # When one person's requests alternate between them
        used = [
            (await limiters[i % 2].shared_hit(buses[i % 2], "t:someone", 5))[1] for i in range(7)
        ]
        # Then they count one budget, not one each: the 6th request is over the limit of 5
        assert used == [1, 2, 3, 4, 5, 6, 7]
        # and another instance (another prefix) has its own
        other = RedisBus(redis_url, run_prefix())
        assert (await ApiRateLimiter().shared_hit(other, "t:someone", 5))[1] == 1
        await other.close()
    finally:
        for bus in buses:
            await bus.close()


async def test_api_rate_limit__leases__never_more_than_the_limit_and_few_round_trips(
    redis_url: str,
) -> None:
    # Given two processes' limiters on one Redis, counting their round trips to it
    from kith.mastodon_api.ratelimit import LEASE_MAX, ApiRateLimiter

    prefix = run_prefix()
    buses = [RedisBus(redis_url, prefix), RedisBus(redis_url, prefix)]
    limiters = [ApiRateLimiter(), ApiRateLimiter()]
    trips = [0, 0]
    for i, bus in enumerate(buses):
        real = bus.client.pipeline

        def counted(*a: Any, _real: Any = real, _i: int = i, **kw: Any) -> Any:
            trips[_i] += 1
            return _real(*a, **kw)

        bus.client.pipeline = counted  # type: ignore[method-assign]
    try:
        # When one person sends 400 requests through both at once, with a limit of 300
        async def one(i: int) -> int:
            return (await limiters[i % 2].shared_hit(buses[i % 2], "t:busy", 300))[1]

        places = await asyncio.gather(*(one(i) for i in range(400)))
        # Then each request took its own place in the shared count: no more than 300 passed,
        # and at most a lease's unused places per process were refused early
        assert len(set(places)) == len(places)
        passed = [p for p in places if p <= 300]
        assert 300 - 2 * (LEASE_MAX - 1) <= len(passed) <= 300
        # in far fewer round trips than requests
        assert sum(trips) < 400 / 8
        # And one process alone, one request at a time, counts exactly
        alone = ApiRateLimiter()
        counted_alone = [(await alone.shared_hit(buses[0], "t:alone", 50))[1] for _ in range(60)]
        assert counted_alone == list(range(1, 61))
    finally:
        await wait_for_background()  # (a lease's top-up may be under way)
        for bus in buses:
            await bus.close()


async def test_api_rate_limit__a_busy_key_is_topped_up_before_its_requests_wait(
    redis_url: str,
) -> None:
    # Given a limiter whose round trips to Redis pass a gate the test holds
    from kith.mastodon_api.ratelimit import LEASE_MAX, ApiRateLimiter

    bus, limiter = RedisBus(redis_url, run_prefix()), ApiRateLimiter()
    gate = asyncio.Event()
    gate.set()
    trips = _gate_pipelines(bus, gate)

    async def hit() -> int:
        return (await asyncio.wait_for(limiter.shared_hit(bus, "t:busy", 1500), 0.5))[1]

    try:
        # and a token that made 100 requests in this window
        places = [await hit() for _ in range(100)]
        await wait_for_background()
        # When Redis stops answering
        gate.clear()
        asked_at, before = None, trips[0]
        with pytest.raises(TimeoutError):
            while True:
                places.append(await hit())
                if trips[0] > before and asked_at is None:
                    asked_at = len(places)
        # Then the lease was topped up before it ran out: one reservation, asked for while a
        # quarter of the lease was left, and those places were still taken without waiting
        assert trips[0] == before + 1 and asked_at is not None
        assert len(places) - asked_at == LEASE_MAX // 4
        # And once Redis answers, the next request takes the next place (none lost, none twice)
        gate.set()
        await wait_for_background()
        places.append(await hit())
        assert places == list(range(1, len(places) + 1))
    finally:
        await wait_for_background()
        await bus.close()
