"""Two people in two real browsers: follow, a post that shows up live, a like, a notification;
and a followers-only post that a logged-out visitor can't open."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from playwright.async_api import expect

from tests.browser.steps import follow, stream_ready, write_post

if TYPE_CHECKING:
    from tests.browser.conftest import People

pytestmark = pytest.mark.browser


async def test_followed_persons_post__shows_up_live_in_home_and_a_like_notifies_the_author(
    people: People,
) -> None:
    # Given alice and bob signed up, bob follows alice and has Home open
    alice = await people.sign_up("alice")
    bob = await people.sign_up("bob")
    await follow(bob.page, alice.name)
    await bob.page.goto("/home")
    await stream_ready(bob.page)
    # A mark on bob's window: it survives as long as the page is not reloaded
    await bob.page.evaluate("window.notReloaded = true")

    # When alice posts from her Home
    await alice.page.reload()
    await write_post(alice.page, "Seedlings are up in the east beds")

    # Then bob's Home offers the new post without reloading, and shows it on click
    new_posts = bob.page.locator("#new-posts")
    await expect(new_posts).to_be_visible()
    await expect(new_posts).to_have_text("Show 1 new post")
    assert await bob.page.evaluate("window.notReloaded === true")
    await expect(bob.card("Seedlings are up")).to_have_count(0)
    await new_posts.get_by_role("link").click()
    await expect(bob.card("Seedlings are up")).to_be_visible()
    await expect(bob.page.locator("#new-posts")).to_be_hidden()

    # When bob likes it while alice has Home open (her unread badge counts bob's follow)
    await stream_ready(alice.page)
    badge = alice.page.locator("#unread")
    await expect(badge).to_have_text("1")
    await bob.card("Seedlings are up").get_by_role("button", name="Like").click()
    await expect(bob.card("Seedlings are up").get_by_role("button", name="Like")).to_have_attribute(
        "aria-pressed", "true"
    )

    # Then alice's badge goes up live, and her notifications say who liked what
    await expect(badge).to_have_text("2")
    await alice.page.get_by_role("link", name="Notifications").click()
    liked = alice.page.locator("li.notification.favourite.unread")
    await expect(liked).to_contain_text(f"{bob.name}")
    await expect(liked).to_contain_text("liked your post")
    await expect(liked).to_contain_text("Seedlings are up")
    await expect(alice.page.locator("li.notification.follow")).to_contain_text("followed you")
    # And marking them read clears the badge
    await alice.page.get_by_role("button", name="Mark all as read").click()
    await expect(alice.page.locator("#unread")).to_be_hidden()


async def test_followers_only_post__logged_out_visitor_gets_the_not_found_page(
    people: People,
) -> None:
    # Given alice posted to her followers only
    alice = await people.sign_up("alice")
    await write_post(alice.page, "Gate code for the allotment is 4711", audience="Followers only")
    link = alice.card("Gate code").locator("a.when")
    post_path = await link.get_attribute("href")
    assert post_path and post_path.startswith(f"/@{alice.name}/")
    # (she herself can open it)
    await link.click()
    await expect(alice.page.locator(".focus")).to_contain_text("Gate code")

    # When someone who is not signed in opens its address
    visitor = await people.tab()
    response = await visitor.goto(post_path)

    # Then they get the "not found" page, without the text
    assert response is not None and response.status == 404
    await expect(visitor.get_by_role("heading", name="Not found")).to_be_visible()
    assert "4711" not in await visitor.content()
    # And alice's public profile doesn't list it either
    await visitor.goto(f"/@{alice.name}")
    await expect(visitor.get_by_role("heading", name=alice.name)).to_be_visible()
    assert "4711" not in await visitor.content()
