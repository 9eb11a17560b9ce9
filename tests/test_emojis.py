"""Custom emoji: admins add them (web page and `kith emoji add`) with bad input refused and
nothing written; `:shortcode:` in posts, content warnings and names shows as a picture on
pages and is listed in the API's entities exactly as Mastodon documents them."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

from kith import policy
from kith.config import Settings, get_settings
from kith.emojis import service as emojis
from kith.emojis.models import CustomEmoji
from kith.errors import Forbidden, ValidationFailed
from kith.runtime import Runtime
from tests.mastodon_api.conftest import bearer, token_for
from tests.test_accounts_images import gif_animation, png
from tests.world import Browser, person, post, running_app

ADMIN = policy.Viewer(account_id=None, is_admin=True)
ENTITY_FIELDS = {"shortcode", "url", "static_url", "visible_in_picker"}


def emoji_files(settings: Settings) -> list[Path]:
    folder = settings.effective_media_dir / emojis.FOLDER
    return sorted(folder.glob("*")) if folder.exists() else []


async def emoji_count(db: AsyncSession) -> int:
    return int(await db.scalar(select(func.count()).select_from(CustomEmoji)) or 0)


async def admin_browser(db: AsyncSession, client: httpx.AsyncClient) -> Browser:
    await person(db, "ada", admin=True)
    b = Browser(client)
    await b.sign_in("ada")
    await b.get("/admin/emojis")
    return b


async def upload(b: Browser, shortcode: str, data: bytes, name: str = "e.png") -> httpx.Response:
    return await b.client.post(
        "/admin/emojis",
        data={"csrf_token": b.csrf, "shortcode": shortcode},
        files={"image": (name, data, "image/png")},
    )


# --- adding them ----------------------------------------------------------------------------


async def test_admin_page__adds_an_emoji_served_as_a_small_png(
    db: AsyncSession, settings: Settings
) -> None:
    async with running_app(settings) as client:
        # Given an admin on the emoji page
        b = await admin_browser(db, client)
        # When they upload a large PNG as :blob:
        r = await upload(b, "blob", png((400, 300)))
        page = await b.get("/admin/emojis")
        listed = await client.get("/api/v1/custom_emojis")
        (entity,) = listed.json()
        picture = await client.get(entity["url"].removeprefix("http://kith.test"))
    # Then it is listed on the page and in the API, and its picture is a PNG of at most 128 px
    assert r.status_code == 303, r.text
    assert ":blob:" in page.text
    assert listed.status_code == 200
    emoji = await db.scalar(select(CustomEmoji))
    assert emoji is not None and emoji.domain == "" and emoji.shortcode == "blob"
    assert entity == {
        "shortcode": "blob",
        "url": f"http://kith.test/emojis/{emoji.id}.png",
        "static_url": f"http://kith.test/emojis/{emoji.id}.png",
        "visible_in_picker": True,
        "category": None,
    }
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(picture.content)) as img:
        assert img.format == "PNG" and max(img.size) == 128


@pytest.mark.parametrize(
    ("shortcode", "data", "field", "message"),
    [
        ("blob", b"not an image at all", "image", "not an image we can use"),
        ("blob", b"", "image", "Choose an image file"),
        ("blob", png((600, 600)) + b"\0" * (emojis.MAX_EMOJI_BYTES), "image", "at most 256 KB"),
        ("b", png(), "shortcode", "2 to 64 letters"),
        ("bad-code", png(), "shortcode", "2 to 64 letters"),
        ("x" * 65, png(), "shortcode", "2 to 64 letters"),
    ],
    ids=["not an image", "no file", "oversized", "too short", "hyphen", "too long"],
)
async def test_admin_page__bad_input__form_error_and_nothing_written(
    db: AsyncSession,
    settings: Settings,
    shortcode: str,
    data: bytes,
    field: str,
    message: str,
) -> None:
    async with running_app(settings) as client:
        b = await admin_browser(db, client)
        r = await upload(b, shortcode, data)
    # Then the form says what is wrong with which field, and nothing is stored
    assert r.status_code == 422, r.text
    assert f'id="{field}-error"' in r.text and message in r.text
    assert await emoji_count(db) == 0 and emoji_files(settings) == []


async def test_admin_page__duplicate_shortcode_whatever_its_case__refused(
    db: AsyncSession, settings: Settings
) -> None:
    async with running_app(settings) as client:
        b = await admin_browser(db, client)
        first = await upload(b, "blob", png())
        again = await upload(b, "Blob", png(color=(200, 0, 0)))
    assert first.status_code == 303
    assert again.status_code == 422 and "exists already" in again.text
    assert await emoji_count(db) == 1 and len(emoji_files(settings)) == 1


async def test_admin_page__a_huge_body_is_refused_before_it_is_read(
    db: AsyncSession, settings: Settings
) -> None:
    async with running_app(settings) as client:
        b = await admin_browser(db, client)
        r = await upload(b, "blob", b"\0" * (2 * 1024 * 1024))
    assert r.status_code == 413
    assert await emoji_count(db) == 0 and emoji_files(settings) == []


async def test_admin_page__people_who_are_not_admins_are_refused(
    db: AsyncSession, settings: Settings
) -> None:
    await person(db, "bo")
    async with running_app(settings) as client:
        b = Browser(client)
        await b.sign_in("bo")
        page = await b.get("/admin/emojis")
        r = await upload(b, "blob", png())
    assert page.status_code == 403 and r.status_code == 403
    assert await emoji_count(db) == 0
    with pytest.raises(Forbidden):
        await emojis.add_local(db, policy.Viewer(account_id=1), "blob", png())


async def test_admin_page__removes_an_emoji_and_its_file(
    db: AsyncSession, settings: Settings, rt: Runtime
) -> None:
    from kith.jobs import worker

    await emojis.add_local(db, ADMIN, "blob", png())
    async with running_app(settings) as client:
        b = await admin_browser(db, client)
        r = await b.post("/admin/emojis/remove", {"shortcode": "blob"})
        listed = (await client.get("/api/v1/custom_emojis")).json()
    while await worker.run_once(rt.sessions, "test-worker"):
        pass
    assert r.status_code == 303 and listed == []
    assert await emoji_count(db) == 0 and emoji_files(settings) == []


def test_cli__add_list_remove(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from kith.cli import app

    monkeypatch.setenv("KITH_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("KITH_DOMAIN", settings.domain)
    monkeypatch.setenv("KITH_VAR_DIR", str(settings.var_dir))
    get_settings.cache_clear()
    (tmp_path / "blob.gif").write_bytes(gif_animation())
    (tmp_path / "notes.txt").write_text("hello")
    try:
        runner = CliRunner()
        added = runner.invoke(app, ["emoji", "add", "blob", str(tmp_path / "blob.gif")])
        listed = runner.invoke(app, ["emoji", "list"])
        bad = runner.invoke(app, ["emoji", "add", "text", str(tmp_path / "notes.txt")])
        missing = runner.invoke(app, ["emoji", "add", "gone", str(tmp_path / "nope.png")])
        taken = runner.invoke(app, ["emoji", "add", "BLOB", str(tmp_path / "blob.gif")])
        removed = runner.invoke(app, ["emoji", "remove", "blob"])
        after = runner.invoke(app, ["emoji", "list"])
    finally:
        get_settings.cache_clear()
    assert added.exit_code == 0 and added.output == "added :blob:\n", added.output
    assert listed.output == ":blob:\n"
    assert bad.exit_code == 2 and "image: This file is not an image" in bad.output
    assert missing.exit_code == 2 and "cannot read" in missing.output
    assert taken.exit_code == 2 and "shortcode: An emoji with this shortcode" in taken.output
    assert removed.exit_code == 0 and after.output == ""


async def test_add__a_concurrent_duplicate_leaves_one_emoji_and_no_stray_file(
    db: AsyncSession, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given :blob:, and a second admin whose "is it taken?" check ran before it was added
    await emojis.add_local(db, ADMIN, "blob", png())

    async def not_yet(db: AsyncSession, code: str) -> None:
        return None

    monkeypatch.setattr(emojis, "_local", not_yet)
    # When that admin adds :blob: too, then the database refuses it and the file goes
    with pytest.raises(ValidationFailed) as refused:
        await emojis.add_local(db, ADMIN, "blob", png(color=(1, 2, 3)))
    assert refused.value.field == "shortcode"
    assert await emoji_count(db) == 1 and len(emoji_files(settings)) == 1


# --- in text ------------------------------------------------------------------------------


def test_shortcodes_in__as_mastodon_reads_them() -> None:
    assert emojis.shortcodes_in("hi :blob: and :a_b2:!", "<p>:cat:</p>") == {"blob", "a_b2", "cat"}
    # times, URLs, a single letter and glued colons are not shortcodes
    assert (
        emojis.shortcodes_in("at 10:30:00", "https://x.example/:blob:x", ":a:", "::blob::") == set()
    )


async def test_api__status_and_account_entities_list_the_emoji_they_use(
    db: AsyncSession, settings: Settings
) -> None:
    # Given :blob: and :cat:, and ana whose name uses :cat: and whose post uses :blob: in its
    # text and :cat: in its content warning, and mentions :nope: (no such emoji)
    await emojis.add_local(db, ADMIN, "blob", png())
    await emojis.add_local(db, ADMIN, "cat", png(color=(0, 0, 0)))
    blob = await db.scalar(select(CustomEmoji).where(CustomEmoji.shortcode == "blob"))
    cat = await db.scalar(select(CustomEmoji).where(CustomEmoji.shortcode == "cat"))
    assert blob is not None and cat is not None
    ana = await person(db, "ana")
    ana.display_name = "Ana :cat:"
    await db.commit()
    hello = await post(db, ana, "Fresh :blob: bread :nope:", spoiler_text="crumbs :cat:")
    plain = await post(db, ana, "no emoji here")
    token = await token_for(db, ana)

    def entity(e: CustomEmoji) -> dict[str, object]:
        url = f"http://kith.test/emojis/{e.id}.png"
        return {"shortcode": e.shortcode, "url": url, "static_url": url, "visible_in_picker": True}

    async with running_app(settings) as client:
        # When an app reads the status (twice: the second from the entity cache), her
        # timeline, her account and her credentials
        first = (await client.get(f"/api/v1/statuses/{hello.id}")).json()
        cached = (await client.get(f"/api/v1/statuses/{hello.id}")).json()
        other = (await client.get(f"/api/v1/statuses/{plain.id}")).json()
        account = (await client.get(f"/api/v1/accounts/{ana.id}")).json()
        me = (await client.get("/api/v1/accounts/verify_credentials", headers=bearer(token))).json()
    # Then each lists exactly the emoji its own text uses, with Mastodon's four fields
    assert first["emojis"] == cached["emojis"] == [entity(blob), entity(cat)]
    assert first["content"] == "<p>Fresh :blob: bread :nope:</p>"  # the text keeps the code
    assert first["account"]["emojis"] == [entity(cat)]
    assert other["emojis"] == []
    assert account["emojis"] == me["emojis"] == [entity(cat)]
    assert set(first["emojis"][0]) == ENTITY_FIELDS


async def test_web__post_warning_and_name_show_the_picture(
    db: AsyncSession, settings: Settings
) -> None:
    await emojis.add_local(db, ADMIN, "blob", png())
    blob = await db.scalar(select(CustomEmoji))
    assert blob is not None
    ana = await person(db, "ana")
    ana.display_name = "Ana :blob:"
    await db.commit()
    hello = await post(db, ana, "Fresh :blob: bread, see https://x.example/:blob:/")
    warned = await post(db, ana, "hidden", spoiler_text="about :blob: <b>")
    async with running_app(settings) as client:
        page = await client.get(f"/@ana/{hello.id}")
        warned_page = await client.get(f"/@ana/{warned.id}")
        profile = await client.get("/@ana")
    img = f'<img class="emoji" src="/emojis/{blob.id}.png" alt=":blob:" title=":blob:"'
    assert f"Fresh {img}" in page.text
    assert f"<strong>Ana {img}" in page.text
    assert 'href="https://x.example/:blob:/"' in page.text  # never inside a tag
    assert f"about {img}" in warned_page.text and "&lt;b&gt;" in warned_page.text
    assert f"Ana {img}" in profile.text


async def test_remote_author__never_shows_local_emoji(db: AsyncSession, settings: Settings) -> None:
    # Given a local :blob: and a remote account whose name says :blob: (its server declared none)
    from kith.accounts.models import Account

    await emojis.add_local(db, ADMIN, "blob", png())
    far = Account(
        username="far",
        username_key="far",
        domain="far.example",
        uri="https://far.example/users/far",
        display_name="Far :blob:",
    )
    db.add(far)
    await db.commit()
    found = await emojis.for_accounts(db, [far])
    assert found == {far.id: []}


async def test_posts__text_without_a_shortcode_costs_no_query(db: AsyncSession) -> None:
    ana = await person(db, "ana")
    hello = await post(db, ana, "nothing here, at 10:30")
    statements: list[str] = []
    from sqlalchemy import event

    engine = db.get_bind()
    sync_engine = engine.sync_engine if hasattr(engine, "sync_engine") else engine

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(sync_engine, "before_cursor_execute", count)
    try:
        assert await emojis.for_posts(db, [hello], {ana.id: ana}) == {}
        assert await emojis.for_accounts(db, [ana]) == {}
    finally:
        event.remove(sync_engine, "before_cursor_execute", count)
    assert statements == []
