"""The visibility matrix: every audience × every kind of viewer × every surface built so far.

One world is built for the whole module (people, follows, blocks, a mute, and for each audience
a post, a reply in someone else's thread and replies to people's posts). Each test asks one
surface one question — "does this viewer see the post of this audience here?" — and compares
the answer with the explicit tables below. The tables are written by hand from the product
rules (see kith.policy's docstring), never computed by calling the policy.

Viewers:
  anonymous  nobody signed in
  author     wrote the posts
  follower   follows the author
  stranger   signed in, does not follow the author
  mentioned  mentioned in the posts, does not follow the author
  blocked    blocked by the author (and mentioned; a stale follow row survives the block)
  blocker    blocks the author (and mentioned; a stale follow row survives the block)
  admin      an admin who does not follow the author (no extra read access)
  muter      follows the author, is mentioned, and mutes the author (notifications too)

Every signed-in viewer but the author also follows "booster", who follows the author and
boosts the public and unlisted posts (the others can't be boosted).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts import service as accounts
from kith.accounts.models import Account
from kith.app import create_app
from kith.config import Settings
from kith.errors import NotFound, ValidationFailed
from kith.graph import service as graph
from kith.graph.models import Follow
from kith.moderation import service as moderation
from kith.notifications import service as notifications
from kith.posts import service as posts
from kith.posts.models import Post, Visibility
from kith.runtime import Runtime
from kith.timelines import service as timelines
from kith.timelines.shapes import ENTITIES
from kith.web import stream
from tests.conftest import _wipe
from tests.world import Browser, person, post

AUDIENCES = ("public", "unlisted", "private", "direct")
VIEWERS = (
    "anonymous",
    "author",
    "follower",
    "stranger",
    "mentioned",
    "blocked",
    "blocker",
    "admin",
    "muter",
)

# --- the expected answers, by hand ----------------------------------------------------------
# One row per audience, one column per viewer (in VIEWERS order):
#   Y = sees it here, . = does not, ~ = the surface does not exist for this viewer.
#
#            anonymous author follower stranger mentioned blocked blocker admin muter
OPENS_BY_LINK = {
    "public": "Y         Y      Y        Y        Y         .       .       Y     Y",
    "unlisted": "Y         Y      Y        Y        Y         .       .       Y     Y",
    "private": ".         Y      Y        .        Y         .       .       .     Y",
    "direct": ".         Y      .        .        Y         .       .       .     Y",
}
# Replies in someone else's thread: as by link, but a muted author's replies are left out.
IN_THREAD = {
    "public": "Y         Y      Y        Y        Y         .       .       Y     .",
    "unlisted": "Y         Y      Y        Y        Y         .       .       Y     .",
    "private": ".         Y      Y        .        Y         .       .       .     .",
    "direct": ".         Y      .        .        Y         .       .       .     .",
}
# The author's profile lists what the viewer may open (muting doesn't empty a profile).
ON_PROFILE = OPENS_BY_LINK
# Home: own posts and followed accounts' posts the viewer may see; mutes hide.
IN_HOME = {
    "public": "~         Y      Y        .        .         .       .       .     .",
    "unlisted": "~         Y      Y        .        .         .       .       .     .",
    "private": "~         Y      Y        .        .         .       .       .     .",
    "direct": "~         Y      .        .        .         .       .       .     .",
}
# Own replies in someone else's thread land in one's own Home (as on Mastodon); a followed
# account's reply to someone the viewer doesn't follow does not.
OWN_REPLY_IN_HOME = {
    "public": "~         Y      .        .        .         .       .       .     .",
    "unlisted": "~         Y      .        .        .         .       .       .     .",
    "private": "~         Y      .        .        .         .       .       .     .",
    "direct": "~         Y      .        .        .         .       .       .     .",
}
# A boost by someone the viewer follows: shown unless the viewer and the original's author
# block each other or the viewer mutes the original's author. Only public and unlisted posts
# can be boosted. The author doesn't follow the booster.
BOOST_IN_HOME = {
    "public": "~         .      Y        Y        Y         .       .       Y     .",
    "unlisted": "~         .      Y        Y        Y         .       .       Y     .",
    "private": "~         .      .        .        .         .       .       .     .",
    "direct": "~         .      .        .        .         .       .       .     .",
}
# Local and hashtag timelines list public posts only; blocks and mutes hide.
IN_PUBLIC_LISTS = {
    "public": "Y         Y      Y        Y        Y         .       .       Y     .",
    "unlisted": ".         .      .        .        .         .       .       .     .",
    "private": ".         .      .        .        .         .       .       .     .",
    "direct": ".         .      .        .        .         .       .       .     .",
}
# Notifications: the mentioned get a mention; follower, stranger, admin, blocked and blocker
# get a reply to their own post (written before the blocks) — each only if they may see it.
# A reply mentions nobody, so a direct reply reaches no one; mutes and blocks silence all.
NOTIFIED = {
    "public": "~         .      Y        Y        Y         .       .       Y     .",
    "unlisted": "~         .      Y        Y        Y         .       .       Y     .",
    "private": "~         .      Y        .        Y         .       .       .     .",
    "direct": "~         .      .        .        Y         .       .       .     .",
}
# Search: public posts for everyone; a signed-in person also finds posts they wrote or were
# mentioned in (as Mastodon does) — but unlisted ones are never found by anyone else.
IN_SEARCH = {
    "public": "Y         Y      Y        Y        Y         .       .       Y     .",
    "unlisted": ".         Y      .        .        Y         .       .       .     .",
    "private": ".         Y      .        .        Y         .       .       .     .",
    "direct": ".         Y      .        .        Y         .       .       .     .",
}

# ActivityPub GETs (the post's URI, the outbox) by an unsigned fetch: what an anonymous visitor
# may open. Only "anonymous" exists today: a signed-in browser's cookie doesn't count there
# (tests/federation/test_objects.py), and fetches signed by a follower's server come with HTTP
# signature verification (federation.routes.fetch_viewer), when these "~" get their answers.
AS2_UNSIGNED = {
    "public": "Y         ~      ~        ~        ~         ~       ~       ~     ~",
    "unlisted": "Y         ~      ~        ~        ~         ~       ~       ~     ~",
    "private": ".         ~      ~        ~        ~         ~       ~       ~     ~",
    "direct": ".         ~      ~        ~        ~         ~       ~       ~     ~",
}


def expected(table: dict[str, str], audience: str, viewer: str) -> bool | None:
    """The table's answer (None where the surface does not exist for this viewer)."""
    cells = table[audience].split()
    assert len(cells) == len(VIEWERS), f"bad row {audience!r}"
    cell = cells[VIEWERS.index(viewer)]
    return None if cell == "~" else cell == "Y"


