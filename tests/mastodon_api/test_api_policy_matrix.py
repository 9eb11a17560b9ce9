"""The visibility matrix through the Mastodon API: every audience × every kind of viewer × every
endpoint and stream that can carry a post.

The world and the expected tables are the web matrix's (tests/test_policy_matrix.py): imported,
not copied, so the web UI and the API answer to the same hand-written rules. Each viewer calls
the API with a token of their own (the anonymous visitor with none). A followers-only or
direct post must never reach, through any endpoint or stream, a viewer the table says may not
see it; single-post endpoints answer 404 for it (never 403, so existence does not leak).

Added to the shared world here: a poll of each audience by the author, and bookmark and
favourite rows every signed-in viewer saved on each matrix post *before* they lost access
(the blocked ones were blocked afterwards, as rows that survive a block would be).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from sqlalchemy import func, select

from kith import policy
from kith.app import create_app
from kith.config import Settings
from kith.graph import service as graph
from kith.mastodon_api.streaming import StreamSession
from kith.notifications.models import Notification, NotificationType
from kith.posts.models import Bookmark, Like, Post, Visibility
from kith.posts.service import PollInput
from kith.runtime import Runtime
from tests.conftest import _wipe
from tests.live_server import live_server
from tests.mastodon_api.conftest import bearer, token_for
from tests.test_policy_matrix import (
    AUDIENCES,
    BOOST_IN_HOME,
    IN_HOME,
    IN_PUBLIC_LISTS,
    IN_SEARCH,
    IN_THREAD,
    MENTIONS,
    NOTIFIED,
    ON_PROFILE,
    OPENS_BY_LINK,
    OWN_REPLY_IN_HOME,
    VIEWERS,
    _build,
    expected,
)
from tests.world import person, post

# --- the one table the web matrix has no surface for ------------------------------------------
# Conversations (and the `direct` stream) list direct posts one is in: the author and the
# mentioned — not those a block separates, nor (a list, like Home) one who mutes the author.
#
#            anonymous author follower stranger mentioned blocked blocker admin muter
IN_CONVERSATIONS = {
    "public": "~         .      .        .        .         .       .       .     .",
    "unlisted": "~         .      .        .        .         .       .       .     .",
    "private": "~         .      .        .        .         .       .       .     .",
    "direct": "~         Y      .        .        Y         .       .       .     .",
}


def signed_in_only(table: dict[str, str]) -> dict[str, str]:
    """The same table for a surface the anonymous visitor does not have (their column: ~)."""
    return {a: " ".join(["~", *row.split()[1:]]) for a, row in table.items()}


# Saved posts (bookmarks, favourites) are listed while the viewer may still open them.
SAVED = signed_in_only(OPENS_BY_LINK)


# --- the world ----------------------------------------------------------------------------


@dataclass
class ApiWorld:
    """The shared matrix world, plus the API's own: tokens, polls, an ASGI client."""

    rt: Runtime
    settings: Settings
    client: httpx.AsyncClient
    tokens: dict[str, str]  # viewer -> token (not for "anonymous")
    people: dict[str, Any]
    host_root: Post
    matrix_post: dict[str, Post]
    thread_reply: dict[str, Post]
    replies_to: dict[tuple[str, str], Post]
    boosts: dict[str, Post]
    poll_post: dict[str, Post]
    sentinel: Post
    cache: dict[Any, Any] = field(default_factory=dict)

    def viewer(self, name: str) -> policy.Viewer:
        if name == "anonymous":
            return policy.ANONYMOUS
        return policy.Viewer(self.people[name].id, is_admin=name == "admin")

    def headers(self, who: str) -> dict[str, str]:
        return bearer(self.tokens[who]) if who in self.tokens else {}

    async def get(self, who: str, url: str) -> httpx.Response:
        """GET an API URL as `who` (cached: several tables read the same list)."""
        key = ("get", who, url)
        if key not in self.cache:
            self.cache[key] = await self.client.get(url, headers=self.headers(who))
        return self.cache[key]


async def _api_extras(db: Any, people: dict[str, Any], matrix_post: dict[str, Post]) -> Any:
    """A poll of each audience, saved rows from before the blocks, and a token per viewer."""
    author = people["author"]
    polls = {
        a: await post(
            db,
            author,
            f"Poll {MENTIONS}",
            visibility=Visibility(a),
            poll=PollInput(options=["yes", "no"], expires_in=3600),
        )
        for a in AUDIENCES
    }
    for who in VIEWERS[1:]:
        for a in AUDIENCES:
            # Saved while they could see it (rows a later block or removal leaves behind).
            db.add(Bookmark(account_id=people[who].id, post_id=matrix_post[a].id))
            db.add(Like(account_id=people[who].id, post_id=matrix_post[a].id))
    await db.commit()
    tokens = {who: await token_for(db, people[who], "read write follow") for who in VIEWERS[1:]}
    return polls, tokens


