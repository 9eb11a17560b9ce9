"""Two real Kith instances talking ActivityPub: two `kith serve` processes on 127.0.0.2 and
127.0.0.3, each with its own database (SQLite files, or two PostgreSQL databases when
KITH_TEST_DB=postgres), real HTTP between them, each allow-listing the other. Everything is
driven through their Mastodon APIs and checked by polling with a deadline.

People: on A, ana (locked), al and cy, ed (moves to ned on B), fay (suspended), gil
(deletes his account) and ada (an admin); on B, bea
(follows ana, with approval), bo (follows no one until the move and suspension tests), dee
(follows cy, then is blocked), ned (ed's new account) and hal (follows gil)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import func, select

from kith.config import Settings
from kith.federation.models import InboxItem, OutboundActivity
from kith.migrate import upgrade
from kith.oauth import service as oauth
from kith.posts.models import Post
from kith.runtime import Runtime
from tests.browser.servers import KithServer, _kith_command, server_env
from tests.conftest import BACKEND, _create_pg_database, _drop_pg_database
from tests.world import PASSWORD, Browser, person

pytestmark = pytest.mark.slow

DEADLINE = 25.0  # seconds any one cross-instance effect may take
START_TIMEOUT = 90.0
T = TypeVar("T")


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Instance:
    """One `kith serve` process with its own database, and an API client per person."""

    label: str
    host: str
    port: int
    workdir: Path
    database_url: str
    peer: str = ""  # host:port of the other instance (allow-listed)
    process: KithServer | None = None
    rt: Runtime | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def domain(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.domain}"

    def settings(self) -> Settings:
        return Settings(database_url=self.database_url, domain=self.domain, run_worker=False)

    def start(self) -> None:
        """Start `kith serve` (same port and database every time) and wait until it answers."""
        env = server_env(
            self.workdir,
            self.database_url,
            domain=self.domain,
            federation_allowed_hosts=self.peer,
            federation_delivery_retry_seconds="1",
            worker_idle_seconds="0.1",
            redis_url="",
        )
        log_path = self.workdir / "serve.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [*_kith_command(), "serve", "--host", self.host, "--port", str(self.port)],
                env=env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.process = KithServer(self.base_url, self.domain, process, log_path)
        # Generous: on a loaded machine importing the app alone can take many seconds.
        self.process.wait_until_answering(timeout=START_TIMEOUT)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def api(self, name: str) -> httpx.AsyncClient:
        """A Mastodon API client acting as `name`."""
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.tokens[name]}"},
            timeout=15,
        )

    async def count_posts(self, *where: Any) -> int:
        assert self.rt is not None
        async with self.rt.sessions() as db:
            return int(await db.scalar(select(func.count()).select_from(Post).where(*where)) or 0)


@dataclass
class Pair:
    a: Instance
    b: Instance

    def handle(self, name: str) -> str:
        """The fediverse handle of a person on A or B."""
        on = self.a if name in self.a.tokens else self.b
        return f"@{name}@{on.domain}"


async def _database() -> tuple[str, str | None]:
    if BACKEND == "postgres":
        url, name = await _create_pg_database()
        return url, name
    return "", None


@pytest.fixture(scope="module")
async def pair(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pair]:
    root = tmp_path_factory.mktemp("two-instances")
    made: list[str] = []
    instances = []
    for label, host in (("a", "127.0.0.2"), ("b", "127.0.0.3")):
        workdir = root / label
        workdir.mkdir()
        url, pg_name = await _database()
        if pg_name:
            made.append(pg_name)
        else:
            url = f"sqlite+aiosqlite:///{workdir / 'kith.db'}"
        await asyncio.to_thread(upgrade, url)
        instances.append(Instance(label, host, free_port(host), workdir, url))
    a, b = instances
    a.peer, b.peer = b.domain, a.domain
    people = [
        (a, [("ana", True), ("al", False), ("cy", False), ("ed", False), ("fay", False)]),
        (a, [("gil", False)]),
        (a, [("ada", False)]),
        (b, [("bea", False), ("bo", False), ("dee", False), ("ned", False), ("hal", False)]),
    ]
    try:
        for inst, names in people:
            inst.rt = Runtime.from_settings(inst.settings())
            async with inst.rt.sessions() as db:
                for name, locked in names:
                    account = await person(db, name, locked=locked, admin=name == "ada")
                    issued = await oauth.create_personal_token(
                        db, account, "two-instances", "read write follow"
                    )
                    inst.tokens[name] = issued.access_token
        await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
        yield Pair(a, b)
    finally:
        for inst in instances:
            inst.stop()
            if inst.rt is not None:
                await inst.rt.close()
        for name in made:
            await _drop_pg_database(name)


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str) -> T:
    """Poll `probe` until it gives something truthy, or fail after DEADLINE seconds."""
    deadline = time.monotonic() + DEADLINE
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.2)


async def ok(response: Awaitable[httpx.Response]) -> Any:
    r = await response
    assert r.status_code == 200, (r.request.method, r.request.url, r.status_code, r.text)
    return r.json()


async def resolve(client: httpx.AsyncClient, handle: str) -> str:
    """The local id of a remote account, found by search (WebFinger through the server)."""
    found = await ok(
        client.get("/api/v2/search", params={"q": handle, "resolve": "true", "type": "accounts"})
    )
    assert len(found["accounts"]) == 1, found
    return str(found["accounts"][0]["id"])


async def relationship(client: httpx.AsyncClient, account_id: str) -> dict[str, Any]:
    [rel] = await ok(client.get("/api/v1/accounts/relationships", params={"id[]": account_id}))
    return dict(rel)


async def post(
    client: httpx.AsyncClient, status: str, visibility: str = "public", **kw: Any
) -> Any:
    return await ok(
        client.post("/api/v1/statuses", json={"status": status, "visibility": visibility, **kw})
    )


async def find_status(client: httpx.AsyncClient, path: str, marker: str) -> dict[str, Any] | None:
    """The first status in a timeline (or notifications) whose content has `marker`."""
    items = await ok(client.get(path, params={"limit": 40}))
    for item in items:
        status = item.get("status") if "status" in item and "content" not in item else item
        if status and marker in status["content"]:
            return dict(status)
    return None


async def follow(pair: Pair, follower: str, followee: str) -> tuple[str, str]:
    """`follower` on B follows `followee` on A; the follow request is approved on A when the
    account is locked. Returns (followee's id on B, follower's id on A)."""
    async with pair.b.api(follower) as at_b, pair.a.api(followee) as at_a:
        remote_id = await resolve(at_b, pair.handle(followee))
        rel = await ok(at_b.post(f"/api/v1/accounts/{remote_id}/follow"))
        locked = (await ok(at_a.get("/api/v1/accounts/verify_credentials")))["locked"]
        follower_id = ""
        if locked:
            assert rel["requested"] and not rel["following"]

            async def request_arrived() -> str | None:
                requests = await ok(at_a.get("/api/v1/follow_requests"))
                return next((str(r["id"]) for r in requests if r["username"] == follower), None)

            follower_id = await eventually(request_arrived, f"{follower}'s follow request on A")
            await ok(at_a.post(f"/api/v1/follow_requests/{follower_id}/authorize"))

        async def accepted() -> bool:
            return bool((await relationship(at_b, remote_id))["following"])

        await eventually(accepted, f"B learning that {follower} follows {followee}")
        if not follower_id:
            follower_id = await resolve(at_a, pair.handle(follower))
        return remote_id, follower_id


@pytest.fixture(scope="module")
async def bea_follows_ana(pair: Pair) -> tuple[str, str]:
    return await follow(pair, "bea", "ana")


async def test_follow__of_a_locked_account_waits_for_approval(
    pair: Pair, bea_follows_ana: tuple[str, str]
) -> None:
    # Given bea (on B) asked to follow ana (locked, on A), and ana approved (the fixture)
    ana_at_b, bea_at_a = bea_follows_ana
    async with pair.a.api("ana") as at_a, pair.b.api("bea") as at_b:
        # Then A lists bea among ana's followers, and B has bea following ana
        ana_id = (await ok(at_a.get("/api/v1/accounts/verify_credentials")))["id"]
        followers = await ok(at_a.get(f"/api/v1/accounts/{ana_id}/followers"))
        assert [f["acct"] for f in followers] == [pair.handle("bea")[1:]]
        rel = await relationship(at_b, ana_at_b)
        assert rel["following"] and not rel["requested"]


async def test_each_visibility_reaches_exactly_its_audience(
    pair: Pair, bea_follows_ana: tuple[str, str]
) -> None:
    # Given bea on B follows ana on A; bo on B follows no one; al on A has no remote followers
    async with (
        pair.a.api("ana") as ana,
        pair.a.api("al") as al,
        pair.b.api("bea") as bea,
        pair.b.api("bo") as bo,
    ):
        # When ana posts to each audience (one direct post to bo on B, one to al here),
        # and al posts to his followers
        await post(ana, "vis-public")
        await post(ana, "vis-unlisted", "unlisted")
        await post(ana, "vis-followers", "private")
        await post(ana, f"vis-direct-bo {pair.handle('bo')}", "direct")
        await post(ana, "vis-direct-al @al", "direct")
        await post(al, "vis-al-followers", "private")
        # Then bea's home on B gets the public, unlisted and followers-only posts
        for marker in ("vis-public", "vis-unlisted", "vis-followers"):
            await eventually(
                lambda m=marker: find_status(bea, "/api/v1/timelines/home", m),  # type: ignore[misc]
                f"{marker} in bea's home on B",
            )
        # And bo is told of the direct post that mentions him
        direct = await eventually(
            lambda: find_status(bo, "/api/v1/notifications", "vis-direct-bo"),
            "the mention notification of bo on B",
        )
        assert direct["visibility"] == "direct"
        # And bea sees neither direct post, bo not the followers-only one
        assert await find_status(bea, "/api/v1/timelines/home", "vis-direct") is None
        bo_status = await bo.get(f"/api/v1/statuses/{direct['id']}")
        assert bo_status.status_code == 200
        bea_status = await bea.get(f"/api/v1/statuses/{direct['id']}")
        assert bea_status.status_code == 404
    # And the direct post to al and al's followers-only post were never sent to B
    assert await pair.b.count_posts(Post.content_html.contains("vis-direct-al")) == 0
    assert await pair.b.count_posts(Post.content_html.contains("vis-al-followers")) == 0
    assert pair.a.rt is not None
    async with pair.a.rt.sessions() as db:
        sent = (await db.scalars(select(OutboundActivity.document))).all()
    contents = " ".join(str(d.get("object", {})) for d in sent)
    assert "vis-direct-al" not in contents and "vis-al-followers" not in contents
    # And each post that did go arrived once
    for marker in ("vis-public", "vis-unlisted", "vis-followers", "vis-direct-bo"):
        assert await pair.b.count_posts(Post.content_html.contains(marker)) == 1


async def test_reply_thread_across_instances(pair: Pair, bea_follows_ana: tuple[str, str]) -> None:
    async with pair.a.api("ana") as ana, pair.b.api("bea") as bea:
        # Given ana's public post, as bea sees it on B
        original = await post(ana, "thread-root")
        at_b = await eventually(
            lambda: find_status(bea, "/api/v1/timelines/home", "thread-root"), "root on B"
        )
        # When bea replies on B
        reply = await post(bea, f"{pair.handle('ana')} thread-reply", in_reply_to_id=at_b["id"])
        assert reply["in_reply_to_id"] == at_b["id"]

        # Then on A the reply hangs under ana's post, and ana is notified
        async def reply_on_a() -> list[Any] | None:
            context = await ok(ana.get(f"/api/v1/statuses/{original['id']}/context"))
            return [s for s in context["descendants"] if "thread-reply" in s["content"]] or None

        [reply_at_a] = await eventually(reply_on_a, "bea's reply under ana's post on A")
        assert reply_at_a["account"]["acct"] == pair.handle("bea")[1:]
        assert await find_status(ana, "/api/v1/notifications", "thread-reply")
        # When ana answers the reply on A
        await post(ana, f"{pair.handle('bea')} thread-answer", in_reply_to_id=reply_at_a["id"])

        # Then on B the thread has three posts in order
        async def thread_on_b() -> list[str] | None:
            context = await ok(bea.get(f"/api/v1/statuses/{reply['id']}/context"))
            if not context["descendants"]:
                return None
            return [s["content"] for s in context["ancestors"] + context["descendants"]]

        thread = await eventually(thread_on_b, "ana's answer under bea's reply on B")
        assert "thread-root" in thread[0] and "thread-answer" in thread[1]


async def test_like_boost_and_their_undo(pair: Pair, bea_follows_ana: tuple[str, str]) -> None:
    async with pair.a.api("ana") as ana, pair.b.api("bea") as bea:
        # Given ana's post as bea sees it on B
        original = await post(ana, "likeable")
        at_b = await eventually(
            lambda: find_status(bea, "/api/v1/timelines/home", "likeable"), "post on B"
        )

        async def counts() -> tuple[int, int]:
            s = await ok(ana.get(f"/api/v1/statuses/{original['id']}"))
            return s["favourites_count"], s["reblogs_count"]

        # When bea likes and boosts it on B
        await ok(bea.post(f"/api/v1/statuses/{at_b['id']}/favourite"))
        await ok(bea.post(f"/api/v1/statuses/{at_b['id']}/reblog"))
        # Then A counts both and tells ana
        await eventually(lambda: _equal(counts(), (1, 1)), "like and boost counted on A")
        kinds = {n["type"] for n in await ok(ana.get("/api/v1/notifications"))}
        assert {"favourite", "reblog"} <= kinds
        # When bea takes both back
        await ok(bea.post(f"/api/v1/statuses/{at_b['id']}/unfavourite"))
        await ok(bea.post(f"/api/v1/statuses/{at_b['id']}/unreblog"))
        # Then A counts neither
        await eventually(lambda: _equal(counts(), (0, 0)), "like and boost undone on A")


async def _equal(value: Awaitable[T], expected: T) -> bool:
    return await value == expected


async def test_edit_and_delete_propagate(pair: Pair, bea_follows_ana: tuple[str, str]) -> None:
    async with pair.a.api("ana") as ana, pair.b.api("bea") as bea:
        # Given ana's post as bea sees it on B
        original = await post(ana, "draft-text")
        at_b = await eventually(
            lambda: find_status(bea, "/api/v1/timelines/home", "draft-text"), "post on B"
        )
        # When ana edits it
        r = await ana.put(f"/api/v1/statuses/{original['id']}", json={"status": "final-text"})
        assert r.status_code == 200, r.text

        # Then B shows the new text, and the old one in the history
        async def edited() -> bool:
            s = await ok(bea.get(f"/api/v1/statuses/{at_b['id']}"))
            return "final-text" in s["content"] and s["edited_at"] is not None

        await eventually(edited, "the edit on B")
        history = await ok(bea.get(f"/api/v1/statuses/{at_b['id']}/history"))
        assert any("draft-text" in h["content"] for h in history)
        # When ana deletes it
        await ok(ana.delete(f"/api/v1/statuses/{original['id']}"))

        # Then it is gone on B
        async def gone() -> bool:
            return (await bea.get(f"/api/v1/statuses/{at_b['id']}")).status_code == 404

        await eventually(gone, "the delete on B")
    assert await pair.b.count_posts(Post.content_html.contains("final-text")) == 0


async def test_block__ends_the_follow_and_the_deliveries(pair: Pair) -> None:
    # Given dee on B follows cy (an open account on A)
    cy_at_b, dee_at_a = await follow(pair, "dee", "cy")
    async with pair.a.api("cy") as cy, pair.b.api("dee") as dee:
        # When cy blocks dee
        await ok(cy.post(f"/api/v1/accounts/{dee_at_a}/block"))

        # Then B learns it: dee no longer follows cy
        async def unfollowed() -> bool:
            return not (await relationship(dee, cy_at_b))["following"]

        await eventually(unfollowed, "the block ending dee's follow on B")
        # And cy's next followers-only post goes nowhere near B
        await post(cy, "after-block", "private")
    assert pair.a.rt is not None
    async with pair.a.rt.sessions() as db:
        sent = (await db.scalars(select(OutboundActivity.document))).all()
    assert not any("after-block" in str(d.get("object", {})) for d in sent)


async def test_b_down__receives_everything_exactly_once_when_back(
    pair: Pair, bea_follows_ana: tuple[str, str]
) -> None:
    assert pair.a.rt is not None and pair.b.rt is not None
    async with pair.a.api("ana") as ana:
        # Given B is stopped
        pair.b.stop()
        try:
            # When ana posts twice and edits one post meanwhile
            first = await post(ana, "while-down-1")
            await post(ana, "while-down-2", "private")
            r = await ana.put(
                f"/api/v1/statuses/{first['id']}", json={"status": "while-down-1 edited"}
            )
            assert r.status_code == 200, r.text
            # And A has tried (and failed) to deliver at least once
            await eventually(lambda: _failed_delivery(pair.a), "A failing to reach B")
        finally:
            # When B starts again
            await asyncio.to_thread(pair.b.start)
    async with pair.a.rt.sessions() as db:
        rows = (
            await db.execute(select(OutboundActivity.activity_id, OutboundActivity.document))
        ).all()
    sent = [activity_id for activity_id, doc in rows if "while-down" in json.dumps(doc)]
    assert len(set(sent)) == 3  # two Creates and an Update
    # Then once A's queue has drained, B holds every one of those activities exactly once
    await eventually(lambda: _queue_empty(pair.a), "A's delivery queue to drain")
    async with pair.b.rt.sessions() as db:
        received = (
            await db.scalars(select(InboxItem.activity_id).where(InboxItem.activity_id.in_(sent)))
        ).all()
    assert sorted(received) == sorted(set(sent))

    # And once B's worker has processed them, each post exists once on B, where bea sees it
    async def both_stored() -> bool:
        for text in ("while-down-1", "while-down-2"):
            if await pair.b.count_posts(Post.content_html.contains(text)) < 1:
                return False
        return True

    await eventually(both_stored, "B storing both posts")
    assert await pair.b.count_posts(Post.content_html.contains("while-down-1")) == 1
    assert await pair.b.count_posts(Post.content_html.contains("while-down-2")) == 1
    async with pair.b.api("bea") as bea:
        assert await find_status(bea, "/api/v1/timelines/home", "while-down-2")
        assert await find_status(bea, "/api/v1/timelines/home", "while-down-1")


async def _failed_delivery(inst: Instance) -> bool:
    from kith.federation.models import DeliveryHost

    assert inst.rt is not None
    async with inst.rt.sessions() as db:
        host = await db.scalar(select(DeliveryHost))
        return host is not None and host.consecutive_failures > 0


async def _queue_empty(inst: Instance) -> bool:
    from kith.jobs.models import Job

    assert inst.rt is not None
    async with inst.rt.sessions() as db:
        count = await db.scalar(
            select(func.count()).select_from(Job).where(Job.kind == "federation.deliver")
        )
        return count == 0


# --- polls --------------------------------------------------------------------------------


async def _poll_counts(client: httpx.AsyncClient, status_id: str) -> tuple[list[int], int, bool]:
    poll = await ok(client.get(f"/api/v1/polls/{status_id}"))
    return [o["votes_count"] for o in poll["options"]], poll["votes_count"], poll["expired"]


async def _end_poll_now(inst: Instance, status_id: str) -> None:
    """Let a poll's time run out: its end moves to now, and its `poll.ended` job is due."""
    from datetime import timedelta

    from kith.db import utcnow
    from kith.jobs.models import Job
    from kith.posts.models import Poll

    assert inst.rt is not None
    ended = utcnow() - timedelta(seconds=1)
    async with inst.rt.sessions() as db:
        poll = await db.get(Poll, int(status_id))
        assert poll is not None
        poll.expires_at = ended
        for job in (await db.scalars(select(Job).where(Job.kind == "poll.ended"))).all():
            if job.payload.get("post_id") == int(status_id):
                job.run_at = ended
        await db.commit()


