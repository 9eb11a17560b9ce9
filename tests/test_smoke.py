"""End-to-end over ASGI: sign up, post, follow, see it in Home, like, get notified."""

from __future__ import annotations

from tests.world import PASSWORD, Browser, browser


async def sign_up(b: Browser, name: str) -> None:
    await b.get("/auth/sign_up")
    r = await b.post(
        "/auth/sign_up",
        {
            "username": name,
            "email": f"{name}@example.test",
            "password": PASSWORD,
            "password_confirmation": PASSWORD,
            "agreement": "on",
        },
    )
    assert r.status_code == 303, r.text
    await b.get("/home")


async def test_two_people__follow_post_like_notify(settings, rt) -> None:  # type: ignore[no-untyped-def]
    # Given two people who signed up through the web forms
    async with browser(settings) as alice, browser(settings) as bob:
        await sign_up(alice, "alice")
        await sign_up(bob, "bob")
        # When bob follows alice and alice posts
        r = await bob.post("/@alice/follow")
        assert r.status_code == 303
        r = await alice.post("/posts", {"status": "Hello #kith world", "visibility": "public"})
        assert r.status_code == 303
        # Then bob sees it in Home
        home = await bob.get("/home")
        assert "Hello" in home.text and "/tags/kith" in home.text
        post_id = home.text.split('data-id="')[1].split('"')[0]
        # When bob likes it, alice is notified
        r = await bob.post(f"/posts/{post_id}/like")
        assert r.status_code == 303
        notes = await alice.get("/notifications")
        assert "liked your post" in notes.text
        assert "followed you" in notes.text


async def test_forged_csrf__is_refused(app_client) -> None:  # type: ignore[no-untyped-def]
    await app_client.get("/auth/sign_up")
    app_client.csrf = "0" * 64
    r = await app_client.post(
        "/auth/sign_up",
        {
            "username": "mallory",
            "email": "m@example.test",
            "password": PASSWORD,
            "password_confirmation": PASSWORD,
            "agreement": "on",
        },
    )
    assert r.status_code == 403
    assert "expired" in r.text


async def test_like_with_htmx__returns_just_the_updated_card(settings, rt) -> None:  # type: ignore[no-untyped-def]
    # Given a post by alice that bob can see
    async with browser(settings) as alice, browser(settings) as bob:
        await sign_up(alice, "alice")
        await sign_up(bob, "bob")
        await alice.post("/posts", {"status": "htmx please", "visibility": "public"})
        local = await bob.get("/local")
        post_id = local.text.split('data-id="')[1].split('"')[0]
        # When bob likes it through htmx
        r = await bob.post(
            f"/posts/{post_id}/like", {"card": post_id}, headers={"HX-Request": "true"}
        )
        # Then the response is the card alone, showing the like
        assert r.status_code == 200
        assert r.text.lstrip().startswith("<article") and 'aria-pressed="true"' in r.text
        assert "<html" not in r.text


async def test_nul_characters__422_on_forms_and_addresses_never_500(settings, rt) -> None:  # type: ignore[no-untyped-def]
    # Given a signed-in person (PostgreSQL refuses NUL in text; SQLite would store it)
    async with browser(settings) as alice:
        await sign_up(alice, "alice")
        # When forms and addresses carry NUL characters
        r = await alice.post("/posts", {"status": "hello\x00world", "visibility": "public"})
        assert r.status_code == 422 and "NUL" in r.text
        for url in ("/search?q=a%00b", "/@ali%00ce", "/tags/x%00y"):
            assert (await alice.get(url)).status_code == 422, url
        # Then nothing was written
        assert "hello" not in (await alice.get("/home")).text