@pytest.fixture(scope="module")
async def world(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ApiWorld]:
    settings = Settings(
        database_url=database_url,
        var_dir=Path(tmp_path_factory.mktemp("api-matrix")),
        secret_key="test-secret-key-not-for-production",
        domain="kith.test",
        run_worker=False,
        redis_url="",
    )
    rt = Runtime.from_settings(settings)
    await _wipe(rt)
    async with rt.sessions() as db:
        built = await _build(db)
        polls, tokens = await _api_extras(db, built["people"], built["matrix_post"])
    app = create_app(settings)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 1234))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://kith.test")
        )
        yield ApiWorld(
            rt=rt, settings=settings, client=client, tokens=tokens, poll_post=polls, **built
        )
    await rt.close()


# --- surfaces -----------------------------------------------------------------------------

Check = Callable[[ApiWorld, str, str], Awaitable[bool]]


def _ids(r: httpx.Response, limit: int = 40) -> set[int]:
    """Status ids of a list response that holds everything (a full page could hide more)."""
    assert r.status_code == 200, (r.status_code, r.text)
    items = r.json()
    assert len(items) < limit, "a full page: the world outgrew the page size"
    return {int(s["id"]) for s in items}


async def _opens(w: ApiWorld, who: str, url: str) -> bool:
    """A single-object GET: 200 if the viewer may see it, 404 otherwise — never 403."""
    r = await w.get(who, url)
    assert r.status_code in (200, 404), (url, r.status_code, r.text)
    return r.status_code == 200


async def get_status(w: ApiWorld, audience: str, who: str) -> bool:
    p = w.matrix_post[audience]
    seen = await _opens(w, who, f"/api/v1/statuses/{p.id}")
    if seen:
        assert (await w.get(who, f"/api/v1/statuses/{p.id}")).json()["id"] == str(p.id)
    return seen


async def status_history(w: ApiWorld, audience: str, who: str) -> bool:
    return await _opens(w, who, f"/api/v1/statuses/{w.matrix_post[audience].id}/history")


async def status_context(w: ApiWorld, audience: str, who: str) -> bool:
    return await _opens(w, who, f"/api/v1/statuses/{w.matrix_post[audience].id}/context")


async def thread_descendants(w: ApiWorld, audience: str, who: str) -> bool:
    r = await w.get(who, f"/api/v1/statuses/{w.host_root.id}/context")
    assert r.status_code == 200, r.text
    return str(w.thread_reply[audience].id) in {s["id"] for s in r.json()["descendants"]}


async def account_statuses(w: ApiWorld, audience: str, who: str) -> bool:
    url = f"/api/v1/accounts/{w.people['author'].id}/statuses?limit=40"
    return w.matrix_post[audience].id in _ids(await w.get(who, url))


async def home(w: ApiWorld, audience: str, who: str) -> bool:
    return w.matrix_post[audience].id in _ids(await w.get(who, "/api/v1/timelines/home?limit=40"))


async def home_own_reply(w: ApiWorld, audience: str, who: str) -> bool:
    ids = _ids(await w.get(who, "/api/v1/timelines/home?limit=40"))
    return w.thread_reply[audience].id in ids


async def home_boost(w: ApiWorld, audience: str, who: str) -> bool:
    boost = w.boosts.get(audience)
    ids = _ids(await w.get(who, "/api/v1/timelines/home?limit=40"))
    return boost is not None and boost.id in ids


async def public_local(w: ApiWorld, audience: str, who: str) -> bool:
    url = "/api/v1/timelines/public?local=true&limit=40"
    return w.matrix_post[audience].id in _ids(await w.get(who, url))


async def hashtag(w: ApiWorld, audience: str, who: str) -> bool:
    url = "/api/v1/timelines/tag/matrix?limit=40"
    return w.matrix_post[audience].id in _ids(await w.get(who, url))


def _notification_posts(w: ApiWorld, audience: str, who: str) -> set[str]:
    """The posts of this audience a notification of `who` could be about (as the web matrix)."""
    ids = {w.matrix_post[audience].id, w.thread_reply[audience].id}
    if (audience, who) in w.replies_to:
        ids.add(w.replies_to[(audience, who)].id)
    return {str(i) for i in ids}