# --- the world ----------------------------------------------------------------------------


@dataclass
class World:
    """Everything the matrix looks at."""

    rt: Runtime
    people: dict[str, Account]
    host_root: Post
    matrix_post: dict[str, Post]  # audience -> the author's top-level post
    thread_reply: dict[str, Post]  # audience -> the author's reply to host_root
    replies_to: dict[tuple[str, str], Post]  # (audience, viewer) -> reply to viewer's post
    boosts: dict[str, Post]  # audience -> the booster's boost (public and unlisted only)
    browsers: dict[str, Browser]
    sentinel: Post  # a public post by the host (ends a stream read for anonymous viewers)
    cache: dict[Any, Any] = field(default_factory=dict)

    def viewer(self, name: str) -> policy.Viewer:
        if name == "anonymous":
            return policy.ANONYMOUS
        return policy.Viewer(self.people[name].id, is_admin=name == "admin")

    async def page(self, who: str, url: str) -> httpx.Response:
        """GET a page as `who` (cached: several tests read the same page)."""
        key = ("page", who, url)
        if key not in self.cache:
            self.cache[key] = await self.browsers[who].get(url)
        return self.cache[key]


USERNAMES = {"admin": "warden"}  # "admin" itself is a reserved username
MENTIONS = "@mentioned @blocked @blocker @muter"
REPLIED_TO = ("follower", "stranger", "admin", "blocked", "blocker")


