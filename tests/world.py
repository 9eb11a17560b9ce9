"""A small named fake world every test can build on: people, follows, posts."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts import service as accounts
from kith.accounts.models import Account
from kith.app import create_app
from kith.config import Settings
from kith.posts import service as posts
from kith.posts.models import Post, Visibility
from kith.posts.service import PostInput

PASSWORD = "correct horse battery"


async def person(
    db: AsyncSession, name: str, *, admin: bool = False, locked: bool = False
) -> Account:
    """A local account named `name` (password PASSWORD)."""
    reg = await accounts.register(
        db,
        username=name,
        email=f"{name}@example.test",
        password=PASSWORD,
        admin=admin,
        bypass_mode=True,
    )
    if locked:
        reg.account.locked = True
        await db.commit()
    return reg.account


async def post(
    db: AsyncSession,
    author: Account,
    source: str,
    *,
    visibility: Visibility = Visibility.PUBLIC,
    reply_to: Post | None = None,
    **kwargs: object,
) -> Post:
    data = PostInput(
        source=source,
        visibility=visibility,
        in_reply_to_id=reply_to.id if reply_to else None,
        **kwargs,
    )  # type: ignore[arg-type]
    return await posts.create_post(db, author, data)


def viewer(account: Account | None, admin: bool = False) -> policy.Viewer:
    return policy.Viewer(account.id, admin) if account else policy.ANONYMOUS


CSRF_RE = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


@dataclass
class Browser:
    """An HTTP client that behaves like a browser with cookies: it reads the CSRF token from
    the last page it fetched and sends it with each form."""

    client: httpx.AsyncClient
    csrf: str = ""

    async def get(self, url: str, **kw: object) -> httpx.Response:
        r = await self.client.get(url, **kw)  # type: ignore[arg-type]
        m = CSRF_RE.search(r.text)
        if m:
            self.csrf = m.group(1)
        return r

    async def post(
        self, url: str, data: dict[str, object] | None = None, **kw: object
    ) -> httpx.Response:
        if not self.csrf:
            await self.get("/auth/sign_in")
        body = {"csrf_token": self.csrf, **(data or {})}
        r = await self.client.post(url, data=body, **kw)  # type: ignore[arg-type]
        m = CSRF_RE.search(r.text)
        if m:
            self.csrf = m.group(1)
        return r

    async def sign_in(self, login: str, password: str = PASSWORD) -> httpx.Response:
        await self.get("/auth/sign_in")
        r = await self.post("/auth/sign_in", {"login": login, "password": password})
        await self.get("/home")  # the session changed: fetch a token bound to it
        return r


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan run, reachable over ASGI."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://kith.test") as client:
            yield client


@asynccontextmanager
async def browser(settings: Settings) -> AsyncIterator[Browser]:
    async with running_app(settings) as client:
        yield Browser(client)