async def notifications_v1(w: ApiWorld, audience: str, who: str) -> bool:
    r = await w.get(who, "/api/v1/notifications?types[]=mention&limit=80")
    assert r.status_code == 200 and len(r.json()) < 80, r.text
    about = {n["status"]["id"] for n in r.json() if n["status"]}
    return bool(about & _notification_posts(w, audience, who))


async def notifications_v2(w: ApiWorld, audience: str, who: str) -> bool:
    r = await w.get(who, "/api/v2/notifications?types[]=mention&limit=80")
    assert r.status_code == 200, r.text
    body = r.json()
    in_groups = {g["status_id"] for g in body["notification_groups"]}
    in_statuses = {s["id"] for s in body["statuses"]}
    assert in_groups == in_statuses  # a group never points at a status that was left out
    return bool(in_statuses & _notification_posts(w, audience, who))


async def _stored_notifications(w: ApiWorld, audience: str, who: str) -> list[int]:
    """Mention and reply rows of `who` about these posts, whether or not they may be shown."""
    wanted = [int(i) for i in _notification_posts(w, audience, who)]
    async with w.rt.sessions() as db:
        rows = await db.scalars(
            select(Notification.id).where(
                Notification.account_id == w.people[who].id,
                Notification.post_id.in_(wanted),
                Notification.type.in_([NotificationType.MENTION, NotificationType.REPLY]),
            )
        )
        return list(rows.all())


async def one_notification(w: ApiWorld, audience: str, who: str) -> bool:
    """GET /notifications/:id of every stored row: 200 only for what may be shown."""
    seen = False
    for nid in await _stored_notifications(w, audience, who):
        seen |= await _opens(w, who, f"/api/v1/notifications/{nid}")
    return seen


async def search(w: ApiWorld, audience: str, who: str) -> bool:
    r = await w.get(who, "/api/v2/search?q=Matrix&type=statuses&limit=40")
    assert r.status_code == 200, r.text
    found = {s["id"] for s in r.json()["statuses"]}
    assert len(found) < 40
    return str(w.matrix_post[audience].id) in found


async def bookmarks(w: ApiWorld, audience: str, who: str) -> bool:
    return w.matrix_post[audience].id in _ids(await w.get(who, "/api/v1/bookmarks?limit=40"))


async def favourites(w: ApiWorld, audience: str, who: str) -> bool:
    return w.matrix_post[audience].id in _ids(await w.get(who, "/api/v1/favourites?limit=40"))


async def favourited_by(w: ApiWorld, audience: str, who: str) -> bool:
    url = f"/api/v1/statuses/{w.matrix_post[audience].id}/favourited_by"
    return await _opens(w, who, url)


async def reblogged_by(w: ApiWorld, audience: str, who: str) -> bool:
    url = f"/api/v1/statuses/{w.matrix_post[audience].id}/reblogged_by"
    return await _opens(w, who, url)


async def poll(w: ApiWorld, audience: str, who: str) -> bool:
    return await _opens(w, who, f"/api/v1/polls/{w.poll_post[audience].id}")


async def conversations(w: ApiWorld, audience: str, who: str) -> bool:
    r = await w.get(who, "/api/v1/conversations?limit=40")
    assert r.status_code == 200, r.text
    last = {c["last_status"]["id"] for c in r.json()}
    return str(w.matrix_post[audience].id) in last


# Streams: the session every streaming connection uses turns a bus event into what is sent.


async def _streamed(w: ApiWorld, who: str, stream: str, param: str | None, event: dict) -> bool:
    session = StreamSession(w.rt, w.viewer(who))
    session.subscribe(stream, param)
    return bool(await session.outgoing(event))


def _post_event(p: Post, kind: str = "post.created") -> dict[str, Any]:
    return {"type": kind, "post_id": p.id, "account_id": p.account_id}


async def stream_user(w: ApiWorld, audience: str, who: str) -> bool:
    return await _streamed(w, who, "user", None, _post_event(w.matrix_post[audience]))


async def stream_user_edit(w: ApiWorld, audience: str, who: str) -> bool:
    event = _post_event(w.matrix_post[audience], "post.updated")
    return await _streamed(w, who, "user", None, event)


async def stream_user_boost(w: ApiWorld, audience: str, who: str) -> bool:
    boost = w.boosts.get(audience)
    return boost is not None and await _streamed(w, who, "user", None, _post_event(boost))


