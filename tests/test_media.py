"""Image attachments through the service and the web UI: what is accepted and refused, what
is stripped, who sees what, and that files go when their post (or an unused upload) goes."""

from __future__ import annotations

import io
import re
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.config import Settings
from kith.db import utcnow
from kith.errors import NotFound, ValidationFailed
from kith.graph import service as graph
from kith.jobs.cleanup import cleanup
from kith.jobs.worker import run_once
from kith.media import service as media
from kith.media.models import MediaAttachment
from kith.posts import presenter
from kith.posts import service as posts
from kith.posts.models import Post, Visibility
from kith.posts.service import PostInput
from kith.runtime import Runtime
from kith.timelines import service as timelines
from tests.test_accounts_images import jpeg_with_gps, png, png_bomb
from tests.world import Browser, person, post, viewer


def media_dir(settings: Settings) -> Path:
    return settings.effective_media_dir


def files_of(settings: Settings, m: MediaAttachment) -> list[Path]:
    return [media_dir(settings) / p for p in (m.file_path, m.preview_path) if p]


async def upload(db: AsyncSession, who: Account, data: bytes | None = None, alt: str = "") -> int:
    row = await media.upload(db, who, data or png(), "image/png", description=alt)
    return row.id


async def count_posts(db: AsyncSession) -> int:
    return int(await db.scalar(select(func.count()).select_from(Post)) or 0)


# --- uploads ---------------------------------------------------------------------------------


async def test_upload__phone_photo__served_file_has_no_gps_and_is_upright(
    db: AsyncSession, settings: Settings, app_client: Browser
) -> None:
    # Given a phone photo carrying GPS, a camera name and a "rotate 90°" flag
    alice = await person(db, "alice")
    # When it is uploaded
    row = await media.upload(db, alice, jpeg_with_gps((60, 40)), "image/jpeg", "A red square")
    # Then the file served at /media/ is a WebP with no metadata, turned upright
    assert row.file_path and row.preview_path
    r = await app_client.get(f"/media/{row.file_path}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
    assert b"SpyCam" not in r.content and b"KITH-ICC" not in r.content
    img = Image.open(io.BytesIO(r.content))
    assert img.format == "WEBP"
    assert len(img.getexif()) == 0 and "exif" not in img.info and "icc_profile" not in img.info
    assert img.size == (40, 60) == (row.width, row.height)
    # And it has a preview and a blurhash
    assert row.blurhash and len(row.blurhash) > 6
    assert (await app_client.get(f"/media/{row.preview_path}")).status_code == 200


async def test_upload__large_image__capped_at_2560_with_a_400_px_preview(
    db: AsyncSession,
) -> None:
    # Given a wide panorama
    alice = await person(db, "alice")
    # When it is uploaded
    row = await media.upload(db, alice, png((3000, 1000)), "image/png")
    # Then the full size is at most 2560 px wide, and the preview 400 px, aspect kept
    assert (row.width, row.height) == (2560, 853)
    assert (row.preview_width, row.preview_height) == (400, 133)


async def test_upload__png_bomb__refused_and_nothing_stored(
    db: AsyncSession, settings: Settings
) -> None:
    # Given a tiny PNG that claims 400 million pixels
    alice = await person(db, "alice")
    # When it is uploaded, Then it is refused as an unfit file
    with pytest.raises(ValidationFailed) as err:
        await media.upload(db, alice, png_bomb(), "image/png")
    assert err.value.field == "file" and "pixels" in err.value.message
    # And no row and no file were kept
    assert await db.scalar(select(func.count()).select_from(MediaAttachment)) == 0
    assert not any(p.is_file() for p in media_dir(settings).rglob("*"))


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"%PDF-1.4 not an image", "application/pdf"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
        (b"\x00\x00\x00\x18ftypmp42", "video/mp4"),
        (b"", "image/png"),
    ],
)
async def test_upload__not_an_image__refused(
    db: AsyncSession, data: bytes, content_type: str
) -> None:
    alice = await person(db, "alice")
    with pytest.raises(ValidationFailed) as err:
        await media.upload(db, alice, data, content_type)
    assert err.value.field == "file"


