"""A community's composer (`/c/HANDLE`) does what the main composer does — images with alt
text, a poll — and cross-posts: "also post to" other communities the person is a member of,
one post shown once with its communities. Refusals come back as form errors with nothing
written (no post, no image kept)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.communities import service as communities
from kith.communities.models import Community, CommunityPost, MembershipModel
from kith.communities.service import CommunityInput
from kith.config import Settings
from kith.media.models import MediaAttachment
from kith.posts.models import Poll, Post
from tests.test_accounts_images import jpeg_with_gps, png
from tests.world import Browser, browser, person


async def found(
    db: AsyncSession,
    owner: Account,
    handle: str,
    membership: MembershipModel = MembershipModel.OPEN,
) -> Community:
    data = CommunityInput(name=handle.capitalize(), membership=membership)
    return await communities.create_community(db, owner.id, handle, data)


async def count(db: AsyncSession, model: Any, *where: Any) -> int:
    stmt = select(func.count()).select_from(model).where(*where)
    return int(await db.scalar(stmt.execution_options(populate_existing=True)) or 0)


async def signed_in(b: Browser, name: str) -> Browser:
    await b.sign_in(name)
    return b


async def test_composer__posts_an_image_with_alt_text_or_a_poll_into_the_community(
    db: AsyncSession, settings: Settings
) -> None:
    # Given bob, a member of the gardeners
    ann = await person(db, "ann")
    bob = await person(db, "bob")
    gardeners = await found(db, ann, "gardeners")
    await communities.join(db, bob.id, gardeners)
    async with browser(settings) as b:
        await signed_in(b, "bob")
        page = (await b.get("/c/gardeners")).text
        # The page's composer offers images and a poll, as the main one does
        assert 'enctype="multipart/form-data"' in page
        assert 'name="media_file_0"' in page and 'name="poll_option"' in page
        # When he posts a photo with its description, without JavaScript
        r = await b.post(
            "/c/gardeners/posts",
            {"status": "Seeds came", "media_description_0": "Two seed packets"},
            files={"media_file_0": ("seeds.jpg", jpeg_with_gps(), "image/jpeg")},
        )
        assert r.status_code == 303 and "notice=posted" in r.headers["location"]
        # and then a poll
        r = await b.post(
            "/c/gardeners/posts",
            {"status": "Which first?", "poll_option": ["Beans", "Peas"], "poll_expires_in": "3600"},
        )
        assert r.status_code == 303
        # Then both threads are in the community's feed, the image with its alt text
        feed = (await b.get("/c/gardeners")).text
        assert "Seeds came" in feed and 'alt="Two seed packets"' in feed
        assert "Which first?" in feed and "Beans" in feed
        # and a poll with images is refused as the main composer refuses it
        r = await b.post(
            "/c/gardeners/posts",
            {"status": "Both", "poll_option": ["A", "B"], "media_description_0": "x"},
            files={"media_file_0": ("a.png", png(), "image/png")},
        )
        assert r.status_code == 422 and "poll or attachments" in r.text
    threads = (await db.scalars(select(Post).where(Post.account_id == bob.id))).all()
    assert len(threads) == 2
    assert await count(db, CommunityPost, CommunityPost.community_id == gardeners.id) == 2
    assert await count(db, MediaAttachment) == 1  # the refused post's image is not kept
    polls = (await db.scalars(select(Poll))).all()
    assert [p.options for p in polls] == [["Beans", "Peas"]]


async def test_composer__also_post_to_my_other_communities_one_post_with_both(
    db: AsyncSession, settings: Settings
) -> None:
    # Given bob, a member of the gardeners, the roses and a private club; not of the bees
    ann = await person(db, "ann")
    bob = await person(db, "bob")
    gardeners = await found(db, ann, "gardeners")
    roses = await found(db, ann, "roses")
    await found(db, ann, "bees")
    club = await found(db, ann, "club", MembershipModel.PRIVATE)
    for community in (gardeners, roses):
        await communities.join(db, bob.id, community)
    _, code = await communities.create_invite(db, ann.id, club)
    await communities.join(db, bob.id, club, invite_code=code)
    async with browser(settings) as b:
        await signed_in(b, "bob")
        page = (await b.get("/c/gardeners")).text
        # The composer offers the roses only: not the bees (not a member), not the private club
        # (its posts stay in it), not the gardeners themselves
        offered = page[page.index('class="cross-post"') :]
        offered = offered[: offered.index("</fieldset>")]
        assert f'value="{roses.id}"' in offered and "!roses" in offered
        assert "!bees" not in offered and "!club" not in offered and "!gardeners" not in offered
        # When he posts to the gardeners, also to the roses
        r = await b.post("/c/gardeners/posts", {"status": "Mulch now", "also_in": [str(roses.id)]})
        assert r.status_code == 303
        # Then one post is in both, and its card names both
        made = await db.scalar(select(Post).where(Post.account_id == bob.id))
        assert made is not None and await count(db, Post) == 1
        rows = await db.scalars(
            select(CommunityPost.community_id).where(CommunityPost.post_id == made.id)
        )
        assert set(rows.all()) == {gardeners.id, roses.id}
        feed = (await b.get("/c/roses")).text
        assert feed.count("Mulch now") == 1 and "!gardeners" in feed and "!roses" in feed
        # A private community's composer offers no cross-post
        assert 'class="cross-post"' not in (await b.get("/c/club")).text


async def test_composer__a_community_i_am_not_in_is_a_form_error_naming_it_and_nothing_is_kept(
    db: AsyncSession, settings: Settings
) -> None:
    ann = await person(db, "ann")
    bob = await person(db, "bob")
    gardeners = await found(db, ann, "gardeners")
    bees = await found(db, ann, "bees")
    club = await found(db, ann, "club", MembershipModel.PRIVATE)
    await communities.join(db, bob.id, gardeners)
    async with browser(settings) as b:
        await signed_in(b, "bob")
        # When he forges a cross-post to a community he is not in, with an image
        r = await b.post(
            "/c/gardeners/posts",
            {"status": "Sneaky", "also_in": [str(bees.id)], "media_description_0": "x"},
            files={"media_file_0": ("a.png", png(), "image/png")},
        )
        # Then the page says which, keeps his text and ticks, and nothing is written
        assert r.status_code == 422
        assert "Only members can post in !bees" in r.text and "Sneaky" in r.text
        # to a private community, or something that is no community id
        r = await b.post("/c/gardeners/posts", {"status": "Hi", "also_in": [str(club.id)]})
        assert r.status_code == 422 and "private community" in r.text
        r = await b.post("/c/gardeners/posts", {"status": "Hi", "also_in": ["1; DROP"]})
        assert r.status_code == 422 and "No such community" in r.text
    assert await count(db, Post) == 0
    assert await count(db, CommunityPost) == 0
    assert await count(db, MediaAttachment) == 0


async def test_composer__too_many_communities_is_refused(
    db: AsyncSession, settings: Settings
) -> None:
    ann = await person(db, "ann")
    bob = await person(db, "bob")
    mine = [await found(db, ann, f"c{i}") for i in range(6)]
    for community in mine:
        await communities.join(db, bob.id, community)
    async with browser(settings) as b:
        await signed_in(b, "bob")
        others = [str(c.id) for c in mine[1:]]
        r = await b.post("/c/c0/posts", {"status": "Everywhere", "also_in": others})
        assert r.status_code == 422 and "at most 5 communities" in r.text
    assert await count(db, Post) == 0


async def test_composer__an_oversized_image_is_the_media_error_and_nothing_is_kept(
    db: AsyncSession, settings: Settings
) -> None:
    # Given an instance taking images of at most 1 kB
    settings.max_image_bytes = 1024
    ann = await person(db, "ann")
    await found(db, ann, "gardeners")
    async with browser(settings) as b:
        await signed_in(b, "ann")
        small = ("a.png", png(), "image/png")
        big = ("b.png", png((300, 300), (1, 2, 3)) + b"\x00" * 2048, "image/png")
        r = await b.post(
            "/c/gardeners/posts",
            {"status": "Two photos"},
            files={"media_file_0": small, "media_file_1": big},
        )
        # Then the composer says which image, next to the images
        assert r.status_code == 422 and "Image 2:" in r.text and "too large" in r.text
        assert 'id="media-error"' in r.text
        # and a body far past what the composer takes is refused before it is read
        huge = ("c.png", b"\x00" * (4 * 1024 + 1024 * 1024 + 1), "image/png")
        r = await b.post("/c/gardeners/posts", {"status": "x"}, files={"media_file_0": huge})
        assert r.status_code == 413
    assert await count(db, Post) == 0 and await count(db, MediaAttachment) == 0
