"""A community from start to moderation, in the browser: found it, invite a friend by link,
approve a request and a waiting post, remove a post and find it in the public modlog."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser.conftest import People
from tests.browser.steps import horizontal_overflow, unique

pytestmark = pytest.mark.browser


async def test_community__create_invite_approve_post_moderate_and_read_the_modlog(
    people: People,
) -> None:
    # Given hana founds a community where people ask to join and threads wait for approval
    hana = await people.sign_up("hana")
    page = hana.page
    handle = unique("allotment")
    await page.goto("/communities")
    await page.get_by_role("link", name="Start a community").click()
    await page.get_by_label("Handle").fill(handle)
    await page.get_by_label("Name", exact=True).fill("Allotment friends")
    await page.get_by_label("Description").fill("Plots, seeds and swaps")
    await page.get_by_label("Rules").fill("Be kind\nNo selling")
    await page.get_by_label("Topics").fill("allotment seeds")
    await page.get_by_label("Approval: people ask").check()
    await page.get_by_label("Question for people who ask to join").fill("Which plot is yours?")
    await page.get_by_label("New threads wait for a moderator's approval").check()
    await page.get_by_role("button", name="Start the community").click()
    await expect(page.get_by_role("heading", name="Allotment friends")).to_be_visible()
    await expect(page.get_by_text("You are the owner")).to_be_visible()

    # When she makes an invite link and sends it to her friend ivan
    await page.get_by_role("link", name="Invites").first.click()
    await page.get_by_label("Can be used").select_option(label="1 time")
    await page.get_by_role("button", name="Make an invite link").click()
    link = await page.get_by_label("New invite link").input_value()
    ivan = await people.sign_up("ivan")
    await ivan.page.goto(link)
    await ivan.page.get_by_role("button", name="Join with the invite").click()
    # Then ivan is in at once
    await expect(ivan.page.get_by_text("You are a member of this community")).to_be_visible()

    # And when jo asks to join with an answer, hana approves the request
    jo = await people.sign_up("jo")
    await jo.page.goto(f"/c/{handle}")
    await jo.page.get_by_label("Which plot is yours?").fill("Plot 12, by the shed")
    await jo.page.get_by_role("button", name="Ask to join").click()
    await expect(jo.page.get_by_text("waiting for the moderators").first).to_be_visible()
    await page.goto(f"/c/{handle}/requests")
    await expect(page.get_by_text("Plot 12, by the shed")).to_be_visible()
    await page.get_by_role("button", name=f"Approve @{jo.name}").click()
    await expect(page.get_by_text("No one is waiting")).to_be_visible()

    # When ivan posts twice into the community, both wait for approval
    for text in ("First tomatoes of the year", "Cheap pills, click here"):
        await ivan.page.goto(f"/c/{handle}")
        await ivan.page.get_by_label("Post in Allotment friends").fill(text)
        await ivan.page.get_by_role("button", name="Post", exact=True).click()
        await expect(ivan.page.get_by_text("waiting for a moderator's approval")).to_be_visible()
    await jo.page.goto(f"/c/{handle}")
    await expect(jo.card("First tomatoes")).to_have_count(0)

    # And hana approves both from the queue
    await page.goto(f"/c/{handle}/queue")
    for _ in range(2):
        await page.get_by_role("button", name="Approve").first.click()
    await expect(page.get_by_text("No posts are waiting")).to_be_visible()
    await jo.page.reload()
    await expect(jo.card("First tomatoes of the year")).to_be_visible()

    # When she removes the spam from the community page, with a reason
    await page.goto(f"/c/{handle}")
    thread = page.locator(".community-thread", has_text="Cheap pills")
    await thread.get_by_text("Moderate").click()
    await thread.get_by_label("Reason").fill("Selling is against rule 2")
    await thread.get_by_role("button", name="Remove from the community").click()

    # Then it is gone for members, and the public log says who removed whose post and why
    await jo.page.reload()
    await expect(jo.card("Cheap pills")).to_have_count(0)
    await expect(jo.card("First tomatoes of the year")).to_be_visible()
    await jo.page.get_by_role("link", name="Moderation log").click()
    entry = jo.page.locator(".modlog li", has_text="removed a post by")
    await expect(entry).to_contain_text(f"@{hana.name}")
    await expect(entry).to_contain_text(f"@{ivan.name}")
    await expect(entry).to_contain_text("Selling is against rule 2")
    await expect(jo.page.locator(".modlog li", has_text="let in")).to_contain_text(jo.name)


async def test_community_pages__fit_a_phone(people: People) -> None:
    # Given lena, on a 390 px phone, founds a community and opens its pages
    lena = await people.sign_up("lena", phone=True)
    page = lena.page
    handle = unique("pocketgarden")
    await page.goto("/communities/new")
    await page.get_by_label("Handle").fill(handle)
    await page.get_by_label("Name", exact=True).fill("Pocket gardens " + "very " * 12)
    await page.get_by_label("Description").fill("Balconies " * 40)
    await page.get_by_role("button", name="Start the community").click()
    await expect(page.get_by_text("You are the owner")).to_be_visible()

    # Then none of them scrolls sideways
    for path in ("", "/members", "/requests", "/bans", "/invites", "/queue", "/edit", "/log"):
        response = await page.goto(f"/c/{handle}{path}")
        assert response is not None and response.status == 200, path
        assert await horizontal_overflow(page) <= 0, path
    await page.goto("/communities")
    assert await horizontal_overflow(page) <= 0