async def test_poll__a_remote_vote_counts_once_and_the_results_come_back(
    pair: Pair, bea_follows_ana: tuple[str, str]
) -> None:
    async with pair.a.api("ana") as ana, pair.a.api("al") as al, pair.b.api("bea") as bea:
        # Given ana's public poll, as bea (her follower on B) sees it
        original = await post(
            ana, "poll-colour", poll={"options": ["red", "blue"], "expires_in": 300}
        )
        at_b = await eventually(
            lambda: find_status(bea, "/api/v1/timelines/home", "poll-colour"), "the poll on B"
        )
        assert at_b["poll"]["options"][0]["title"] == "red"
        # When bea votes "red" on B, and al votes "blue" on A
        voted = await ok(bea.post(f"/api/v1/polls/{at_b['id']}/votes", json={"choices": ["0"]}))
        assert voted["voted"] and voted["own_votes"] == [0]
        await ok(al.post(f"/api/v1/polls/{original['id']}/votes", json={"choices": ["1"]}))
        # Then A counts bea's vote
        await eventually(
            lambda: _equal(_poll_counts(ana, original["id"]), ([1, 1], 2, False)),
            "bea's vote counted on A",
        )
        # And voting again on B is refused there, nothing more is sent
        again = await bea.post(f"/api/v1/polls/{at_b['id']}/votes", json={"choices": ["1"]})
        assert again.status_code == 422, again.text
        # And the same vote delivered a second time (a retry) is not counted again
        await _redeliver_votes(pair)
        await eventually(lambda: _queue_empty(pair.b), "B's delivery queue to drain")
        await eventually(lambda: _votes_processed(pair.a), "A processing the repeat")
        assert await _poll_counts(ana, original["id"]) == ([1, 1], 2, False)
        # And until the poll ends, B only knows its own vote
        assert await _poll_counts(bea, at_b["id"]) == ([1, 0], 1, False)
        # When the poll ends on A
        await _end_poll_now(pair.a, original["id"])
        # Then B receives the final results (A's Update of the Question)
        await eventually(
            lambda: _equal(_poll_counts(bea, at_b["id"]), ([1, 1], 2, True)),
            "the final results on B",
        )