async def stream_local(w: ApiWorld, audience: str, who: str) -> bool:
    return await _streamed(w, who, "public:local", None, _post_event(w.matrix_post[audience]))


async def stream_hashtag(w: ApiWorld, audience: str, who: str) -> bool:
    event = _post_event(w.matrix_post[audience])
    return await _streamed(w, who, "hashtag", "Matrix", event)


async def stream_direct(w: ApiWorld, audience: str, who: str) -> bool:
    return await _streamed(w, who, "direct", None, _post_event(w.matrix_post[audience]))


async def stream_notifications(w: ApiWorld, audience: str, who: str) -> bool:
    """A `notification` event for every stored row: sent only for what may be shown."""
    seen = False
    for nid in await _stored_notifications(w, audience, who):
        seen |= await _streamed(w, who, "user", None, {"type": "notification", "id": nid})
    return seen


SURFACES: dict[str, tuple[Check, dict[str, str]]] = {
    "GET /statuses/:id": (get_status, OPENS_BY_LINK),
    "GET /statuses/:id/history": (status_history, OPENS_BY_LINK),
    "GET /statuses/:id/context": (status_context, OPENS_BY_LINK),
    "context of the thread root": (thread_descendants, IN_THREAD),
    "GET /accounts/:id/statuses": (account_statuses, ON_PROFILE),
    "timelines/home": (home, IN_HOME),
    "timelines/home, own reply": (home_own_reply, OWN_REPLY_IN_HOME),
    "timelines/home, boost": (home_boost, BOOST_IN_HOME),
    "timelines/public?local": (public_local, IN_PUBLIC_LISTS),
    "timelines/tag/:tag": (hashtag, IN_PUBLIC_LISTS),
    "v1/notifications": (notifications_v1, NOTIFIED),
    "v2/notifications": (notifications_v2, NOTIFIED),
    "GET /notifications/:id": (one_notification, NOTIFIED),
    "v2/search": (search, IN_SEARCH),
    "bookmarks": (bookmarks, SAVED),
    "favourites": (favourites, SAVED),
    "favourited_by": (favourited_by, OPENS_BY_LINK),
    "reblogged_by": (reblogged_by, OPENS_BY_LINK),
    "GET /polls/:id": (poll, OPENS_BY_LINK),
    "conversations": (conversations, IN_CONVERSATIONS),
    "stream user": (stream_user, IN_HOME),
    "stream user, edit": (stream_user_edit, IN_HOME),
    "stream user, boost": (stream_user_boost, BOOST_IN_HOME),
    "stream user, notification": (stream_notifications, NOTIFIED),
    "stream public:local": (stream_local, IN_PUBLIC_LISTS),
    "stream hashtag": (stream_hashtag, IN_PUBLIC_LISTS),
    "stream direct": (stream_direct, IN_CONVERSATIONS),
}

CASES = [
    pytest.param(surface, audience, who, id=f"{surface}-{audience}-{who}")
    for surface, (_, table) in SURFACES.items()
    for audience in AUDIENCES
    for who in VIEWERS
    if expected(table, audience, who) is not None
]


@pytest.mark.parametrize(("surface", "audience", "who"), CASES)
async def test_api_visibility_matrix(
    world: ApiWorld, surface: str, audience: str, who: str
) -> None:
    # Given the world, when `who` asks this endpoint or stream with their token
    check, table = SURFACES[surface]
    seen = await check(world, audience, who)
    # Then they get the post of this audience exactly when the table says so
    want = expected(table, audience, who)
    assert seen == want, f"{who} {'should' if want else 'should not'} get a {audience} post"


SIGNED_IN_LISTS = [
    "/api/v1/timelines/home",
    "/api/v1/notifications",
    "/api/v2/notifications",
    "/api/v1/bookmarks",
    "/api/v1/favourites",
    "/api/v1/conversations",
]


async def test_signed_in_only_surfaces__refuse_the_anonymous(world: ApiWorld) -> None:
    # Given the signed-in-only lists and streams, when nobody is signed in, then 401
    for url in [*SIGNED_IN_LISTS, "/api/v1/streaming/user", "/api/v1/streaming/direct"]:
        r = await world.client.get(url)
        assert r.status_code == 401, (url, r.status_code)
        assert "Matrix" not in r.text


