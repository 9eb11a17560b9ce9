"""Browser fixtures: one real `kith serve` (fresh SQLite) and one headless Debian Chromium,
shared by all browser tests and closed after them; each test gets fresh browser contexts
(their own cookies) for its people."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, async_playwright

from tests.browser.servers import KithServer, chromium_path, migrate, running_servers
from tests.browser.steps import Person, sign_up, unique

# Flags that work as root on this machine kind; the background-networking ones keep Chromium
# from flooding the closed network with connections it can't make.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE: ViewportSize = {"width": 390, "height": 844}
STEP_TIMEOUT_MS = 10_000


@pytest.fixture(scope="package")
def kith_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KithServer]:
    """A real server over a fresh, migrated SQLite file, shared by the browser tests (each
    test makes people with their own names, so they don't meet)."""
    workdir = tmp_path_factory.mktemp("browser-kith")
    database_url = f"sqlite+aiosqlite:///{workdir / 'kith.db'}"
    migrate(workdir, database_url)
    with running_servers(1, workdir, database_url) as (server,):
        yield server


@pytest.fixture(scope="package")
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless. Playwright gives each launch a fresh profile directory."""
    path = chromium_path()
    if path is None:
        pytest.skip("Debian's chromium is not installed (`make chromium`)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


class People:
    """Opens browser contexts for one test and closes them after it."""

    def __init__(self, browser: Browser, server: KithServer) -> None:
        self._browser = browser
        self._server = server
        self._contexts: list[BrowserContext] = []

    async def tab(self, *, js: bool = True, phone: bool = False) -> Page:
        """A fresh context (nobody signed in) with one tab."""
        context = await self._browser.new_context(
            base_url=self._server.base_url,
            java_script_enabled=js,
            viewport=PHONE if phone else None,
        )
        context.set_default_timeout(STEP_TIMEOUT_MS)
        self._contexts.append(context)
        return await context.new_page()

    async def sign_up(self, name: str, *, js: bool = True, phone: bool = False) -> Person:
        """Someone new who signed up through the form (their name gets a unique suffix)."""
        person = Person(unique(name), await self.tab(js=js, phone=phone))
        await sign_up(person.page, person.name)
        return person

    async def close(self) -> None:
        for context in self._contexts:
            await context.close()


@pytest.fixture
async def people(chromium: Browser, kith_server: KithServer) -> AsyncIterator[People]:
    crowd = People(chromium, kith_server)
    yield crowd
    await crowd.close()
