"""Property-based tests of the Mastodon API from its own OpenAPI schema (schemathesis).

Schemathesis reads the app's /openapi.json and, for every /api/ operation, sends requests it
generates — valid ones and deliberately wrong ones (bad types, missing fields, odd strings,
huge numbers). Half of the generated ids are swapped for ids of real objects (posts, polls,
accounts, lists, filters, notifications) so requests reach the handlers' real paths, not just
their 404s. Every request carries the token of one of two people. Whatever it sends, the API
must answer without a server error, and in JSON.

Besides its random examples (KITH_SCHEMATHESIS_EXAMPLES per operation, default 6; raise it
locally to search harder), schemathesis walks each parameter's boundaries (its coverage phase:
wrong types, empty and huge values), which is most of the ~2,000 requests. Generation is
derandomized, so a run is repeatable. Each bug the fuzzing found has a focused regression
test at the end of this file.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from sqlalchemy import func, select

from kith import mastodon_api
from kith.app import create_app
from kith.config import Settings
from kith.filters import service as filters
from kith.graph import service as graph
from kith.lists import service as lists
from kith.notifications.models import Notification
from kith.posts.models import Bookmark, Like, Post, Visibility
from kith.posts.service import PollInput
from kith.runtime import Runtime
from tests.conftest import _wipe
from tests.mastodon_api.conftest import bearer, token_for
from tests.world import person, post, viewer

EXAMPLES = int(os.environ.get("KITH_SCHEMATHESIS_EXAMPLES", "6"))
TOKENS_EACH = 3  # rotated, so the per-token rate limit (1,500 / 5 min) is never what answers
# Streams never end (SSE keeps the response open); they have their own tests.
EXCLUDED_PATHS = r"^/api/v1/streaming"


@dataclass
class FuzzWorld:
    """The app under test, the tokens requests carry and real ids to aim at."""

    app: Any
    tokens: list[str]
    real_ids: dict[str, list[str]] = field(default_factory=dict)
    status_counts: dict[int, int] = field(default_factory=dict)


async def _build(db: Any) -> tuple[list[str], dict[str, list[str]]]:
    """Two people who follow each other, posts of each audience, a poll, a list, a filter
    with a keyword and a targeted status."""
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await graph.follow(db, alice.id, bob.id)
    await graph.follow(db, bob.id, alice.id)
    public = await post(db, alice, "Tomatoes #garden @bob")
    private = await post(db, alice, "For followers", visibility=Visibility.PRIVATE)
    direct = await post(db, alice, "@bob psst", visibility=Visibility.DIRECT)
    poll = await post(
        db, alice, "Which?", poll=PollInput(options=["a", "b"], expires_in=3600, multiple=False)
    )
    reply = await post(db, bob, "Nice @alice", reply_to=public)
    shelf = await lists.create_list(db, alice.id, title="Friends", replies_policy="list")
    await lists.add_members(db, alice.id, shelf.id, [bob.id])
    kept = await filters.create_filter(
        db,
        viewer(alice),
        title="Spoilers",
        keywords=[("finale", True)],
        contexts=["home"],
        action="warn",
        expires_in=None,
    )
    keyword_ids = [str(k.id) for k in (await filters.get_filter(db, viewer(alice), kept.id))[1]]
    targeted = await filters.add_status(db, viewer(alice), kept.id, reply.id)
    notes = (await db.scalars(select(Notification.id))).all()
    tokens: list[str] = []
    for _ in range(TOKENS_EACH):
        tokens += [
            await token_for(db, alice, "read write follow push"),
            await token_for(db, bob, "read write follow push"),
        ]
    ids = [public, private, direct, poll, reply]
    real = {
        "status_id": [str(p.id) for p in ids],
        "poll_id": [str(poll.id)],
        "account_id": [str(alice.id), str(bob.id)],
        "list_id": [str(shelf.id)],
        "filter_id": [str(kept.id)],
        "keyword_id": keyword_ids,
        "filter_status_id": [str(targeted.id)],
        "notification_id": [str(n) for n in notes],
        "hashtag": ["garden"],
        "name": ["garden"],
    }
    return tokens, real


@pytest.fixture(scope="module")
async def fuzz_world(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FuzzWorld]:
    settings_ = Settings(
        database_url=database_url,
        var_dir=Path(tmp_path_factory.mktemp("fuzz")),
        secret_key="test-secret-key-not-for-production",
        domain="kith.test",
        run_worker=False,
        redis_url="",
    )
    rt = Runtime.from_settings(settings_)
    await _wipe(rt)
    async with rt.sessions() as db:
        tokens, real = await _build(db)
    await rt.close()
    yield FuzzWorld(app=create_app(settings_), tokens=tokens, real_ids=real)
    # Schemathesis runs the app's lifespan on its own event loop: end it with the module, so
    # the app's database connections close before the test database is dropped.
    from schemathesis.python import asgi

    asgi.shutdown_lifespans()


def _api_openapi() -> dict[str, Any]:
    """The OpenAPI document of the API routers, as the app serves it at /openapi.json (the
    fixture checks that they agree). Built without settings, so tests are collected before
    any database exists."""
    app = FastAPI(title="Kith")
    for router in mastodon_api.routers():
        app.include_router(router)
    return app.openapi()


# Probing every path with methods it does not have (405s) would cost a third of the run.
CONFIG = schemathesis.Config.from_dict({"phases": {"coverage": {"unexpected-methods": []}}})
schema = (
    schemathesis.openapi.from_dict(_api_openapi(), config=CONFIG)
    .include(path_regex=r"^/api/")
    .exclude(path_regex=EXCLUDED_PATHS)
)


def _pick(options: list[str], seed: str) -> str | None:
    """A real id for half of the generated values (stable: the same value picks the same)."""
    h = zlib.crc32(seed.encode())
    if not options or h % 2:
        return None
    return options[(h // 2) % len(options)]


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api__never_a_server_error_and_always_json(case: Any, fuzz_world: FuzzWorld) -> None:
    # Given a generated request, aimed at a real object half of the time
    for name, value in list((case.path_parameters or {}).items()):
        real = _pick(fuzz_world.real_ids.get(name, []), f"{name}={value!r}")
        if real is not None:
            case.path_parameters[name] = real
    seed = f"{case.method} {case.formatted_path} {case.query!r} {case.body!r}"
    token = fuzz_world.tokens[zlib.crc32(seed.encode()) % len(fuzz_world.tokens)]
    # When one of the two people sends it
    response = case.call(app=fuzz_world.app, headers={"Authorization": f"Bearer {token}"})
    fuzz_world.status_counts[response.status_code] = (
        fuzz_world.status_counts.get(response.status_code, 0) + 1
    )
    # Then it is never a server error
    case.validate_response(response, checks=[not_a_server_error])
    assert response.status_code != 429, "rate limited: add tokens to the pool"
    # And the answer is JSON
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith("application/json"), (response.status_code, content_type)
    json.loads(response.content)


def test_served_openapi__is_the_one_fuzzed(fuzz_world: FuzzWorld) -> None:
    # Given the app's own /openapi.json, then its /api/ operations are those fuzzed above
    def api_paths(doc: dict[str, Any]) -> dict[str, Any]:
        return {p: v for p, v in doc["paths"].items() if p.startswith("/api/")}

    assert api_paths(fuzz_world.app.openapi()) == api_paths(_api_openapi())
    # And the query parameters handlers read themselves are declared (limit and cursors)
    home = _api_openapi()["paths"]["/api/v1/timelines/home"]["get"]
    assert {p["name"] for p in home["parameters"]} == {"limit", "max_id", "min_id", "since_id"}


def test_fuzzing__reached_the_handlers(fuzz_world: FuzzWorld) -> None:
    counts = fuzz_world.status_counts
    if not counts:
        pytest.skip("run together with the fuzzing test")
    # Then the requests got real answers, not only refusals (a broken token would give 401s)
    assert counts.get(200, 0) > 300 and counts.get(422, 0) > 300, counts
    assert counts.get(401, 0) == 0, counts


# --- regression tests for what the fuzzing found ---------------------------------------------

BIG = "9999999999999999999"  # 19 digits, above the largest 64-bit id


async def test_id_above_64_bits__404_or_ignored_not_500(api: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    # Given a number too large for any id column (SQLite and PostgreSQL both failed on it)
    alice = await person(db, "alice")
    token = bearer(await token_for(db, alice))
    # When it is used as an id, then 404
    for url in (
        f"/api/v1/statuses/{BIG}",
        f"/api/v1/statuses/{BIG}/context",
        f"/api/v1/accounts/{BIG}",
        f"/api/v1/notifications/{BIG}",
        f"/api/v1/polls/{BIG}",
        f"/api/v1/lists/{BIG}",
    ):
        assert (await api.get(url, headers=token)).status_code == 404, url
    r = await api.post(f"/api/v1/statuses/{BIG}/favourite", headers=token)
    assert r.status_code == 404
    # And as a cursor or a listed id, it is ignored
    for url in (
        f"/api/v1/timelines/public?max_id={BIG}",
        f"/api/v1/timelines/home?since_id={BIG}",
        f"/api/v1/notifications?min_id={BIG}",
        f"/api/v1/bookmarks?max_id={BIG}",
        f"/api/v1/accounts/relationships?id[]={BIG}",
    ):
        assert (await api.get(url, headers=token)).status_code == 200, url


async def test_nul_characters__422_not_500(api: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    # Given NUL characters, which PostgreSQL can neither store nor compare
    alice = await person(db, "alice")
    token = bearer(await token_for(db, alice))
    # When they come in a body (JSON or form), a query or a path, then 422 with the field
    r = await api.post("/api/v1/statuses", json={"status": "a\x00b"}, headers=token)
    assert r.status_code == 422 and r.json() == {"error": "status must not contain NUL characters"}
    r = await api.post("/api/v1/lists", data={"title": "a\x00b"}, headers=token)
    assert r.status_code == 422
    r = await api.patch(
        "/api/v1/accounts/update_credentials", json={"display_name": "\x00"}, headers=token
    )
    assert r.status_code == 422
    for url in ("/api/v2/search?q=a%00b", "/api/v1/timelines/tag/a%00b", "/api/v1/tags/%00"):
        assert (await api.get(url, headers=token)).status_code == 422, url
    # And nothing was written
    assert await db.scalar(select(func.count()).select_from(Post)) == 0


async def test_malformed_bodies__422_not_400_or_500(api: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    # Given bodies a parser chokes on
    alice = await person(db, "alice")
    token = bearer(await token_for(db, alice))
    bodies = [
        ("multipart/form-data", b"--x\r\n"),  # no boundary
        ("multipart/form-data; boundary=XYZ", b"not multipart at all"),
        ("application/json", b"[" * 100_000),  # nesting that overflows the parser
        ("application/json", b'{"status": "hi", "x": ' + b"[" * 50 + b"]" * 50 + b"}"),
        ("application/json", b"\xff\xfe"),
    ]
    for content_type, body in bodies:
        r = await api.post(
            "/api/v1/statuses", content=body, headers={**token, "Content-Type": content_type}
        )
        # Then each is a 422 in Mastodon's error shape
        assert r.status_code == 422, (content_type, body[:20], r.status_code)
        assert set(r.json()) == {"error"}
    assert await db.scalar(select(func.count()).select_from(Post)) == 0


async def test_wrong_types_on_write_endpoints__422_and_nothing_changes(
    api: httpx.AsyncClient, db
) -> None:  # type: ignore[no-untyped-def]
    # Given alice, her post, her poll-less post, a list and bob
    alice, bob = await person(db, "alice"), await person(db, "bob")
    mine = await post(db, alice, "Mine")
    theirs = await post(
        db, bob, "Vote", poll=PollInput(options=["a", "b"], expires_in=3600, multiple=False)
    )
    token = bearer(await token_for(db, alice, "read write follow"))
    shelf = (await api.post("/api/v1/lists", json={"title": "Shelf"}, headers=token)).json()
    before = await _snapshot(db)
    cases = [
        ("POST", "/api/v1/statuses", {"status": "x", "in_reply_to_id": {"id": 1}}),
        ("POST", "/api/v1/statuses", {"status": "x", "in_reply_to_id": True}),
        (
            "POST",
            "/api/v1/statuses",
            {"status": "x", "poll": {"options": [{}, []], "expires_in": 600}},
        ),
        ("PUT", f"/api/v1/statuses/{mine.id}", {"status": ["not", "text"]}),
        ("PUT", f"/api/v1/statuses/{mine.id}", {"status": "x", "sensitive": "maybe"}),
        ("PUT", f"/api/v1/statuses/{mine.id}", {"status": "x", "media_attributes": "x"}),
        ("POST", f"/api/v1/polls/{theirs.id}/votes", {"choices": [{"a": 1}]}),
        ("POST", f"/api/v1/polls/{theirs.id}/votes", {"choices": "first"}),
        ("POST", "/api/v1/markers", {"home": {"last_read_id": {"id": 1}}}),
        ("POST", "/api/v1/markers", {"home": 5}),
        ("POST", "/api/v1/lists", {"title": ["x"]}),
        ("POST", "/api/v1/lists", {"title": "x", "exclusive": "perhaps"}),
        ("PUT", f"/api/v1/lists/{shelf['id']}", {"title": {"a": 1}}),
        ("POST", f"/api/v1/lists/{shelf['id']}/accounts", {"account_ids": [str(bob.id)]}),
        ("POST", "/api/v2/filters", {"title": "x", "context": ["home"], "expires_in": "soon"}),
        (
            "POST",
            "/api/v2/filters",
            {"title": "x", "context": ["home"], "keywords_attributes": "x"},
        ),
        ("POST", "/api/v1/reports", {"account_id": {"id": 1}}),
        ("POST", "/api/v1/reports", {"account_id": str(bob.id), "comment": ["x"]}),
        ("POST", f"/api/v1/accounts/{bob.id}/follow", {"reblogs": "perhaps"}),
        ("POST", f"/api/v1/accounts/{bob.id}/mute", {"duration": "long"}),
        ("PATCH", "/api/v1/accounts/update_credentials", {"locked": "perhaps"}),
        ("PATCH", "/api/v1/accounts/update_credentials", {"display_name": ["x"]}),
        ("PATCH", "/api/v1/accounts/update_credentials", {"fields_attributes": 5}),
        (
            "POST",
            "/api/v1/apps",
            {"client_name": ["x"], "redirect_uris": "urn:ietf:wg:oauth:2.0:oob"},
        ),
        (
            "POST",
            "/api/v1/apps",
            {
                "client_name": "x",
                "redirect_uris": "urn:ietf:wg:oauth:2.0:oob",
                "scopes": "read everything",
            },
        ),
    ]
    for method, url, body in cases:
        # When a client sends a parameter of the wrong type
        r = await api.request(method, url, json=body, headers=token)
        # Then it gets a 422 naming the problem
        assert r.status_code == 422, (method, url, body, r.status_code, r.text)
        assert set(r.json()) == {"error"}
    # And nothing was written or changed
    after = await _snapshot(db)
    changed = {t for t, n in after["counts"].items() if before["counts"][t] != n}
    assert not changed, changed
    assert after == before


async def _snapshot(db) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Row counts of every table, and the fields the write endpoints above could change."""
    from kith.accounts.models import Account
    from kith.lists.models import List
    from kith.models import Base

    counts = {
        t.name: await db.scalar(select(func.count()).select_from(t))
        for t in Base.metadata.sorted_tables
        if t.name not in ("oauth_tokens", "oauth_apps")  # apps are what POST /apps makes
    }
    db.expire_all()
    accounts = [(a.display_name, a.locked, a.fields) for a in (await db.scalars(select(Account)))]
    posts = [(p.source, p.edited_at) for p in (await db.scalars(select(Post)))]
    titles = [x.title for x in (await db.scalars(select(List)))]
    return {"counts": counts, "accounts": accounts, "posts": posts, "lists": titles}