@pytest.mark.parametrize("who", [v for v in VIEWERS if v != "anonymous"])
async def test_signed_in_only_lists__answer_every_signed_in_viewer(
    world: ApiWorld, who: str
) -> None:
    # Given a viewer's token, then each list answers (what it holds is the matrix's business)
    for url in SIGNED_IN_LISTS:
        assert (await world.get(who, url)).status_code == 200, url


# Every id-taking action answers 404 for a post the viewer may not see — and changes nothing.
ACTIONS = [
    ("POST", "favourite"),
    ("POST", "unfavourite"),
    ("POST", "reblog"),
    ("POST", "unreblog"),
    ("POST", "bookmark"),
    ("POST", "unbookmark"),
    ("POST", "pin"),
    ("POST", "unpin"),
    ("GET", "source"),
    ("PUT", ""),
    ("DELETE", ""),
]
HIDDEN = [
    pytest.param(audience, who, id=f"{audience}-{who}")
    for audience in AUDIENCES
    for who in VIEWERS
    if who != "anonymous" and expected(OPENS_BY_LINK, audience, who) is False
]


@pytest.mark.parametrize(("audience", "who"), HIDDEN)
async def test_actions_on_a_post_one_may_not_see__404_and_nothing_changes(
    world: ApiWorld, audience: str, who: str
) -> None:
    # Given a post `who` may not see (and its poll)
    target = world.matrix_post[audience]
    async with world.rt.sessions() as db:
        before = await _footprint(db, target.id)
    headers = world.headers(who)
    # When they act on it through every id-taking endpoint
    for method, action in ACTIONS:
        url = f"/api/v1/statuses/{target.id}" + (f"/{action}" if action else "")
        body = {"status": "hijacked"} if method == "PUT" else None
        r = await world.client.request(method, url, headers=headers, json=body)
        # Then each answers 404 — never 403, which would tell the post exists
        assert r.status_code == 404, (method, url, r.status_code, r.text)
        assert "Matrix" not in r.text
    poll_post = world.poll_post[audience]
    r = await world.client.post(
        f"/api/v1/polls/{poll_post.id}/votes", json={"choices": ["0"]}, headers=headers
    )
    assert r.status_code == 404, r.text
    # And nothing was written: no like, boost, bookmark, pin, vote or edit
    async with world.rt.sessions() as db:
        assert await _footprint(db, target.id) == before


async def _footprint(db: Any, post_id: int) -> tuple[Any, ...]:
    """Everything an action could change about a post."""
    from kith.posts.models import Pin, PollVote

    p = await db.get(Post, post_id)
    return (
        p.source,
        p.edited_at,
        await db.scalar(select(func.count()).select_from(Like).where(Like.post_id == post_id)),
        await db.scalar(
            select(func.count()).select_from(Bookmark).where(Bookmark.post_id == post_id)
        ),
        await db.scalar(select(func.count()).select_from(Post).where(Post.reblog_of_id == post_id)),
        await db.scalar(select(func.count()).select_from(Pin).where(Pin.post_id == post_id)),
        await db.scalar(select(func.count()).select_from(PollVote)),
    )


@pytest.mark.parametrize("audience", AUDIENCES)
async def test_anonymous_actions__401_never_404_or_200(world: ApiWorld, audience: str) -> None:
    # Given nobody signed in, when they try the actions, then 401 (nothing about the post)
    target = world.matrix_post[audience]
    for method, action in ACTIONS:
        url = f"/api/v1/statuses/{target.id}" + (f"/{action}" if action else "")
        r = await world.client.request(method, url)
        assert r.status_code == 401, (method, url, r.status_code)