async def _redeliver_votes(pair: Pair) -> None:
    """Send B's stored vote activities to A once more, as a retry would."""
    from kith.accounts.models import Account
    from kith.federation.delivery import deliver

    assert pair.b.rt is not None
    async with pair.b.rt.sessions() as db:
        rows = (
            await db.execute(
                select(OutboundActivity.actor_account_id, OutboundActivity.document).where(
                    OutboundActivity.activity_id.contains("#votes/")
                )
            )
        ).all()
        assert len(rows) == 1, rows  # one vote, one option: one activity
        [(voter_id, document)] = rows
        voter = await db.get(Account, voter_id)
        assert await deliver(db, voter, document, [f"{pair.a.base_url}/inbox"]) == 1
        await db.commit()


async def _votes_processed(inst: Instance) -> bool:
    """Every vote that reached the instance has been processed (whatever the outcome)."""
    assert inst.rt is not None
    async with inst.rt.sessions() as db:
        waiting = await db.scalar(
            select(func.count())
            .select_from(InboxItem)
            .where(InboxItem.activity_id.contains("#votes/"), InboxItem.processed_at.is_(None))
        )
        return waiting == 0


# --- account migration --------------------------------------------------------------------


@asynccontextmanager
async def signed_in(inst: Instance, name: str) -> AsyncIterator[Browser]:
    """A browser session on the instance's web pages, signed in as `name`."""
    async with httpx.AsyncClient(base_url=inst.base_url, timeout=15) as client:
        b = Browser(client)
        r = await b.sign_in(name)
        assert r.status_code in (200, 303), r.text
        yield b


