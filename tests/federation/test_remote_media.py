"""Remote media: other servers' images are fetched by a job through the SSRF-safe client,
cleaned like uploads and served from here; until then pages and the API show a placeholder and
the remote address, never an image from the other server. Refusals (too large, not an image,
a redirect to loopback, a domain whose media is rejected) leave the placeholder."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from PIL import Image
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.config import Settings
from kith.db import utcnow
from kith.federation.models import DomainBlock, RemoteActor
from kith.jobs.models import Job
from kith.media import remote as remote_media
from kith.media.models import MediaAttachment, MediaState
from kith.posts import presenter
from kith.runtime import Runtime, wait_for_background
from tests.federation.inbound import count, loopback
from tests.federation.local_http import LocalServer, local_server, redirect, respond
from tests.federation.peer import Peer
from tests.federation.remote_inbox import run_jobs
from tests.federation.remote_world import jpeg_with_gps, remote_account, remote_post, serve_image
from tests.world import person, running_app, viewer

pytestmark = pytest.mark.usefixtures("rt")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return loopback(settings)


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    async with local_server("127.0.0.1") as s:
        yield s


async def media_of(db: AsyncSession, post_id: int) -> MediaAttachment:
    row = await db.scalar(
        select(MediaAttachment)
        .where(MediaAttachment.post_id == post_id)
        .execution_options(populate_existing=True)
    )
    assert row is not None
    return row


async def test_remote_image__is_cached_cleaned_and_served_from_here(
    db: AsyncSession, settings: Settings, rt: Runtime, server: LocalServer
) -> None:
    # Given a remote post whose image carries GPS and a camera serial
    alice = await remote_account(db, server, "alice")
    url = serve_image(server, "/files/1.jpg", jpeg_with_gps(), "image/jpeg")
    post = await remote_post(db, alice, images=[url])
    await remote_media.enqueue_fetch(db, [(await media_of(db, post.id)).id])
    await db.commit()
    # When the jobs run
    await run_jobs(rt)
    # Then the file is ours: a WebP with no metadata, a preview, a blurhash
    media = await media_of(db, post.id)
    assert media.state == MediaState.READY and media.file_path and media.preview_path
    assert media.remote_fetched_at is not None and media.blurhash
    async with running_app(settings) as client:
        r = await client.get(f"/media/{media.file_path}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/webp"
        img = Image.open(io.BytesIO(r.content))
        assert img.size == (640, 480)
        assert not img.getexif() and "exif" not in img.info
        # And the API shows our copy, the remote address only as remote_url
        r = await client.get(f"/api/v1/statuses/{post.id}")
    entity = r.json()["media_attachments"][0]
    assert entity["type"] == "image"
    assert entity["url"] == f"{settings.base_url}/media/{media.file_path}"
    assert entity["remote_url"] == url


async def test_remote_image__before_it_is_fetched__shows_a_placeholder_not_the_remote_file(
    db: AsyncSession, settings: Settings, rt: Runtime, server: LocalServer
) -> None:
    # Given a remote post whose image is not fetched yet
    alice = await remote_account(db, server, "alice")
    url = serve_image(server, "/files/1.jpg", jpeg_with_gps(), "image/jpeg")
    post = await remote_post(db, alice, images=[url])
    # When it is shown by the API and on its page
    async with running_app(settings) as client:
        api = (await client.get(f"/api/v1/statuses/{post.id}")).json()
        page = await client.get(f"/@{alice.acct}/{post.id}")
    # Then the API gives a placeholder of ours and the remote address as remote_url
    entity = api["media_attachments"][0]
    assert entity["type"] == "unknown" and entity["remote_url"] == url
    assert entity["url"].startswith(settings.base_url) and url not in entity["url"]
    assert entity["preview_url"].startswith(settings.base_url)
    # And the page links to it but loads no image from the other server
    assert page.status_code == 200, page.text
    assert f'src="{url}"' not in page.text and "media-placeholder.png" in page.text
    # And nothing has been fetched by the mere viewing
    assert not [r for r in server.requests if r.target == "/files/1.jpg"]


@pytest.mark.parametrize(
    ("body", "content_type", "why"),
    [
        (b"<html><script>alert(1)</script></html>", "text/html", "not an image type"),
        (b"<html><script>alert(1)</script></html>", "image/png", "lies about its type"),
        (b"%PDF-1.4 not a picture", "application/pdf", "a document"),
    ],
)
async def test_remote_file__that_is_not_an_image__is_refused(
    db: AsyncSession, rt: Runtime, server: LocalServer, body: bytes, content_type: str, why: str
) -> None:
    # Given a remote attachment that is not an image (though it may claim to be)
    alice = await remote_account(db, server, "alice")
    url = serve_image(server, "/files/x", body, content_type)
    post = await remote_post(db, alice, images=[url])
    # When the cache tries it
    outcome = await remote_media.cache_attachment(db, (await media_of(db, post.id)).id)
    await db.commit()
    # Then nothing is stored and it is not retried
    assert outcome.startswith("rejected"), why
    media = await media_of(db, post.id)
    assert media.file_path is None and media.state == MediaState.FAILED
    assert not remote_media.needs_fetch(media)


async def test_remote_image__over_the_size_limit__is_refused(
    db: AsyncSession, settings: Settings, server: LocalServer
) -> None:
    # Given a limit of 50 KB and a remote image of about 200 KB
    small = settings.model_copy(update={"remote_media_max_bytes": 50_000})
    runtime = Runtime.from_settings(small)
    noisy = Image.effect_noise((512, 512), 100).convert("RGB")
    out = io.BytesIO()
    noisy.save(out, format="PNG")
    assert len(out.getvalue()) > 50_000
    try:
        async with runtime.sessions() as own:
            alice = await remote_account(own, server, "alice")
            url = serve_image(server, "/files/big.png", out.getvalue(), "image/png")
            post = await remote_post(own, alice, images=[url])
            # When the cache tries it
            outcome = await remote_media.cache_attachment(own, (await media_of(own, post.id)).id)
            await own.commit()
            # Then it is refused, nothing stored
            assert outcome.startswith("rejected") and "bytes" in outcome
            media = await media_of(own, post.id)
            assert media.file_path is None and media.state == MediaState.FAILED
    finally:
        await runtime.close()


async def test_remote_image__redirecting_to_loopback__is_not_followed(
    db: AsyncSession, settings: Settings
) -> None:
    # Given a peer allowed by name (and only it), whose image redirects to a loopback service
    async with local_server("127.0.0.1") as peer, local_server("127.0.0.2") as internal:
        internal.routes["/secret.png"] = respond(
            200, jpeg_with_gps(), {"Content-Type": "image/png"}
        )
        strict = settings.model_copy(
            update={"federation_allow_private": False, "federation_allowed_hosts": peer.authority}
        )
        runtime = Runtime.from_settings(strict)
        peer.routes["/files/1.png"] = redirect(f"{internal.base}/secret.png")
        try:
            async with runtime.sessions() as own:
                alice = await remote_account(own, peer, "alice")
                post = await remote_post(own, alice, images=[f"{peer.base}/files/1.png"])
                # When the cache fetches it
                outcome = await remote_media.cache_attachment(
                    own, (await media_of(own, post.id)).id
                )
                await own.commit()
                # Then the redirect is refused and the internal service never asked
                assert outcome.startswith("rejected")
                assert internal.requests == []
                assert (await media_of(own, post.id)).file_path is None
        finally:
            await runtime.close()


async def test_remote_image__of_a_domain_whose_media_is_rejected__is_not_fetched(
    db: AsyncSession, rt: Runtime, server: LocalServer
) -> None:
    # Given an admin rejects media from the peer's domain
    db.add(DomainBlock(domain=server.host, severity="none", reject_media=True))
    await db.commit()
    alice = await remote_account(db, server, "alice")
    url = serve_image(server, "/files/1.jpg", jpeg_with_gps(), "image/jpeg")
    post = await remote_post(db, alice, images=[url])
    # When the cache is asked for it
    outcome = await remote_media.cache_attachment(db, (await media_of(db, post.id)).id)
    await db.commit()
    # Then nothing is fetched
    assert outcome.startswith("rejected")
    assert server.requests == []


async def test_cached_remote_media__is_pruned_by_age_and_fetched_again_when_shown(
    db: AsyncSession, settings: Settings, rt: Runtime, server: LocalServer
) -> None:
    # Given a remote image cached 15 days ago (the setting keeps 14)
    alice = await remote_account(db, server, "alice")
    url = serve_image(server, "/files/1.jpg", jpeg_with_gps(), "image/jpeg")
    post = await remote_post(db, alice, images=[url])
    media = await media_of(db, post.id)
    assert await remote_media.cache_attachment(db, media.id) == "cached"
    await db.commit()
    media = await media_of(db, post.id)
    old_file = settings.effective_media_dir / str(media.file_path)
    assert old_file.exists()
    media.remote_fetched_at = utcnow() - timedelta(days=15)
    await db.commit()
    # When the periodic prune runs
    async with rt.sessions() as job_db:
        await remote_media.prune_remote_job(job_db, {})
        await job_db.commit()
    await run_jobs(rt)
    # Then the file is gone and the row waits to be fetched again
    media = await media_of(db, post.id)
    assert media.file_path is None and not old_file.exists()
    assert remote_media.needs_fetch(media)
    # When someone is shown the post
    bo = await person(db, "bo")
    await presenter.present(db, viewer(bo), [post])
    await wait_for_background()
    assert await count(db, Job, Job.kind == remote_media.FETCH_JOB) == 1
    await run_jobs(rt)
    # Then it is cached again
    media = await media_of(db, post.id)
    assert media.file_path is not None and media.state == MediaState.READY


async def test_prune__keeps_recently_cached_media(
    db: AsyncSession, rt: Runtime, server: LocalServer
) -> None:
    alice = await remote_account(db, server, "alice")
    url = serve_image(server, "/files/1.jpg", jpeg_with_gps(), "image/jpeg")
    post = await remote_post(db, alice, images=[url])
    await remote_media.cache_attachment(db, (await media_of(db, post.id)).id)
    await db.commit()
    assert await remote_media.prune_cached(db) == 0
    assert (await media_of(db, post.id)).file_path is not None


async def test_remote_avatar__is_cached_from_the_actor_document(
    db: AsyncSession, settings: Settings, rt: Runtime, server: LocalServer
) -> None:
    # Given a remote actor with an avatar (icon), a header (image) and profile fields
    peer = Peer(server)
    serve_image(server, "/files/avatar.jpg", jpeg_with_gps((300, 300)), "image/jpeg")
    doc = peer.add_actor(
        "alice",
        icon={"type": "Image", "mediaType": "image/jpeg", "url": f"{server.base}/files/avatar.jpg"},
        image={"type": "Image", "url": f"{server.base}/files/missing.jpg"},
        attachment=[
            {"type": "PropertyValue", "name": "Site", "value": '<a href="https://a.example">a</a>'},
            {"type": "PropertyValue", "name": "Bad", "value": "<script>x()</script>hi"},
        ],
    )
    from kith.federation.remote_accounts import store_document

    account = await store_document(db, doc)
    await db.commit()
    async with running_app(settings) as client:
        before = (await client.get(f"/api/v1/accounts/{account.id}")).json()
    # Then, before the job, the API shows our placeholder
    assert before["avatar"] == f"{settings.base_url}/static/avatar.png"
    # When the jobs run
    await run_jobs(rt)
    account = await db.get(Account, account.id, populate_existing=True)
    assert account is not None and account.avatar_path and account.avatar_path.startswith("cache/")
    assert account.header_path is None  # the header could not be fetched: placeholder
    remote = await db.scalar(select(RemoteActor).where(RemoteActor.account_id == account.id))
    assert remote is not None and remote.images_fetched_at is not None
    async with running_app(settings) as client:
        after = (await client.get(f"/api/v1/accounts/{account.id}")).json()
    assert after["avatar"] == f"{settings.base_url}/media/{account.avatar_path}"
    assert after["header"] == f"{settings.base_url}/static/header.png"
    # And the profile fields came along, sanitized
    assert [f["name"] for f in after["fields"]] == ["Site", "Bad"]
    assert "script" not in after["fields"][1]["value"]