async def _build(db: AsyncSession) -> dict[str, Any]:
    """People, graph and posts; the order matters and is explained inline."""
    names = ["author", "host", "booster", *VIEWERS[2:]]
    people = {n: await person(db, USERNAMES.get(n, n), admin=n == "admin") for n in names}
    author = people["author"]
    await graph.follow(db, people["booster"].id, author.id)
    for v in VIEWERS[2:]:
        await graph.follow(db, people[v].id, people["booster"].id)
    await graph.follow(db, people["follower"].id, author.id)
    await graph.follow(db, people["muter"].id, author.id)
    await graph.mute(db, people["muter"].id, author.id, notifications_too=True)
    host_root = await post(db, people["host"], "Thread root")
    # Replies to people's own posts, written before the blocks exist (so the blocked ones'
    # notifications are stored and must be hidden when listed).
    own_posts = {v: await post(db, people[v], f"A post by {v}") for v in REPLIED_TO}
    replies_to = {
        (a, v): await post(
            db, author, f"Reply to {v}", visibility=Visibility(a), reply_to=own_posts[v]
        )
        for a in AUDIENCES
        for v in REPLIED_TO
    }
    await graph.block(db, author.id, people["blocked"].id)
    await graph.block(db, people["blocker"].id, author.id)
    # A follow row that survived a block (a federation race, say): policy must still hide.
    for v in ("blocked", "blocker"):
        db.add(Follow(follower_id=people[v].id, followee_id=author.id))
    await db.commit()
    thread_reply = {
        a: await post(
            db, author, f"In thread {MENTIONS}", visibility=Visibility(a), reply_to=host_root
        )
        for a in AUDIENCES
    }
    # Top-level posts last, so they are the newest on every page.
    matrix_post = {
        a: await post(db, author, f"Matrix {MENTIONS} #matrix", visibility=Visibility(a))
        for a in AUDIENCES
    }
    booster = policy.Viewer(people["booster"].id)
    boosts = {a: await posts.boost(db, booster, matrix_post[a].id) for a in ("public", "unlisted")}
    sentinel = await post(db, people["host"], "Sentinel #elsewhere")
    return dict(
        boosts=boosts,
        people=people,
        host_root=host_root,
        matrix_post=matrix_post,
        thread_reply=thread_reply,
        replies_to=replies_to,
        sentinel=sentinel,
    )


@pytest.fixture(scope="module")
async def world(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    settings = Settings(
        database_url=database_url,
        var_dir=Path(tmp_path_factory.mktemp("matrix")),
        secret_key="test-secret-key-not-for-production",
        domain="kith.test",
        run_worker=False,
        redis_url="",
    )
    rt = Runtime.from_settings(settings)
    await _wipe(rt)
    async with rt.sessions() as db:
        built = await _build(db)
    app = create_app(settings)
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 1234))
        browsers: dict[str, Browser] = {}
        for name in VIEWERS:
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://kith.test")
            )
            browsers[name] = Browser(client)
            if name != "anonymous":
                r = await browsers[name].sign_in(USERNAMES.get(name, name))
                assert r.status_code == 303, r.text
        yield World(rt=rt, browsers=browsers, **built)
    await rt.close()


# --- surfaces -----------------------------------------------------------------------------

Check = Callable[[World, str, str], Awaitable[bool]]


def _card(p: Post) -> str:
    return f'data-id="{p.id}"'


async def post_page(w: World, audience: str, who: str) -> bool:
    """GET /@author/ID: 200 with the post, or 404."""
    p = w.matrix_post[audience]
    r = await w.page(who, f"/@author/{p.id}")
    assert r.status_code in (200, 404), r.status_code
    assert (r.status_code == 200) == (_card(p) in r.text)
    return r.status_code == 200


async def can_see_post(w: World, audience: str, who: str) -> bool:
    """The per-object check every single-post surface asks."""
    async with w.rt.sessions() as db:
        return await policy.can_see_post(db, w.viewer(who), w.matrix_post[audience])


async def thread_page(w: World, audience: str, who: str) -> bool:
    """The host's thread page: is the author's reply among the descendants?"""
    r = await w.page(who, f"/@host/{w.host_root.id}")
    assert r.status_code == 200
    return _card(w.thread_reply[audience]) in r.text


async def thread_service(w: World, audience: str, who: str) -> bool:
    async with w.rt.sessions() as db:
        _, descendants = await timelines.thread(db, w.viewer(who), w.host_root)
    return w.thread_reply[audience].id in {p.id for p, _ in descendants}


async def profile_page(w: World, audience: str, who: str) -> bool:
    r = await w.page(who, "/@author")
    assert r.status_code == 200
    return _card(w.matrix_post[audience]) in r.text


async def profile_service(w: World, audience: str, who: str) -> bool:
    async with w.rt.sessions() as db:
        page = await timelines.profile(db, w.viewer(who), w.people["author"], limit=40)
    return w.matrix_post[audience].id in {p.id for p in page.posts}


async def home_service(w: World, audience: str, who: str) -> bool:
    async with w.rt.sessions() as db:
        page = await timelines.home(db, w.viewer(who), limit=40, shape=ENTITIES)
    return w.matrix_post[audience].id in {p.id for p in page.posts}


