"""Web pages of communities in Home: the setting on a community's page (a member's choice,
CSRF-checked, refused to anyone else with nothing written), and the line that says which
communities a post is in, on post pages and timeline cards (one query per page)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession

from kith.communities import moderation
from kith.communities import service as communities
from kith.communities.models import Membership, MembershipModel
from kith.config import Settings
from kith.graph import service as graph
from tests.test_communities_web import as_, found
from tests.test_community_posts import member, write
from tests.world import browser, person, post


async def in_home_row(db: AsyncSession, community_id: int, account_id: int) -> Any:
    return (
        await db.execute(
            select(Membership.state, Membership.in_home).where(
                Membership.community_id == community_id, Membership.account_id == account_id
            )
        )
    ).first()


# --- the setting ---------------------------------------------------------------------------


async def test_setting__a_member_turns_it_off_and_on_from_the_page(
    db: AsyncSession, settings: Settings
) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    c = await found(db, alice)
    await communities.join(db, bob.id, c)
    async with as_(settings, "bob") as b:
        page = (await b.get("/c/gardeners")).text
        assert "Its posts appear in your Home." in page
        assert 'name="in_home" value="off"' in page
        r = await b.post("/c/gardeners/home", {"in_home": "off"})
        assert r.status_code == 303 and "notice=home_off" in r.headers["location"]
        assert tuple(await in_home_row(db, c.id, bob.id)) == ("active", False)
        page = (await b.get(r.headers["location"])).text
        assert "no longer appear in your Home" in page
        assert "Its posts stay out of your Home." in page and 'value="on"' in page
        r = await b.post("/c/gardeners/home", {"in_home": "on"})
        assert "notice=home_on" in r.headers["location"]
    assert tuple(await in_home_row(db, c.id, bob.id)) == ("active", True)


async def test_setting__refused_to_strangers_and_pending_requests_nothing_written(
    db: AsyncSession, settings: Settings
) -> None:
    alice, bob, cy = await person(db, "alice"), await person(db, "bob"), await person(db, "cy")
    c = await found(db, alice, membership=MembershipModel.APPROVAL)
    await communities.join(db, cy.id, c, answer="me please")
    for name in ("bob", "cy"):
        async with as_(settings, name) as b:
            page = (await b.get("/c/gardeners")).text
            assert "/c/gardeners/home" not in page  # nothing to choose
            r = await b.post("/c/gardeners/home", {"in_home": "off"})
            assert r.status_code == 422
            assert 'id="in_home-error"' in r.text and "join first" in r.text
    assert await in_home_row(db, c.id, bob.id) is None
    assert tuple(await in_home_row(db, c.id, cy.id)) == ("pending", True)


async def test_setting__bad_value_missing_csrf_and_anonymous_change_nothing(
    db: AsyncSession, settings: Settings
) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    c = await found(db, alice)
    await communities.join(db, bob.id, c)
    async with as_(settings, "bob") as b:
        for value in ("maybe", "", "ON", "1" * 5000):
            r = await b.post("/c/gardeners/home", {"in_home": value})
            assert r.status_code == 422 and 'id="in_home-error"' in r.text, value
        assert (await b.post("/c/nosuch/home", {"in_home": "off"})).status_code == 404
        b.csrf = "0" * 64
        assert (await b.post("/c/gardeners/home", {"in_home": "off"})).status_code == 403
    async with browser(settings) as b:
        r = await b.post("/c/gardeners/home", {"in_home": "off"})
        assert r.status_code in (303, 401, 403)
    assert tuple(await in_home_row(db, c.id, bob.id)) == ("active", True)


async def test_setting__turned_off_on_the_page_takes_the_thread_out_of_the_home_page(
    db: AsyncSession, settings: Settings
) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    c = await found(db, alice)
    await communities.join(db, bob.id, c)
    await write(db, alice, "Seed swap on Sunday", c)
    async with as_(settings, "bob") as b:
        assert "Seed swap on Sunday" in (await b.get("/home")).text
        await b.post("/c/gardeners/home", {"in_home": "off"})
        assert "Seed swap on Sunday" not in (await b.get("/home")).text


# --- which communities a post is in --------------------------------------------------------


@contextmanager
def statements() -> Iterator[list[str]]:
    """Every SQL statement run meanwhile (by any engine of this process)."""
    seen: list[str] = []

    def note(_conn: Any, _cursor: Any, stmt: str, *_args: Any) -> None:
        seen.append(stmt)

    event.listen(Engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", note)


def line_of(page: str, post_id: int) -> str:
    """The communities line of one post's card ("" when it has none)."""
    card = page.split(f'id="post-{post_id}"', 1)[1].split("</article>", 1)[0]
    if 'class="post-communities"' not in card:
        return ""
    return card.split('class="post-communities">', 1)[1].split("</p>", 1)[0]


