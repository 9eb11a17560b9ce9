"""Keyword filters: the settings pages, and their effect on every page that lists posts."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from kith.db import utcnow
from kith.filters import service as filters
from kith.filters.models import Filter, FilterKeyword
from kith.graph import service as graph
from tests.world import Browser, browser, person, post, viewer

ALL_CONTEXTS = ["home", "notifications", "public", "thread", "account"]


async def _world(db):  # type: ignore[no-untyped-def]
    """alice follows bob; bob posts about durian (mentioning alice, tagged, and as a reply)."""
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await graph.follow(db, alice.id, bob.id)
    root = await post(db, bob, "Market day #fruit")
    reply = await post(db, bob, "The durian smell, @alice! #fruit", reply_to=root)
    return alice, bob, root, reply


def _pages(root_id: int) -> dict[str, str]:
    return {
        "home": "/home",
        "public": "/local",
        "public (hashtag)": "/tags/fruit",
        "account": "/@bob/with_replies",
        "thread": f"/@bob/{root_id}",
        "notifications": "/notifications",
    }


async def _create_filter(b: Browser, **fields: object) -> None:
    data: dict[str, object] = {
        "title": "Stinky",
        "keywords": "durian",
        "whole_word": "on",
        "context": ALL_CONTEXTS,
        "filter_action": "warn",
        "expires_in": "",
    }
    data.update(fields)
    await b.get("/settings/filters/new")
    r = await b.post("/settings/filters", data)
    assert r.status_code == 303, r.text


async def test_hide_filter__removes_the_post_in_every_context(db, settings) -> None:  # type: ignore[no-untyped-def]
    # Given alice sees bob's durian post everywhere
    alice, bob, root, reply = await _world(db)
    async with browser(settings) as b:
        await b.sign_in("alice")
        for where, url in _pages(root.id).items():
            assert "durian smell" in (await b.get(url)).text, where
        # When she adds a "hide" filter for durian through the settings page
        await _create_filter(b, filter_action="hide")
        # Then the post is gone from each page, and the rest stays
        for where, url in _pages(root.id).items():
            r = await b.get(url)
            assert r.status_code == 200, where
            assert "durian smell" not in r.text, where
        assert "Market day" in (await b.get("/local")).text


async def test_warn_filter__marks_the_post_in_every_context(db, settings) -> None:  # type: ignore[no-untyped-def]
    alice, bob, root, reply = await _world(db)
    async with browser(settings) as b:
        await b.sign_in("alice")
        await _create_filter(b, filter_action="warn")
        for where, url in _pages(root.id).items():
            r = await b.get(url)
            assert "Filtered: Stinky" in r.text, where
            assert "durian smell" in r.text, where  # folded, still reachable


async def test_filter__only_in_the_contexts_chosen(db, settings) -> None:  # type: ignore[no-untyped-def]
    alice, bob, root, reply = await _world(db)
    async with browser(settings) as b:
        await b.sign_in("alice")
        await _create_filter(b, filter_action="hide", context=["home"])
        assert "durian smell" not in (await b.get("/home")).text
        assert "durian smell" in (await b.get("/local")).text


async def test_expired_filter__does_nothing(db, settings) -> None:  # type: ignore[no-untyped-def]
    alice, bob, root, reply = await _world(db)
    f = await filters.create_filter(
        db,
        viewer(alice),
        title="Stinky",
        keywords=[("durian", True)],
        contexts=ALL_CONTEXTS,
        action="hide",
        expires_in=60,
    )
    f.expires_at = utcnow() - timedelta(seconds=1)
    await db.commit()
    async with browser(settings) as b:
        await b.sign_in("alice")
        for where, url in _pages(root.id).items():
            r = await b.get(url)
            assert "durian smell" in r.text and "Filtered:" not in r.text, where
        assert "Expired." in (await b.get("/settings/filters")).text


async def test_whole_word__cat_does_not_match_category_unless_turned_off(db, settings) -> None:  # type: ignore[no-untyped-def]
    await person(db, "alice")
    bob = await person(db, "bob")
    await post(db, bob, "A new category of seeds")
    async with browser(settings) as b:
        await b.sign_in("alice")
        await _create_filter(b, keywords="cat", filter_action="hide")
        assert "new category" in (await b.get("/local")).text
        await _create_filter(
            b, title="Partial", keywords="cat", whole_word="", filter_action="hide"
        )
        assert "new category" not in (await b.get("/local")).text


async def test_filters_page__lists_edits_and_deletes(db, settings) -> None:  # type: ignore[no-untyped-def]
    await person(db, "alice")
    async with browser(settings) as b:
        await b.sign_in("alice")
        await _create_filter(b, keywords="durian\n\n  jackfruit  \n", expires_in="3600")
        page = (await b.get("/settings/filters")).text
        assert "Stinky" in page and "durian" in page and "jackfruit" in page
        f = await db.scalar(select(Filter))
        assert f is not None and f.expires_at is not None
        # When she edits it, keeping the expiry
        r = await b.get(f"/settings/filters/{f.id}/edit")
        assert "jackfruit" in r.text and 'value="keep"' in r.text
        r = await b.post(
            f"/settings/filters/{f.id}",
            {
                "title": "Smelly",
                "keywords": "durian",
                "context": ["thread"],
                "filter_action": "hide",
                "expires_in": "keep",
            },
        )
        assert r.status_code == 303
        await db.refresh(f)
        assert (f.title, f.contexts, f.action) == ("Smelly", ["thread"], "hide")
        assert f.expires_at is not None
        kws = (await db.scalars(select(FilterKeyword.keyword))).all()
        assert kws == ["durian"]
        # And deletes it
        r = await b.post(f"/settings/filters/{f.id}/delete")
        assert r.status_code == 303
        assert "You have no filters" in (await b.get("/settings/filters")).text


async def test_filter_form__bad_input_is_a_422_with_the_field_and_nothing_written(
    db, settings
) -> None:  # type: ignore[no-untyped-def]
    await person(db, "alice")
    async with browser(settings) as b:
        await b.sign_in("alice")
        await b.get("/settings/filters/new")
        cases = [
            ({"title": "", "keywords": "x", "context": ["home"]}, "title"),
            ({"title": "t", "keywords": "  \n ", "context": ["home"]}, "keywords"),
            ({"title": "t", "keywords": "x"}, "context"),
            ({"title": "t", "keywords": "x", "context": ["everywhere"]}, "context"),
            ({"title": "t", "keywords": "x", "context": ["home"], "filter_action": "nuke"}, None),
            ({"title": "t", "keywords": "x", "context": ["home"], "expires_in": "-5"}, None),
            ({"title": "t", "keywords": "x" * 201, "context": ["home"]}, "keywords"),
            (
                {
                    "title": "<b>t</b>",
                    "keywords": "\n".join(f"w{i}" for i in range(51)),
                    "context": ["home"],
                },
                None,
            ),
        ]
        for data, field in cases:
            r = await b.post("/settings/filters", data)
            assert r.status_code == 422, data
            if field:
                assert f'id="{field}-error"' in r.text, data
            assert "<b>t</b>" not in r.text
        assert await db.scalar(select(func.count()).select_from(Filter)) == 0


async def test_filters__someone_elses_filter_is_not_found(db, settings) -> None:  # type: ignore[no-untyped-def]
    alice = await person(db, "alice")
    await person(db, "mallory")
    f = await filters.create_filter(
        db, viewer(alice), title="Mine", keywords=[("x", True)], contexts=["home"]
    )
    async with browser(settings) as b:
        await b.sign_in("mallory")
        assert (await b.get(f"/settings/filters/{f.id}/edit")).status_code == 404
        r = await b.post(f"/settings/filters/{f.id}/delete")
        assert r.status_code == 404
        r = await b.post(
            f"/settings/filters/{f.id}", {"title": "pwned", "keywords": "x", "context": ["home"]}
        )
        assert r.status_code == 404
        assert "Mine" not in (await b.get("/settings/filters")).text
    assert (await db.get(Filter, f.id)) is not None


async def test_filters_page__needs_sign_in(app_client) -> None:  # type: ignore[no-untyped-def]
    r = await app_client.get("/settings/filters")
    assert r.status_code == 303 and "/auth/sign_in" in r.headers["location"]