async def own_reply_in_home(w: World, audience: str, who: str) -> bool:
    async with w.rt.sessions() as db:
        page = await timelines.home(db, w.viewer(who), limit=40, shape=ENTITIES)
    return w.thread_reply[audience].id in {p.id for p in page.posts}


async def boost_in_home(w: World, audience: str, who: str) -> bool:
    boost = w.boosts.get(audience)
    if boost is None:
        return False
    async with w.rt.sessions() as db:
        page = await timelines.home(db, w.viewer(who), limit=40, shape=ENTITIES)
    return boost.id in {p.id for p in page.posts}


async def boost_in_home_stream(w: World, audience: str, who: str) -> bool:
    boost = w.boosts.get(audience)
    if boost is None:
        return False
    event = {"type": "post.created", "post_id": boost.id, "account_id": boost.account_id}
    async with w.rt.sessions() as db:
        return await stream._wants(db, w.viewer(who), "home", event)


async def home_page(w: World, audience: str, who: str) -> bool:
    r = await w.page(who, "/home")
    assert r.status_code == 200
    return _card(w.matrix_post[audience]) in r.text


async def local_service(w: World, audience: str, who: str) -> bool:
    async with w.rt.sessions() as db:
        page = await timelines.local(db, w.viewer(who), limit=40)
    return w.matrix_post[audience].id in {p.id for p in page.posts}


async def local_page(w: World, audience: str, who: str) -> bool:
    r = await w.page(who, "/local")
    assert r.status_code == 200
    return _card(w.matrix_post[audience]) in r.text


async def hashtag_service(w: World, audience: str, who: str) -> bool:
    async with w.rt.sessions() as db:
        page = await timelines.hashtag(db, w.viewer(who), "matrix", limit=40, shape=ENTITIES)
    return w.matrix_post[audience].id in {p.id for p in page.posts}


async def hashtag_page(w: World, audience: str, who: str) -> bool:
    r = await w.page(who, "/tags/matrix")
    assert r.status_code == 200
    return _card(w.matrix_post[audience]) in r.text


def _notification_posts(w: World, audience: str, who: str) -> set[int]:
    """The posts of this audience a notification of `who` could be about."""
    ids = {w.matrix_post[audience].id, w.thread_reply[audience].id}
    if (audience, who) in w.replies_to:
        ids.add(w.replies_to[(audience, who)].id)
    return ids


async def notifications_service(w: World, audience: str, who: str) -> bool:
    async with w.rt.sessions() as db:
        rows = await notifications.list_notifications(
            db, w.viewer(who), types=["mention", "reply"], limit=200
        )
    return bool({n.post_id for n in rows} & _notification_posts(w, audience, who))


async def notifications_page(w: World, audience: str, who: str) -> bool:
    r = await w.page(who, "/notifications?type=mentions")
    assert r.status_code == 200
    return any(f'data-id="{pid}"' in r.text for pid in _notification_posts(w, audience, who))


async def _wants(w: World, audience: str, who: str, feed: str) -> bool:
    event = {
        "type": "post.created",
        "post_id": w.matrix_post[audience].id,
        "account_id": w.people["author"].id,
    }
    async with w.rt.sessions() as db:
        return await stream._wants(db, w.viewer(who), feed, event)


async def stream_home_filter(w: World, audience: str, who: str) -> bool:
    return await _wants(w, audience, who, "home")


async def stream_local_filter(w: World, audience: str, who: str) -> bool:
    return await _wants(w, audience, who, "local")


async def _streamed_ids(w: World, who: str, feed: str) -> set[int]:
    """Run the real SSE event generator for `who`, publish every matrix post's event on the
    bus, then a sentinel, and return the post ids the stream sent."""
    key = ("stream", who, feed)
    if key in w.cache:
        return w.cache[key]
    viewer = w.viewer(who)
    # The stream asks again whether its session signs `who` in: give it the browser's.
    token = w.browsers[who].client.cookies.get("kith_session") if who in w.browsers else None
    events = stream._events(w.rt, viewer, feed, token)
    got: set[int] = set()
    try:
        # Read up to `ready`: from then on the stream listens and misses nothing.
        async for chunk in events:
            if chunk.startswith("event: ready"):
                break
        for a in AUDIENCES:
            p = w.matrix_post[a]
            await w.rt.bus.publish(
                "posts", {"type": "post.created", "post_id": p.id, "account_id": p.account_id}
            )
        if viewer.account_id is not None:
            await w.rt.bus.publish(f"user:{viewer.account_id}", {"type": "notification", "id": 0})
        else:
            await w.rt.bus.publish(
                "posts", {"type": "post.created", "post_id": w.sentinel.id, "account_id": 0}
            )
        while True:
            chunk = await asyncio.wait_for(anext(events), 5)
            if chunk.startswith("event: notification"):
                break
            if chunk.startswith("event: update"):
                pid = int(chunk.split('"id": "')[1].split('"')[0])
                if pid == w.sentinel.id:
                    break
                got.add(pid)
    finally:
        await events.aclose()
    w.cache[key] = got
    return got


