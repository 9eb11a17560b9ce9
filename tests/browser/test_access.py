"""Kith for everyone: core flows without JavaScript, posting with the keyboard alone, and
pages that fit a phone."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from playwright.async_api import expect

from tests.browser.steps import (
    follow,
    horizontal_overflow,
    sign_in,
    sign_out,
    write_post,
)

if TYPE_CHECKING:
    from tests.browser.conftest import People

pytestmark = pytest.mark.browser

SCREENSHOT = "/tmp/kith-home-phone.png"
MAX_TABS = 40


async def test_without_javascript__sign_up_follow_sign_in_read_home_and_post(
    people: People,
) -> None:
    # Given carol posted something
    carol = await people.sign_up("carol")
    await write_post(carol.page, "Seed swap on Saturday at the library")

    # When dave, whose browser runs no JavaScript, signs up, follows carol and signs back in
    dave = await people.sign_up("dave", js=False)
    await expect(dave.page.locator("#new-posts")).not_to_have_attribute("data-live", "ready")
    await follow(dave.page, carol.name)
    await sign_out(dave.page)
    await sign_in(dave.page, dave.name)

    # Then his Home lists carol's post
    await expect(dave.card("Seed swap on Saturday")).to_be_visible()
    # And he can post from Home
    await write_post(dave.page, "I'll bring tomato seeds")
    await expect(dave.page.locator("article.post").first).to_contain_text("tomato seeds")


async def test_keyboard_only__tab_to_the_composer_type_tab_to_post_and_press_enter(
    people: People,
) -> None:
    # Given erin on her Home, using only the keyboard (focus starts at the top of the page)
    erin = await people.sign_up("erin")
    page = erin.page
    await page.reload()

    # When she tabs to the text box and types
    presses = 0
    while await page.evaluate("document.activeElement.id") != "status":
        presses += 1
        assert presses <= 20, "the composer's text box is more than 20 tabs away"
        await page.keyboard.press("Tab")
    await page.keyboard.type("Typed without a mouse")

    # And tabs on to the Post button and presses Enter
    for _ in range(MAX_TABS):
        await page.keyboard.press("Tab")
        focused = await page.evaluate(
            "[document.activeElement.tagName, document.activeElement.textContent.trim()]"
        )
        if focused == ["BUTTON", "Post"]:
            break
    else:
        pytest.fail("the Post button was not reached with Tab")
    await page.keyboard.press("Enter")

    # Then the post is on her Home
    await expect(erin.card("Typed without a mouse")).to_be_visible()


async def test_phone_width__composer_and_nav_fit_without_sideways_scrolling(
    people: People,
) -> None:
    # Given frank on a 390 px wide phone
    frank = await people.sign_up("frank", phone=True)
    page = frank.page

    # When he posts something with a very long word and a long link from Home
    long_word = "Pneumonoultramicroscopicsilicovolcanoconiosis" * 3
    await write_post(page, f"{long_word} https://example.org/{'a' * 120}")

    # Then Home fits the screen: no sideways scrolling, nav and composer visible and usable
    assert await horizontal_overflow(page) <= 0
    for name in ("Home", "Local", "Notifications", "Profile"):
        link = page.get_by_role("navigation", name="Main").get_by_role("link", name=name)
        await expect(link).to_be_in_viewport()
        box = await link.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    textarea = page.get_by_label("What's on your mind?")
    box = await textarea.bounding_box()
    assert box is not None and box["width"] >= 300 and box["x"] + box["width"] <= 390
    await expect(page.get_by_role("button", name="Post", exact=True)).to_be_visible()
    await page.screenshot(path=SCREENSHOT, full_page=True)

    # And so do the other pages he reaches from the nav
    for path in (f"/@{frank.name}", "/notifications", "/local", "/compose"):
        response = await page.goto(path)
        assert response is not None and response.status < 400, path
        assert await horizontal_overflow(page) <= 0, path

    # And the nav works: Notifications opens from it
    await page.goto("/home")
    await page.get_by_role("link", name="Notifications").click()
    await expect(page.get_by_role("heading", name="Notifications")).to_be_visible()