async def test_move__followers_on_both_instances_follow_the_new_account(pair: Pair) -> None:
    # Given ed on A, followed by cy (on A) and bo (on B)
    ed_at_b, _ = await follow(pair, "bo", "ed")
    async with pair.a.api("cy") as cy, pair.b.api("bo") as bo:
        ed_at_a = (await ok(cy.get("/api/v1/accounts/lookup", params={"acct": "ed"})))["id"]
        assert (await ok(cy.post(f"/api/v1/accounts/{ed_at_a}/follow")))["following"]
        # And ned on B, ed's new account, lists ed as an alias
        async with signed_in(pair.b, "ned") as ned:
            r = await ned.post("/settings/migration/aliases", {"aliases": pair.handle("ed")})
            assert r.status_code == 303, r.text
        # When ed moves to ned
        async with signed_in(pair.a, "ed") as ed:
            r = await ed.post(
                "/settings/migration/move", {"target": pair.handle("ned"), "password": PASSWORD}
            )
            assert r.status_code == 303, r.text
        ned_at_a = await resolve(cy, pair.handle("ned"))
        ned_at_b = (await ok(bo.get("/api/v1/accounts/lookup", params={"acct": "ned"})))["id"]

        # Then cy, on A, follows ned on B (B accepted the follow), and no longer ed
        async def cy_moved() -> bool:
            return bool((await relationship(cy, ned_at_a))["following"])

        await eventually(cy_moved, "cy following ned (B accepting A's Follow)")
        assert not (await relationship(cy, ed_at_a))["following"]

        # And bo, on B, follows ned, no longer ed, and is told why
        async def bo_moved() -> bool:
            return bool((await relationship(bo, ned_at_b))["following"])

        await eventually(bo_moved, "bo following ned (B applying A's Move)")
        assert not (await relationship(bo, ed_at_b))["following"]
        kinds = [n["type"] for n in await ok(bo.get("/api/v1/notifications"))]
        assert "move" in kinds
    # And A no longer counts bo among ed's followers (B sent the Undo of the Follow)
    async with pair.a.api("ed") as ed_api:

        async def no_followers() -> bool:
            return not await ok(ed_api.get(f"/api/v1/accounts/{ed_at_a}/followers"))

        await eventually(no_followers, "ed's followers on A going to none")


