"""The search page over HTTP: results per kind, hostile input, nothing private leaks."""

from __future__ import annotations

from kith.graph import service as graph
from kith.posts.models import Visibility
from tests.test_search import HOSTILE_QUERIES
from tests.world import browser, person, post


async def test_search_page__shows_people_hashtags_and_posts(db, settings) -> None:  # type: ignore[no-untyped-def]
    # Given a gardener who posts about #compost
    gardener = await person(db, "gardener")
    gardener.display_name = "Compost Queen"
    await db.commit()
    await post(db, gardener, "Turning the #compost heap today")
    async with browser(settings) as b:
        # When a visitor searches for "compost"
        r = await b.get("/search", params={"q": "compost"})
        # Then all three sections show what matched
        assert r.status_code == 200
        assert "@gardener" in r.text and "Compost Queen" in r.text
        assert 'href="/tags/compost"' in r.text
        assert "Turning the" in r.text
        # and one kind at a time works too
        r = await b.get("/search", params={"q": "compost", "type": "hashtags"})
        assert 'href="/tags/compost"' in r.text and "Turning the" not in r.text
        r = await b.get("/search", params={"q": "compost", "type": "posts"})
        assert "Turning the" in r.text and "No people found" not in r.text


async def test_search_page__without_query_shows_only_the_form(app_client) -> None:  # type: ignore[no-untyped-def]
    r = await app_client.get("/search")
    assert r.status_code == 200
    assert 'name="q"' in r.text and "No posts found" not in r.text


async def test_search_page__never_shows_followers_only_direct_or_blocked(db, settings) -> None:  # type: ignore[no-untyped-def]
    # Given bob follows alice; alice posts to followers, to carol directly, and publicly;
    # and mallory, whom bob blocked, posts publicly
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await person(db, "carol")
    mallory = await person(db, "mallory")
    await graph.follow(db, bob.id, alice.id)
    await graph.block(db, bob.id, mallory.id)
    await post(db, alice, "rhubarb for followers", visibility=Visibility.PRIVATE)
    await post(db, alice, "rhubarb for @carol only", visibility=Visibility.DIRECT)
    await post(db, alice, "rhubarb for everyone")
    await post(db, mallory, "rhubarb from mallory")
    async with browser(settings) as b:
        await b.sign_in("bob")
        # When bob searches the posts
        r = await b.get("/search", params={"q": "rhubarb", "type": "posts"})
        # Then only alice's public post shows
        assert "rhubarb for everyone" in r.text
        for hidden in ("for followers", "only", "from mallory"):
            assert hidden not in r.text


async def test_search_page__hostile_queries_answer_200_and_are_escaped(db, settings) -> None:  # type: ignore[no-untyped-def]
    await post(db, await person(db, "alice"), "kale")
    async with browser(settings) as b:
        for q in [*HOSTILE_QUERIES, "<script>alert(1)</script>", '"><img src=x onerror=alert(1)>']:
            for kind in ("", "accounts", "hashtags", "posts", "bogus"):
                r = await b.get("/search", params={"q": q, "type": kind})
                # A NUL in an address is refused up front (PostgreSQL can't store it anyway).
                assert r.status_code == (422 if "\x00" in q else 200), (q, kind)
                assert "<script>alert" not in r.text and "<img src=x" not in r.text
        r = await b.get("/search", params={"q": "kale", "type": "posts", "max_id": "abc"})
        assert r.status_code == 200 and "kale" in r.text


async def test_search_page__a_community_handle_goes_to_the_community(db, settings) -> None:  # type: ignore[no-untyped-def]
    from tests.test_communities_web import found

    owner = await person(db, "owner")
    await found(db, owner, "gardens")
    async with browser(settings) as b:
        r = await b.client.get("/search", params={"q": " !gardens "})
        assert r.status_code == 303
        assert r.headers["location"] == "/communities?q=%21gardens"
        r = await b.client.get(r.headers["location"])
        assert r.status_code == 303 and r.headers["location"] == "/c/gardens"
        # Not ours, or no such community: the directory searches for it instead
        r = await b.client.get(
            "/search", params={"q": "!nowhere@far.example"}, follow_redirects=True
        )
        assert r.status_code == 200 and "Communities" in r.text