async def test_line__a_cross_post_shows_its_communities_on_its_page_and_in_timelines(
    db: AsyncSession, settings: Settings
) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    roses = await found(db, alice, "roses", name="Roses")
    seeds = await found(db, alice, "seeds", name="Seeds")
    queued = await found(db, alice, "queued", name="Queued", post_approval=True)
    await communities.join(db, bob.id, queued)
    await graph.follow(db, bob.id, alice.id)
    thread = await write(db, alice, "Pruning season", roses, seeds)
    plain = await post(db, alice, "Not in a community")
    waiting = await write(db, bob, "Waiting here", queued)
    r = await write(db, bob, "A reply", reply_to=thread)  # replies join the thread's
    async with as_(settings, "bob") as b:
        page = (await b.get(f"/@alice/{thread.id}")).text
        assert line_of(page, thread.id) == (
            'in <a href="/c/roses">!roses</a>, <a href="/c/seeds">!seeds</a>'
        )
        assert 'href="/c/roses"' in line_of(page, r.id)
        home = (await b.get("/home")).text
        assert "!roses" in line_of(home, thread.id) and line_of(home, plain.id) == ""
        profile = (await b.get("/@alice")).text
        assert "!seeds" in line_of(profile, thread.id)
        # A thread approved nowhere yet names no community (not even to its author)
        assert line_of((await b.get(f"/@bob/{waiting.id}")).text, waiting.id) == ""
        # The card htmx swaps in after a like keeps the line
        r2 = await b.post(
            f"/posts/{thread.id}/like", {"card": str(thread.id)}, headers={"HX-Request": "true"}
        )
        assert "!roses" in r2.text
    await moderation.approve_post(db, alice.id, queued, waiting.id)
    async with as_(settings, "bob") as b:
        assert "!queued" in line_of((await b.get(f"/@bob/{waiting.id}")).text, waiting.id)


async def test_line__a_private_communitys_post_names_it_to_those_who_see_the_post(
    db: AsyncSession, settings: Settings
) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    await person(db, "eve")
    secret = await found(db, alice, "secret", membership=MembershipModel.PRIVATE)
    await member(db, secret, bob, alice)
    thread = await write(db, alice, "Members only talk", secret)
    async with as_(settings, "bob") as b:
        assert "!secret" in line_of((await b.get(f"/@alice/{thread.id}")).text, thread.id)
        assert "!secret" in line_of((await b.get("/home")).text, thread.id)
    async with as_(settings, "eve") as b:
        assert (await b.get(f"/@alice/{thread.id}")).status_code == 404
        assert "Members only talk" not in (await b.get("/@alice")).text


async def test_line__one_query_for_a_whole_page(db: AsyncSession, settings: Settings) -> None:
    alice, bob = await person(db, "alice"), await person(db, "bob")
    clubs = [await found(db, alice, f"club{i}", name=f"Club {i}") for i in range(3)]
    for c in clubs:
        await communities.join(db, bob.id, c)
    made = [await write(db, alice, f"thread {i}", clubs[i % 3]) for i in range(12)]
    async with as_(settings, "bob") as b:
        with statements() as seen:
            home = (await b.get("/home")).text
    assert all(f"!club{i % 3}" in line_of(home, p.id) for i, p in enumerate(made))
    loads = [s for s in seen if "JOIN communities" in s and "community_posts" in s]
    assert len(loads) == 1, loads