# --- suspension ---------------------------------------------------------------------------


async def test_suspension__hides_the_account_on_the_other_instance_until_lifted(
    pair: Pair,
) -> None:
    # Given bo on B follows fay on A and has her public post in his home
    fay_at_b, _ = await follow(pair, "bo", "fay")
    async with pair.a.api("fay") as fay, pair.b.api("bo") as bo:
        fay_id = (await ok(fay.get("/api/v1/accounts/verify_credentials")))["id"]
        await post(fay, "fay-before-suspension")
        at_b = await eventually(
            lambda: find_status(bo, "/api/v1/timelines/home", "fay-before-suspension"),
            "fay's post on B",
        )

        async def shown_on_b() -> bool:
            status = await bo.get(f"/api/v1/statuses/{at_b['id']}")
            account = await bo.get(f"/api/v1/accounts/{fay_at_b}")
            return status.status_code == 200 and account.status_code == 200

        # When an admin of A suspends fay
        async with signed_in(pair.a, "ada") as ada:
            r = await ada.post(f"/admin/accounts/{fay_id}/suspend")
            assert r.status_code == 303, r.text

        # Then B hides her account and her post (A sent Update(Person) with suspended: true)
        await eventually(lambda: _negated(shown_on_b()), "fay hidden on B")
        assert await find_status(bo, "/api/v1/timelines/home", "fay-before-suspension") is None
        # When the admin lifts the suspension
        async with signed_in(pair.a, "ada") as ada:
            r = await ada.post(f"/admin/accounts/{fay_id}/unsuspend")
            assert r.status_code == 303, r.text
        # Then B shows her and her post again, and bo still follows her
        await eventually(shown_on_b, "fay shown again on B")
        assert await find_status(bo, "/api/v1/timelines/home", "fay-before-suspension")
        assert (await relationship(bo, fay_at_b))["following"]