async def test_upload__over_the_size_setting__refused(db: AsyncSession, rt: Runtime) -> None:
    # Given an instance that takes images of at most 1 kB
    rt.settings.max_image_bytes = 1024
    alice = await person(db, "alice")
    # When a bigger image is uploaded, Then it is refused
    with pytest.raises(ValidationFailed, match="too large"):
        await media.upload(db, alice, png((300, 300), (1, 2, 3)) + b"\x00" * 2048, "image/png")


async def test_describe__over_1500_characters__refused(db: AsyncSession) -> None:
    alice = await person(db, "alice")
    with pytest.raises(ValidationFailed) as err:
        await media.upload(db, alice, png(), "image/png", description="x" * 1501)
    assert err.value.field == "description"
    media_id = await upload(db, alice)
    with pytest.raises(ValidationFailed):
        await media.update(db, alice, media_id, description="y" * 1501)
    ok = await media.update(db, alice, media_id, description="y" * 1500, focus=media.Focus(-1, 1))
    assert len(ok.description) == 1500 and (ok.focus_x, ok.focus_y) == (-1, 1)


@pytest.mark.parametrize("raw", ["1", "a,b", "2,0", "0,-1.5", "nan,0", "0,0,0"])
def test_parse_focus__malformed_or_out_of_range__refused(raw: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        media.parse_focus(raw)
    assert err.value.field == "focus"


# --- attaching -------------------------------------------------------------------------------


async def test_create_post__attachments_in_order__and_text_may_be_empty(db: AsyncSession) -> None:
    # Given two uploads
    alice = await person(db, "alice")
    first, second = await upload(db, alice, alt="first"), await upload(db, alice, alt="second")
    # When a post without text attaches them, second first
    made = await posts.create_post(db, alice, PostInput(source="", media_ids=[second, first]))
    # Then the post shows both, in that order, with their descriptions
    [view] = await presenter.present(db, viewer(alice), [made])
    assert [m.id for m in view.media] == [second, first]
    assert [m.description for m in view.media] == ["second", "first"]


async def test_create_post__someone_elses_upload__refused_and_no_post_written(
    db: AsyncSession,
) -> None:
    # Given bob's upload
    alice, bob = await person(db, "alice"), await person(db, "bob")
    bobs = await upload(db, bob)
    mine = await upload(db, alice)
    # When alice tries to attach it
    with pytest.raises(ValidationFailed) as err:
        await posts.create_post(db, alice, PostInput(source="look", media_ids=[mine, bobs]))
    # Then nothing was posted and both uploads are still free
    assert err.value.field == "media_ids"
    assert await count_posts(db) == 0
    rows = (await db.scalars(select(MediaAttachment))).all()
    assert all(m.post_id is None for m in rows)


async def test_create_post__five_attachments__refused(db: AsyncSession) -> None:
    alice = await person(db, "alice")
    ids = [await upload(db, alice) for _ in range(5)]
    with pytest.raises(ValidationFailed, match="at most 4"):
        await posts.create_post(db, alice, PostInput(source="five", media_ids=ids))
    assert await count_posts(db) == 0


async def test_create_post__upload_already_on_a_post__refused(db: AsyncSession) -> None:
    alice = await person(db, "alice")
    media_id = await upload(db, alice)
    await posts.create_post(db, alice, PostInput(source="one", media_ids=[media_id]))
    with pytest.raises(ValidationFailed):
        await posts.create_post(db, alice, PostInput(source="two", media_ids=[media_id]))
    assert await count_posts(db) == 1


async def test_create_post__poll_and_attachments__refused(db: AsyncSession) -> None:
    alice = await person(db, "alice")
    media_id = await upload(db, alice)
    data = PostInput(source="which?", media_ids=[media_id], poll=posts.PollInput(["a", "b"], 3600))
    with pytest.raises(ValidationFailed):
        await posts.create_post(db, alice, data)
    assert await count_posts(db) == 0


async def test_edit_post__alt_text_changes__attachments_do_not(db: AsyncSession) -> None:
    # Given a post with one image
    alice = await person(db, "alice")
    media_id = await upload(db, alice, alt="old")
    other = await upload(db, alice)
    made = await posts.create_post(db, alice, PostInput(source="pic", media_ids=[media_id]))
    # When the post is edited with a new description, Then the description changes
    await posts.edit_post(
        db,
        viewer(alice),
        made.id,
        PostInput(source="", media_ids=[media_id], media_descriptions={media_id: "new"}),
    )
    assert [m.description for m in await media.for_post(db, made.id)] == ["new"]
    # But an edit may not add another image
    with pytest.raises(ValidationFailed) as err:
        await posts.edit_post(
            db, viewer(alice), made.id, PostInput(source="pic", media_ids=[media_id, other])
        )
    assert err.value.field == "media_ids"


# --- who sees it ---------------------------------------------------------------------------


async def test_followers_only_post__media_seen_by_followers_only(db: AsyncSession) -> None:
    # Given alice's followers-only post with an image, bob follows her, carol doesn't
    alice, bob, carol = [await person(db, n) for n in ("alice", "bob", "carol")]
    await graph.follow(db, bob.id, alice.id)
    media_id = await upload(db, alice, alt="secret garden")
    made = await post(db, alice, "for friends", visibility=Visibility.PRIVATE, media_ids=[media_id])
    row = await db.get(MediaAttachment, media_id)
    assert row is not None
    # Then alice and bob may see the attachment; carol and strangers may not
    assert await policy.can_see_media(db, viewer(alice), row)
    assert await policy.can_see_media(db, viewer(bob), row)
    assert not await policy.can_see_media(db, viewer(carol), row)
    assert not await policy.can_see_media(db, policy.ANONYMOUS, row)
    # And carol finds it nowhere: not by id, not in alice's Media tab
    with pytest.raises(NotFound):
        await media.get_visible(db, viewer(carol), media_id)
    assert (await timelines.profile(db, viewer(carol), alice, tab="media")).posts == []
    assert [p.id for p in (await timelines.profile(db, viewer(bob), alice, tab="media")).posts] == [
        made.id
    ]


async def test_unattached_upload__seen_by_its_uploader_only(db: AsyncSession) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    row = await media.upload(db, alice, png(), "image/png")
    assert await policy.can_see_media(db, viewer(alice), row)
    assert not await policy.can_see_media(db, viewer(bob), row)
    assert not await policy.can_see_media(db, viewer(bob, admin=True), row)


async def test_media_tab_and_only_media__posts_with_attachments_only(db: AsyncSession) -> None:
    alice = await person(db, "alice")
    await post(db, alice, "just words")
    with_image = await post(db, alice, "a picture", media_ids=[await upload(db, alice)])
    me = viewer(alice)
    assert [p.id for p in (await timelines.profile(db, me, alice, tab="media")).posts] == [
        with_image.id
    ]
    assert [p.id for p in (await timelines.local(db, me, only_media=True)).posts] == [with_image.id]
    assert len((await timelines.local(db, me)).posts) == 2


# --- files go when their rows go -------------------------------------------------------------


async def test_delete_post__removes_its_attachments_and_files(
    db: AsyncSession, settings: Settings, rt: Runtime
) -> None:
    # Given a post with two images
    alice = await person(db, "alice")
    ids = [await upload(db, alice), await upload(db, alice)]
    made = await post(db, alice, "two", media_ids=ids)
    rows = await media.for_post(db, made.id)
    files = [f for m in rows for f in files_of(settings, m)]
    assert len(files) == 4 and all(f.is_file() for f in files)
    # When the post is deleted
    await posts.delete_post(db, viewer(alice), made.id)
    # Then its attachment rows and files are gone at once
    assert await db.scalar(select(func.count()).select_from(MediaAttachment)) == 0
    assert not any(f.exists() for f in files)
    # And the follow-up job finds nothing left to do (and does not fail)
    while await run_once(rt.sessions, "test"):
        pass


async def test_cleanup__forgets_uploads_left_unattached_for_a_day(
    db: AsyncSession, settings: Settings, rt: Runtime
) -> None:
    # Given an upload from yesterday never posted, one from just now, and an old posted one
    alice = await person(db, "alice")
    stale = await media.upload(db, alice, png(), "image/png")
    fresh = await media.upload(db, alice, png(), "image/png")
    posted_id = await upload(db, alice)
    await post(db, alice, "kept", media_ids=[posted_id])
    posted = await db.get(MediaAttachment, posted_id)
    assert posted is not None
    stale.created_at = posted.created_at = utcnow() - timedelta(hours=25)
    await db.commit()
    stale_files = files_of(settings, stale)
    # When the periodic clean-up runs, then the jobs it leaves behind
    await cleanup(db, {})
    await db.commit()
    while await run_once(rt.sessions, "test"):
        pass
    # Then only yesterday's unused upload is gone, row and files
    left = set((await db.scalars(select(MediaAttachment.id))).all())
    assert left == {fresh.id, posted_id}
    assert not any(f.exists() for f in stale_files)
    assert all(f.is_file() for f in files_of(settings, fresh) + files_of(settings, posted))


# --- the web composer and post cards ---------------------------------------------------------

IMG_RE = re.compile(r'<img src="/media/(attachments/small/[^"]+)" alt="([^"]*)"')


async def test_web_composer__posts_an_image_with_alt_text(
    db: AsyncSession, app_client: Browser
) -> None:
    # Given alice signed in on the web
    await person(db, "alice")
    await app_client.sign_in("alice")
    # When she posts a photo with a description, without any JavaScript (a multipart form)
    r = await app_client.post(
        "/posts",
        {"status": "Our garden", "visibility": "public", "media_description_0": "Tomatoes"},
        files={"media_file_0": ("garden.jpg", jpeg_with_gps(), "image/jpeg")},
    )
    assert r.status_code == 303
    # Then her post page shows the image with its alt text
    page = await app_client.get(r.headers["location"])
    found = IMG_RE.findall(page.text)
    assert [alt for _, alt in found] == ["Tomatoes"]
    assert (await app_client.get(f"/media/{found[0][0]}")).status_code == 200


async def test_web_composer__not_an_image__form_error_and_nothing_kept(
    db: AsyncSession, app_client: Browser
) -> None:
    await person(db, "alice")
    await app_client.sign_in("alice")
    r = await app_client.post(
        "/posts",
        {"status": "two files", "media_description_0": "ok", "media_description_1": "bad"},
        files={
            "media_file_0": ("a.png", png(), "image/png"),
            "media_file_1": ("b.txt", b"hello", "text/plain"),
        },
    )
    assert r.status_code == 422 and "Image 2:" in r.text
    assert await count_posts(db) == 0
    assert await db.scalar(select(func.count()).select_from(MediaAttachment)) == 0


async def test_web_post_card__content_warning_hides_images_behind_details(
    db: AsyncSession, app_client: Browser
) -> None:
    alice = await person(db, "alice")
    made = await post(
        db, alice, "spoilers", spoiler_text="finale", media_ids=[await upload(db, alice, alt="x")]
    )
    page = (await app_client.get(f"/@alice/{made.id}")).text
    details = page[page.index('<details class="cw">') : page.index("</details>")]
    assert 'alt="x"' in details
    assert page.count('alt="x"') == 1


async def test_web_edit__changes_alt_text(db: AsyncSession, app_client: Browser) -> None:
    alice = await person(db, "alice")
    media_id = await upload(db, alice, alt="before")
    made = await post(db, alice, "pic", media_ids=[media_id])
    await app_client.sign_in("alice")
    edit_page = await app_client.get(f"/posts/{made.id}/edit")
    assert f'name="alt_{media_id}"' in edit_page.text and "before" in edit_page.text
    r = await app_client.post(
        f"/posts/{made.id}/edit", {"status": "pic", f"alt_{media_id}": "after"}
    )
    assert r.status_code == 303
    page = await app_client.get(f"/@alice/{made.id}")
    assert 'alt="after"' in page.text


async def test_web_post_card__sensitive_images_wait_behind_details(
    db: AsyncSession, app_client: Browser
) -> None:
    # Given a post marked sensitive, without a content warning
    alice = await person(db, "alice")
    made = await post(db, alice, "vet visit", sensitive=True, media_ids=[await upload(db, alice)])
    # Then its text shows but its image waits behind a "sensitive media" disclosure
    page = (await app_client.get(f"/@alice/{made.id}")).text
    start = page.index('<details class="cw sensitive-media">')
    assert "vet visit" in page[:start]
    assert "/media/attachments/small/" in page[start : page.index("</details>", start)]
