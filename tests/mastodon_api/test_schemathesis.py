"""Property-based tests of the Mastodon API from its own OpenAPI schema (schemathesis).

Schemathesis reads the app's /openapi.json and, for every /api/ operation, sends requests it
generates — valid ones and deliberately wrong ones (bad types, missing fields, odd strings,
huge numbers). Half of the generated ids are swapped for ids of real objects (posts, polls,
accounts, lists, filters, notifications) so requests reach the handlers' real paths, not just
their 404s. Every request carries the token of one of two people. Whatever it sends, the API
must answer without a server error, and in JSON.

The number of examples is bounded (KITH_SCHEMATHESIS_EXAMPLES, default 12 per operation and
phase) and generation is derandomized, so a run is repeatable and fast; raise the number
locally to search harder.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from sqlalchemy import select

from kith import mastodon_api
from kith.app import create_app
from kith.config import Settings
from kith.filters import service as filters
from kith.graph import service as graph
from kith.lists import service as lists
from kith.notifications.models import Notification
from kith.posts.models import Visibility
from kith.posts.service import PollInput
from kith.runtime import Runtime
from tests.conftest import _wipe
from tests.mastodon_api.conftest import token_for
from tests.world import person, post, viewer

EXAMPLES = int(os.environ.get("KITH_SCHEMATHESIS_EXAMPLES", "12"))
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
    """Two people who follow each other, posts of each audience, a poll, a list, a filter."""
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


@pytest.fixture(scope="module", autouse=True)
def _served_schema_is_the_tested_one(fuzz_world: FuzzWorld) -> Iterator[None]:
    def api_paths(doc: dict[str, Any]) -> dict[str, Any]:
        return {p: v for p, v in doc["paths"].items() if p.startswith("/api/")}

    assert api_paths(fuzz_world.app.openapi()) == api_paths(_api_openapi())
    yield
    # Schemathesis runs the app's lifespan on its own event loop: end it with the module, so
    # the app's database connections close before the test database is dropped.
    from schemathesis.python import asgi

    asgi.shutdown_lifespans()
    print("STATUS", sorted(fuzz_world.status_counts.items()))


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