async def _negated(value: Awaitable[bool]) -> bool:
    return not await value


# --- account deletion ---------------------------------------------------------------------


async def test_account_deletion__the_followers_server_removes_the_account_and_its_posts(
    pair: Pair,
) -> None:
    # Given hal on B follows gil on A, and has gil's public post in his home
    gil_at_b, _ = await follow(pair, "hal", "gil")
    async with pair.a.api("gil") as gil, pair.b.api("hal") as hal:
        gil_id = (await ok(gil.get("/api/v1/accounts/verify_credentials")))["id"]
        await post(gil, "gil-farewell")
        at_b = await eventually(
            lambda: find_status(hal, "/api/v1/timelines/home", "gil-farewell"), "gil's post on B"
        )
        # When an admin of A deletes gil (typing his username to confirm)
        async with signed_in(pair.a, "ada") as ada:
            await ada.get(f"/admin/accounts/{gil_id}/delete")
            r = await ada.post(f"/admin/accounts/{gil_id}/delete", {"confirm": "gil"})
            assert r.status_code == 303, r.text
        # Then gil's token stops working on A at once
        assert (await gil.get("/api/v1/accounts/verify_credentials")).status_code == 401

        # And B, told by Delete(Person), removes his account, his post and the follow
        async def gone_on_b() -> bool:
            account = await hal.get(f"/api/v1/accounts/{gil_at_b}")
            status = await hal.get(f"/api/v1/statuses/{at_b['id']}")
            return account.status_code == 404 and status.status_code == 404

        await eventually(gone_on_b, "gil removed on B")
        assert await find_status(hal, "/api/v1/timelines/home", "gil-farewell") is None
        hal_id = (await ok(hal.get("/api/v1/accounts/verify_credentials")))["id"]
        assert (await ok(hal.get(f"/api/v1/accounts/{hal_id}")))["following_count"] == 0
        # And searching for him again finds nobody (A answers 410 for his actor and WebFinger)
        found = await ok(
            hal.get(
                "/api/v2/search",
                params={"q": pair.handle("gil"), "resolve": "true", "type": "accounts"},
            )
        )
        assert found["accounts"] == []
    assert await pair.b.count_posts(Post.content_html.contains("gil-farewell")) == 0

    # And A's worker purged what he left
    async def purged_on_a() -> bool:
        return await pair.a.count_posts(Post.content_html.contains("gil-farewell")) == 0

    await eventually(purged_on_a, "gil's posts purged on A")
    async with httpx.AsyncClient(timeout=15) as client:
        r = await client.get(
            f"{pair.a.base_url}/users/gil", headers={"Accept": "application/activity+json"}
        )
        assert r.status_code == 410 and r.json()["formerType"] == "Person"