async def stream_home_sse(w: World, audience: str, who: str) -> bool:
    return w.matrix_post[audience].id in await _streamed_ids(w, who, "home")


async def stream_local_sse(w: World, audience: str, who: str) -> bool:
    return w.matrix_post[audience].id in await _streamed_ids(w, who, "local")


async def search_service(w: World, audience: str, who: str) -> bool:
    search = pytest.importorskip("kith.search.service")
    if not hasattr(search, "search_posts"):
        pytest.skip("kith.search.service.search_posts is not there yet")
    async with w.rt.sessions() as db:
        found = await search.search_posts(db, w.viewer(who), "Matrix", limit=40)
    return w.matrix_post[audience].id in {getattr(p, "id", p) for p in found}


AS2_ACCEPT = {"Accept": "application/activity+json"}


async def as2_post_get(w: World, audience: str, who: str) -> bool:
    """GET the post's ActivityPub URI (and its page URL negotiated to AS2): 200 or 404."""
    p = w.matrix_post[audience]
    client = w.browsers[who].client
    answers = []
    for url in (f"/users/author/statuses/{p.id}", f"/@author/{p.id}"):
        r = await client.get(url, headers=AS2_ACCEPT)
        assert r.status_code in (200, 404), (url, r.status_code)
        assert (r.status_code == 200) == (f"/statuses/{p.id}" in r.text)
        answers.append(r.status_code == 200)
    assert answers[0] == answers[1]
    return answers[0]


async def as2_outbox(w: World, audience: str, who: str) -> bool:
    """The author's outbox, first page: is the post's Create there?"""
    key = ("outbox", who)
    if key not in w.cache:
        r = await w.browsers[who].client.get("/users/author/outbox?page=true", headers=AS2_ACCEPT)
        assert r.status_code == 200
        w.cache[key] = r.json()["orderedItems"]
    p = w.matrix_post[audience]
    return any(
        i["type"] == "Create" and i["object"]["id"].endswith(f"/statuses/{p.id}")
        for i in w.cache[key]
    )


SURFACES: dict[str, tuple[Check, dict[str, str]]] = {
    "post page": (post_page, OPENS_BY_LINK),
    "policy.can_see_post": (can_see_post, OPENS_BY_LINK),
    "thread page": (thread_page, IN_THREAD),
    "thread service": (thread_service, IN_THREAD),
    "profile page": (profile_page, ON_PROFILE),
    "profile service": (profile_service, ON_PROFILE),
    "home page": (home_page, IN_HOME),
    "home service": (home_service, IN_HOME),
    "home service, own reply": (own_reply_in_home, OWN_REPLY_IN_HOME),
    "home service, boost": (boost_in_home, BOOST_IN_HOME),
    "stream home filter, boost": (boost_in_home_stream, BOOST_IN_HOME),
    "local page": (local_page, IN_PUBLIC_LISTS),
    "local service": (local_service, IN_PUBLIC_LISTS),
    "hashtag page": (hashtag_page, IN_PUBLIC_LISTS),
    "hashtag service": (hashtag_service, IN_PUBLIC_LISTS),
    "notifications page": (notifications_page, NOTIFIED),
    "notifications service": (notifications_service, NOTIFIED),
    "stream home filter": (stream_home_filter, IN_HOME),
    "stream home SSE": (stream_home_sse, IN_HOME),
    "stream local filter": (stream_local_filter, IN_PUBLIC_LISTS),
    "stream local SSE": (stream_local_sse, IN_PUBLIC_LISTS),
    "search": (search_service, IN_SEARCH),
    "ActivityPub post GET": (as2_post_get, AS2_UNSIGNED),
    "ActivityPub outbox": (as2_outbox, AS2_UNSIGNED),
}

CASES = [
    pytest.param(surface, audience, who, id=f"{surface}-{audience}-{who}")
    for surface, (_, table) in SURFACES.items()
    for audience in AUDIENCES
    for who in VIEWERS
    if expected(table, audience, who) is not None
]


