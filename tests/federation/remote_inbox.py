"""A remote server's inbox for delivery tests: a real HTTP server on loopback
(tests/federation/local_http.py) that checks every delivery's signature with the sender's
public key, as a real peer would, records what arrived, and answers as scripted (500 then
202, 429 with Retry-After, 410…)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.federation.models import ActorKey, RemoteActor
from kith.federation.signatures import RequestParts, SignatureError, parse_signature
from kith.jobs import worker
from kith.runtime import Runtime
from tests.federation.local_http import LocalServer, RawRequest, local_server, respond


@dataclass
class Delivery:
    path: str
    activity: dict[str, Any]
    key_id: str
    verified: bool


@dataclass
class RemoteInbox:
    """Inboxes at /inbox (shared) and /users/NAME/inbox; `script` holds the answers to give
    next (status, headers), then 202 for ever. `keys` maps key ids to public PEMs."""

    server: LocalServer
    keys: dict[str, str] = field(default_factory=dict)
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    received: list[Delivery] = field(default_factory=list)
    delay: float = 0.0

    @property
    def base(self) -> str:
        return self.server.base

    @property
    def host(self) -> str:
        return self.server.authority

    @property
    def shared_inbox(self) -> str:
        return f"{self.base}/inbox"

    def personal_inbox(self, name: str) -> str:
        return f"{self.base}/users/{name}/inbox"

    def activities(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [d.activity for d in self.received if kind is None or d.activity["type"] == kind]

    def answer(self, *answers: int | tuple[int, dict[str, str]]) -> None:
        self.script.extend(a if isinstance(a, tuple) else (a, {}) for a in answers)

    async def route(self, request: RawRequest, writer: asyncio.StreamWriter) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        path, _, query = request.target.partition("?")
        parts = RequestParts(
            method=request.method,
            scheme="http",
            authority=request.headers.get("host", ""),
            path=path,
            query=query,
            headers=tuple(request.headers.items()),
            body=request.body,
        )
        try:
            signature = parse_signature(parts)
            pem = self.keys.get(signature.key_id)
            verified = pem is not None and signature.verify(pem)
            key_id = signature.key_id
        except SignatureError:
            verified, key_id = False, ""
        self.received.append(Delivery(path, json.loads(request.body), key_id, verified))
        status, headers = self.script.pop(0) if self.script else (202, {})
        await respond(status, b"", headers)(request, writer)


@asynccontextmanager
async def remote_inbox(host: str = "127.0.0.1") -> AsyncIterator[RemoteInbox]:
    async with local_server(host) as server:
        inbox = RemoteInbox(server)
        server.routes["/inbox"] = inbox.route
        yield inbox


async def remote_person(
    db: AsyncSession, inbox: RemoteInbox, name: str, *, shared: bool = True
) -> Account:
    """A remote account living on `inbox`'s server, as the inbox would have stored it."""
    uri = f"{inbox.base}/users/{name}"
    account = Account(username=name, username_key=name.casefold(), domain=inbox.host, uri=uri)
    db.add(account)
    await db.flush()
    inbox.server.routes[f"/users/{name}/inbox"] = inbox.route
    db.add(
        RemoteActor(
            account_id=account.id,
            inbox_url=inbox.personal_inbox(name),
            shared_inbox_url=inbox.shared_inbox if shared else None,
            followers_url=f"{uri}/followers",
        )
    )
    await db.commit()
    return account


async def learn_keys(db: AsyncSession, *inboxes: RemoteInbox) -> None:
    """Give the remote inboxes the public keys of this instance's actors (as they would
    fetch them)."""
    rows = await db.execute(select(ActorKey.key_id, ActorKey.public_key_pem))
    for key_id, pem in rows.all():
        for inbox in inboxes:
            inbox.keys[key_id] = pem


async def run_jobs(rt: Runtime) -> int:
    """Run every due job (deliveries, and anything they schedule for now)."""
    ran = 0
    for _ in range(50):
        n = await worker.run_once(rt.sessions, "test-worker", limit=50)
        if not n:
            return ran
        ran += n
    return ran
