"""What a person does in the browser, step by step, through the real forms."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from playwright.async_api import Locator, Page, expect

from tests.world import PASSWORD

_serial = itertools.count(1)


def unique(name: str) -> str:
    """A username nobody on the (shared) test server has yet."""
    return f"{name}{next(_serial)}"


@dataclass
class Person:
    """Someone with their own browser context (cookies) and one open tab."""

    name: str
    page: Page

    def card(self, text: str) -> Locator:
        """The post card (in whatever list the page shows) that contains `text`."""
        return self.page.locator("article.post", has_text=text)


async def sign_up(page: Page, name: str) -> None:
    """Fill in and send the sign-up form; lands on Home."""
    await page.goto("/auth/sign_up")
    await page.get_by_label("Username").fill(name)
    await page.get_by_label("Email").fill(f"{name}@example.test")
    await page.get_by_label("Password", exact=True).fill(PASSWORD)
    await page.get_by_label("Password again").fill(PASSWORD)
    await page.get_by_label("I accept the rules").check()
    await page.get_by_role("button", name="Sign up").click()
    await page.wait_for_url("**/home")


async def sign_in(page: Page, name: str) -> None:
    await page.goto("/auth/sign_in")
    await page.get_by_label("Username or email").fill(name)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/home")


async def sign_out(page: Page) -> None:
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/local")


async def follow(page: Page, name: str) -> None:
    await page.goto(f"/@{name}")
    await page.get_by_role("button", name="Follow", exact=True).click()
    await expect(page.get_by_role("button", name="Unfollow")).to_be_visible()


async def write_post(page: Page, text: str, audience: str = "Public") -> None:
    """Post from the composer of the current page; waits until the post is listed."""
    await page.get_by_label("What's on your mind?").fill(text)
    await page.get_by_label("Audience").select_option(label=audience)
    await page.get_by_role("button", name="Post", exact=True).click()
    await expect(page.locator("article.post", has_text=text)).to_be_visible()


async def stream_ready(page: Page) -> None:
    """Wait until kith.js's live stream listens (the box is still hidden then)."""
    await expect(page.locator("#new-posts")).to_have_attribute("data-live", "ready")


async def horizontal_overflow(page: Page) -> int:
    """How many CSS pixels the page is wider than the viewport (0 when it fits)."""
    return int(await page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))