async def test_saved_posts__vanish_when_access_is_lost(world: ApiWorld) -> None:
    # Given two readers who follow the author and save her followers-only and public posts
    async with world.rt.sessions() as db:
        readers = {n: await person(db, n) for n in ("reader1", "reader2")}
        tokens = {n: await token_for(db, a, "read write follow") for n, a in readers.items()}
        for a in readers.values():
            await graph.follow(db, a.id, world.people["author"].id)
    private, public = world.matrix_post["private"], world.matrix_post["public"]
    for n in readers:
        for p in (private, public):
            for action in ("bookmark", "favourite"):
                r = await world.client.post(
                    f"/api/v1/statuses/{p.id}/{action}", headers=bearer(tokens[n])
                )
                assert r.status_code == 200, r.text

    async def saved(n: str) -> dict[str, set[str]]:
        out = {}
        for kind in ("bookmarks", "favourites"):
            r = await world.client.get(f"/api/v1/{kind}", headers=bearer(tokens[n]))
            assert r.status_code == 200
            out[kind] = {s["id"] for s in r.json()}
        return out

    both = {str(private.id), str(public.id)}
    assert await saved("reader1") == {"bookmarks": both, "favourites": both}
    # When the author blocks the first and removes the second from her followers
    async with world.rt.sessions() as db:
        await graph.block(db, world.people["author"].id, readers["reader1"].id)
        await graph.remove_follower(db, world.people["author"].id, readers["reader2"].id)
    # Then the blocked one gets neither back, the removed one keeps only the public post
    assert await saved("reader1") == {"bookmarks": set(), "favourites": set()}
    only_public = {str(public.id)}
    assert await saved("reader2") == {"bookmarks": only_public, "favourites": only_public}
    # And opening the lost post by id is a 404 for both
    for n in readers:
        r = await world.client.get(f"/api/v1/statuses/{private.id}", headers=bearer(tokens[n]))
        assert r.status_code == 404


async def _collect(ws: Any, until: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """Messages of a WebSocket up to (and including) the first one `until` accepts."""
    got = []
    while True:
        msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if "event" not in msg:
            continue
        got.append(msg)
        if until(msg):
            return got


async def _until_hashtag_live(http: httpx.AsyncClient, ws: Any, auth: dict[str, str]) -> None:
    """Post public #matrix warm-ups until this socket's hashtag subscription delivers one."""
    for _ in range(40):
        r = await http.post("/api/v1/statuses", json={"status": "warm-up #matrix"}, headers=auth)
        assert r.status_code == 200, r.text
        with contextlib.suppress(TimeoutError):
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                if msg.get("stream", [None])[0] == "hashtag":
                    return
    raise AssertionError("the hashtag subscription never became active")


async def test_real_websocket__follower_and_stranger_get_exactly_their_posts(
    world: ApiWorld,
) -> None:
    # Given the follower and the stranger on a real server, each subscribed over one WebSocket
    # to their user stream, the local stream, #matrix and their direct stream
    # (this test edits the posts, so it runs last in the module)
    host = world.people["host"]
    async with world.rt.sessions() as db:
        host_token = await token_for(db, host, "read write")
    streams = ("user", "public:local", "direct", "hashtag")  # hashtag last: see below
    with live_server(world.settings) as base:
        ws_url = base.replace("http", "ws") + "/api/v1/streaming"
        async with contextlib.AsyncExitStack() as stack:
            http = await stack.enter_async_context(httpx.AsyncClient(base_url=base))
            sockets = {}
            for who in ("follower", "stranger"):
                ws = await stack.enter_async_context(
                    websockets.connect(f"{ws_url}?access_token={world.tokens[who]}")
                )
                for stream in streams:
                    sub = {"type": "subscribe", "stream": stream}
                    if stream == "hashtag":
                        sub["tag"] = "matrix"
                    await ws.send(json.dumps(sub))
                sockets[who] = ws
            # Subscriptions are taken in order: once a #matrix post arrives, all are active.
            for ws in sockets.values():
                await _until_hashtag_live(http, ws, bearer(host_token))
            # When the author edits each matrix post (same words: every table stays true)
            author_auth = world.headers("author")
            for a in AUDIENCES:
                p = world.matrix_post[a]
                r = await http.put(
                    f"/api/v1/statuses/{p.id}", json={"status": p.source}, headers=author_auth
                )
                assert r.status_code == 200, r.text
            # And the host then mentions both in a public #matrix post (the end marker)
            end = await http.post(
                "/api/v1/statuses",
                json={"status": "@follower @stranger the end #matrix"},
                headers=bearer(host_token),
            )
            assert end.status_code == 200, end.text
            for who, ws in sockets.items():
                got = await _collect(ws, lambda m: m["event"] == "notification")
                # Then each stream carried a post exactly when its table says so
                for a in AUDIENCES:
                    pid = str(world.matrix_post[a].id)
                    for stream, table in (
                        ("user", IN_HOME),
                        ("public:local", IN_PUBLIC_LISTS),
                        ("hashtag", IN_PUBLIC_LISTS),
                        ("direct", IN_CONVERSATIONS),
                    ):
                        carried = any(
                            m["stream"][0] == stream
                            and m["event"] in ("status.update", "conversation")
                            and json.loads(m["payload"])["id"] == pid
                            for m in got
                        )
                        want = expected(table, a, who)
                        assert carried == want, (who, stream, a, want)