async def test_dismissing_an_unknown_notification__404(api: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    # Given alice, and bob's notification (alice's like of his post)
    alice, bob = await person(db, "alice"), await person(db, "bob")
    p = await post(db, bob, "Like me")
    from kith.posts import service as posts

    await posts.like(db, viewer(alice), p.id)
    bobs = await db.scalar(select(Notification.id).where(Notification.account_id == bob.id))
    token = bearer(await token_for(db, alice))
    # When alice dismisses an unknown one or bob's, then 404 (as Mastodon), and bob's stays
    for nid in ("123", str(bobs)):
        r = await api.post(f"/api/v1/notifications/{nid}/dismiss", headers=token)
        assert r.status_code == 404
    assert await db.scalar(select(func.count()).select_from(Notification)) == 1


async def test_update_credentials__unfit_avatar_changes_nothing(api: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    # Given alice, when she sends a new name with an avatar that is not an image
    alice = await person(db, "alice")
    token = bearer(await token_for(db, alice, "read write"))
    r = await api.patch(
        "/api/v1/accounts/update_credentials",
        data={"display_name": "Renamed", "locked": "true"},
        files={"avatar": ("a.png", b"not an image at all", "image/png")},
        headers=token,
    )
    # Then 422, and the profile is as it was (not half-updated)
    assert r.status_code == 422 and set(r.json()) == {"error"}
    me = (await api.get("/api/v1/accounts/verify_credentials", headers=token)).json()
    assert me["display_name"] != "Renamed" and me["locked"] is False


async def test_list_stream_with_an_id_above_64_bits__404(api: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    # Given alice, when she asks for the stream of a list whose id no column could hold
    alice = await person(db, "alice")
    token = bearer(await token_for(db, alice))
    r = await api.get(f"/api/v1/streaming/list?list={BIG}", headers=token)
    # Then 404 at once (it used to be accepted, and failed on the stream's first event)
    assert r.status_code == 404


async def test_scheduled_at__offsets_are_kept_and_out_of_range_is_422(
    api: httpx.AsyncClient, db
) -> None:  # type: ignore[no-untyped-def]
    # Given alice scheduling a status with a +02:00 offset
    alice = await person(db, "alice")
    token = bearer(await token_for(db, alice))
    r = await api.post(
        "/api/v1/statuses",
        json={"status": "later", "scheduled_at": "2999-06-01T12:00:00+02:00"},
        headers=token,
    )
    # Then it is kept as that moment (10:00 UTC), not as 12:00 UTC
    assert r.status_code == 200 and r.json()["scheduled_at"] == "2999-06-01T10:00:00.000Z"
    # And a moment past the year 9999 in UTC is a 422, when scheduling and rescheduling
    late = "9999-12-31T23:59:59-14:00"
    r2 = await api.post(
        "/api/v1/statuses", json={"status": "x", "scheduled_at": late}, headers=token
    )
    assert r2.status_code == 422
    r3 = await api.put(
        f"/api/v1/scheduled_statuses/{r.json()['id']}", json={"scheduled_at": late}, headers=token
    )
    assert r3.status_code == 422


async def test_limits__huge_clamped_tiny_raised_junk_422_on_every_list(
    api: httpx.AsyncClient, db
) -> None:  # type: ignore[no-untyped-def]
    # Given 45 public #garden posts by alice, followed, bookmarked and liked by bob
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await graph.follow(db, bob.id, alice.id)
    posts = [await post(db, alice, f"Post {i} #garden") for i in range(45)]
    for p in posts:
        db.add(Bookmark(account_id=bob.id, post_id=p.id))
        db.add(Like(account_id=bob.id, post_id=p.id))
    await db.commit()
    token = bearer(await token_for(db, bob, "read write follow"))
    full = [  # lists that hold more than a page: a clamped page is exactly the maximum
        "/api/v1/timelines/public",
        "/api/v1/timelines/tag/garden",
        "/api/v1/timelines/home",
        f"/api/v1/accounts/{alice.id}/statuses",
        "/api/v1/bookmarks",
        "/api/v1/favourites",
    ]
    others = [
        "/api/v1/notifications",
        "/api/v2/notifications",
        "/api/v1/conversations",
        "/api/v1/blocks",
        "/api/v1/mutes",
        "/api/v1/followed_tags",
        f"/api/v1/statuses/{posts[0].id}/favourited_by",
        f"/api/v1/statuses/{posts[0].id}/reblogged_by",
        f"/api/v1/accounts/{alice.id}/followers",
        f"/api/v1/accounts/{alice.id}/following",
        "/api/v1/accounts/search?q=a",
        "/api/v2/search?q=garden",
        "/api/v2/suggestions",
    ]
    for url in full + others:
        sep = "&" if "?" in url else "?"
        # When a client asks for 100,000 items, then it gets at most a page, not an error
        r = await api.get(f"{url}{sep}limit=100000", headers=token)
        assert r.status_code == 200, (url, r.status_code)
        if url in full:
            assert len(r.json()) == 40, url
        # And zero or a negative limit is raised to one item
        for tiny in ("0", "-5"):
            r = await api.get(f"{url}{sep}limit={tiny}", headers=token)
            assert r.status_code == 200, (url, tiny, r.status_code)
            if url in full:
                assert len(r.json()) == 1, (url, tiny)
        # And a limit that is not a number is a 422
        r = await api.get(f"{url}{sep}limit=many", headers=token)
        assert r.status_code == 422 and set(r.json()) == {"error"}, (url, r.status_code)


async def test_unknown_ids__404_on_every_public_id_endpoint(api: httpx.AsyncClient, db) -> None:  # type: ignore[no-untyped-def]
    # Given ids nothing has (and words that are no id), with or without a token
    alice = await person(db, "alice")
    token = bearer(await token_for(db, alice))
    for raw in ("1234567", "not-an-id", "-1", "1.5"):
        for url in (
            f"/api/v1/statuses/{raw}",
            f"/api/v1/statuses/{raw}/context",
            f"/api/v1/statuses/{raw}/history",
            f"/api/v1/statuses/{raw}/favourited_by",
            f"/api/v1/statuses/{raw}/reblogged_by",
            f"/api/v1/polls/{raw}",
            f"/api/v1/accounts/{raw}",
            f"/api/v1/accounts/{raw}/statuses",
            f"/api/v1/accounts/{raw}/followers",
            f"/api/v1/accounts/{raw}/following",
        ):
            for headers in (token, {}):
                # Then each is a 404 in Mastodon's error shape
                r = await api.get(url, headers=headers)
                assert r.status_code == 404 and set(r.json()) == {"error"}, (url, r.status_code)
