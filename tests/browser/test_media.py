"""Posting a photo from a phone, without JavaScript: the composer's file input and alt text,
then the post card shows the image, described, without sideways scrolling."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from playwright.async_api import expect

from tests.browser.conftest import People
from tests.browser.steps import horizontal_overflow

pytestmark = pytest.mark.browser


def wide_photo() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (2400, 800), (30, 140, 90)).save(out, "JPEG")
    return out.getvalue()


async def test_phone_without_js__posts_a_photo_with_alt_text_that_fits_the_screen(
    people: People,
) -> None:
    # Given gina on a 390 px phone with JavaScript off
    gina = await people.sign_up("gina", js=False, phone=True)
    page = gina.page
    await page.goto("/home")

    # When she picks a wide photo, describes it and posts
    await page.get_by_text("Add images").click()
    await page.get_by_label("Image 1", exact=True).set_input_files(
        files=[{"name": "hills.jpg", "mimeType": "image/jpeg", "buffer": wide_photo()}]
    )
    await page.get_by_label("Image 1 description (alt text)").fill("Green hills at dawn")
    await page.get_by_label("What's on your mind?").fill("Morning walk")
    await page.get_by_role("button", name="Post", exact=True).click()

    # Then her post shows the photo with its description, within the screen's width
    image = page.get_by_role("img", name="Green hills at dawn")
    await expect(image).to_be_visible()
    box = await image.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    assert await horizontal_overflow(page) <= 0
