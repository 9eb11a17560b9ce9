"""What the inbound-processing tests share: settings that let Kith reach the scripted peer on
loopback, the peer with two actors, and "deliver, then run the jobs" as one step."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.config import Settings
from kith.federation.models import InboxItem
from kith.jobs import worker
from kith.runtime import Runtime
from tests.federation.helpers import BASE, PUBLIC
from tests.federation.local_http import local_server
from tests.federation.peer import Peer
from tests.world import running_app


def loopback(settings: Settings) -> Settings:
    """The peer runs on 127.0.0.1: the job's own fetches (threads, boosts, WebFinger) must
    reach it, so the runtime the worker uses allows loopback, as local federation setups do.
    Test modules override their `settings` fixture with this."""
    return settings.model_copy(update={"federation_allow_private": True})


@asynccontextmanager
async def two_actor_peer() -> AsyncIterator[Peer]:
    """A scripted server on loopback serving alice (key 0) and mallory (key 1)."""
    async with local_server("127.0.0.1") as server:
        p = Peer(server)
        p.add_actor("alice", key=0)
        p.add_actor("mallory", key=1)
        yield p


async def deliver(settings: Settings, rt: Runtime, peer: Peer, activity: dict[str, Any]) -> str:
    """Deliver `activity` signed by its actor to the shared inbox, run the jobs, and return
    the outcome the inbox job recorded."""
    async with running_app(settings) as client:
        headers, body = peer.sign(activity)
        r = await client.post("/inbox", content=body, headers=headers)
    assert r.status_code == 202, r.text
    while await worker.run_once(rt.sessions, "test-worker"):
        pass
    async with rt.sessions() as db:
        outcome = await db.scalar(
            select(InboxItem.outcome).where(InboxItem.activity_id == activity["id"])
        )
    return outcome or ""


async def count(db: AsyncSession, model: type, *where: object) -> int:
    stmt = select(func.count()).select_from(model).where(*where)  # type: ignore[arg-type]
    return int(await db.scalar(stmt.execution_options(populate_existing=True)) or 0)


def followers(peer: Peer, name: str) -> str:
    return f"{peer.actor_uri(name)}/followers"


def addressed(note: dict[str, Any], to: list[str], cc: list[str] | None = None) -> dict[str, Any]:
    note["to"] = to
    note["cc"] = cc or []
    return note


def local(name: str) -> str:
    return f"{BASE}/users/{name}"


__all__ = [
    "PUBLIC",
    "addressed",
    "count",
    "deliver",
    "followers",
    "local",
    "loopback",
    "two_actor_peer",
]