@pytest.mark.parametrize(("surface", "audience", "who"), CASES)
async def test_visibility_matrix(world: World, surface: str, audience: str, who: str) -> None:
    # Given the world above, when `who` looks at `surface`
    check, table = SURFACES[surface]
    seen = await check(world, audience, who)
    # Then they see the post of this audience exactly when the table says so
    want = expected(table, audience, who)
    assert seen == want, f"{who} {'should' if want else 'should not'} see a {audience} post"


@pytest.mark.parametrize("who", VIEWERS)
async def test_lists_and_single_checks_agree(world: World, who: str) -> None:
    # Given every post the author wrote (tops, thread replies, replies to people)
    viewer = world.viewer(who)
    everything = [
        *world.matrix_post.values(),
        *world.thread_reply.values(),
        *world.replies_to.values(),
    ]
    async with world.rt.sessions() as db:
        # When the profile's full listing (SQL clause) and the per-post check each decide
        page = await timelines.profile(db, viewer, world.people["author"], tab="replies", limit=40)
        listed = {p.id for p in page.posts}
        one_by_one = {p.id for p in everything if await policy.can_see_post(db, viewer, p)}
    # Then they agree on every post
    assert listed == one_by_one


async def test_anonymous_visitor__has_no_home_stream_or_notifications(world: World) -> None:
    # Given nobody signed in, when they open the signed-in-only surfaces
    anon = world.browsers["anonymous"]
    for url in ("/home", "/notifications", "/stream/home"):
        r = await anon.client.get(url)
        # Then they are sent to sign in, and see nothing
        assert r.status_code in (303, 401), (url, r.status_code)
        assert "Matrix" not in r.text


@pytest.mark.parametrize(
    ("audience", "error"), [("private", ValidationFailed), ("direct", NotFound)]
)
async def test_boost__of_followers_only_or_direct_post__is_refused(
    world: World, audience: str, error: type[Exception]
) -> None:
    # Given the booster, who follows the author (so sees the followers-only post, not the
    # direct one)
    booster = policy.Viewer(world.people["booster"].id)
    original = world.matrix_post[audience]
    async with world.rt.sessions() as db:
        # When they try to boost it, then it is refused
        with pytest.raises(error):
            await posts.boost(db, booster, original.id)
        # And no boost was written
        written = await db.scalar(select(func.count()).where(Post.reblog_of_id == original.id))
    assert written == 0


async def test_suspended_author__vanishes_from_every_surface(world: World) -> None:
    # Given the author is suspended (this test runs last: it changes the world, then undoes it)
    everything = [
        *world.matrix_post.values(),
        *world.thread_reply.values(),
        *world.replies_to.values(),
        *world.boosts.values(),
    ]
    wanted = {p.id for p in everything}
    async with world.rt.sessions() as db:
        author = await db.get(Account, world.people["author"].id)
        assert author is not None
        await moderation.suspend(db, author)
    try:
        for who in VIEWERS:
            v = world.viewer(who)
            # Then no one opens any of its posts, by link or by page
            r = await world.browsers[who].client.get(f"/@author/{world.matrix_post['public'].id}")
            assert r.status_code == 404, who
            r = await world.browsers[who].client.get(
                f"/users/author/statuses/{world.matrix_post['public'].id}", headers=AS2_ACCEPT
            )
            assert r.status_code == 404, who
            async with world.rt.sessions() as db:
                for p in everything:
                    assert not await policy.can_see_post(db, v, p), who
                # Nor finds them in any list
                lists = [
                    await timelines.local(db, v, limit=40),
                    await timelines.hashtag(db, v, "matrix", limit=40, shape=ENTITIES),
                    await timelines.profile(db, v, world.people["author"], tab="replies"),
                ]
                if v.account_id is not None:
                    lists.append(await timelines.home(db, v, limit=40, shape=ENTITIES))
                for page in lists:
                    assert not wanted & {p.id for p in page.posts}, who
                if v.account_id is None:
                    continue
                # And nothing the author did shows in notifications or their unread count
                rows = await notifications.list_notifications(db, v, limit=200)
                assert world.people["author"].id not in {n.from_account_id for n in rows}, who
                user = await accounts.user_for_account(db, v.account_id)
                assert user is not None
                listed_unread = [n for n in rows if n.id > user.notifications_read_id]
                assert await notifications.unread_count(db, user) == len(listed_unread), who
    finally:
        async with world.rt.sessions() as db:
            author = await db.get(Account, world.people["author"].id)
            assert author is not None
            await moderation.unsuspend(db, author)
