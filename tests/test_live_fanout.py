"""The batch forms used to send one post to everyone connected must answer exactly what the
per-viewer forms answer: whose Home a post joins (`home_audience` vs `appears_in_home`), who
may be notified (`notifiable_ids` vs `should_notify` + `can_see_post`), and the Status entity
each viewer gets (`status_for_many` vs `statuses`)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.filters import service as filters
from kith.graph import service as graph
from kith.graph.models import Follow
from kith.mastodon_api import render
from kith.posts import service as posts
from kith.posts.models import Post, Tag, Visibility
from kith.timelines import service as timelines
from kith.timelines.models import TagFollow
from tests.world import person, post, viewer


async def _world(db: AsyncSession) -> tuple[Account, dict[str, Account], list[Post]]:
    """An author, people in every relation to them, and posts of every kind."""
    author = await person(db, "author")
    other = await person(db, "other")
    names = [
        "follower",
        "stranger",
        "muter",
        "blocker",
        "blocked",
        "no_boosts",
        "tag_fan",
        "mentioned",
        "follows_other",
        "blocks_other",
    ]
    people = {n: await person(db, n) for n in names}
    for n in ("follower", "muter", "blocker", "blocked", "no_boosts", "mentioned", "blocks_other"):
        await graph.follow(db, people[n].id, author.id)
    await graph.follow(db, people["follows_other"].id, other.id)
    await graph.follow(db, people["follows_other"].id, author.id)
    await graph.mute(db, people["muter"].id, author.id)
    await graph.block(db, people["blocks_other"].id, other.id)  # so: not the author's boost
    await graph.block(db, people["blocker"].id, author.id)
    await graph.block(db, author.id, people["blocked"].id)
    no_boosts = await db.get(Follow, (people["no_boosts"].id, author.id))
    assert no_boosts is not None
    no_boosts.show_reblogs = False
    await db.commit()
    made = [
        await post(db, author, "hello #gardens"),
        await post(db, author, "for followers", visibility=Visibility.PRIVATE),
        await post(db, author, "unlisted", visibility=Visibility.UNLISTED),
        await post(db, author, "psst @mentioned", visibility=Visibility.DIRECT),
        await post(db, author, "hi @stranger"),
    ]
    theirs = await post(db, other, "a post by someone else")
    made.append(await post(db, author, "a reply to other", reply_to=theirs))
    made.append(await posts.boost(db, viewer(author), theirs.id))
    tag = await db.scalar(select(Tag).where(Tag.name == "gardens"))
    assert tag is not None
    db.add(TagFollow(account_id=people["tag_fan"].id, tag_id=tag.id))
    await db.commit()
    people["author"] = author
    people["other"] = other
    return author, people, made


async def test_home_audience_agrees_with_appears_in_home(db: AsyncSession) -> None:
    _, people, made = await _world(db)
    everyone = {a.id: a for a in people.values()}
    for p in made:
        one_by_one = {
            aid
            for aid, a in everyone.items()
            if await timelines.appears_in_home(db, viewer(a), p.id)
        }
        assert await timelines.home_audience(db, p.id, set(everyone)) == one_by_one, p.source
        assert one_by_one, "every post reaches someone's Home (at least its author's)"
    # The world is not trivial: some posts reach some people and not others.
    first = await timelines.home_audience(db, made[0].id, set(everyone))
    assert people["follower"].id in first and people["tag_fan"].id in first
    assert not {people["stranger"].id, people["muter"].id, people["blocker"].id} & first
    boost = await timelines.home_audience(db, made[-1].id, set(everyone))
    assert people["follower"].id in boost and people["blocks_other"].id not in boost


async def test_notifiable_ids_agree_with_the_single_checks(db: AsyncSession) -> None:
    author, people, made = await _world(db)
    everyone = [a.id for a in people.values()]
    for p in made:
        expected = set()
        for rid in everyone:
            if await policy.should_notify(db, rid, author.id) and await policy.can_see_post(
                db, policy.Viewer(rid), p
            ):
                expected.add(rid)
        got = await policy.notifiable_ids(db, everyone, author.id, p.id)
        assert got == expected, p.source


async def test_status_for_many_is_what_each_viewer_would_get(db: AsyncSession) -> None:
    author, people, made = await _world(db)
    p = made[0]  # public, with a hashtag
    follower, muter = people["follower"], people["muter"]
    await posts.like(db, viewer(follower), p.id)
    await posts.bookmark(db, viewer(people["mentioned"]), p.id)
    await filters.create_filter(
        db,
        viewer(people["tag_fan"]),
        title="plants",
        keywords=[("gardens", False)],
        contexts=["home"],
        action="warn",
    )
    await filters.create_filter(
        db,
        viewer(people["no_boosts"]),
        title="no",
        keywords=[("hello", True)],
        contexts=["home"],
        action="hide",
    )
    ids = {a.id for n, a in people.items() if n not in ("author",)}
    many = await render.status_for_many(db, p, ids, context="home")
    for vid in ids:
        one = await render.statuses(db, policy.Viewer(vid), [p], context="home")
        if not one:
            assert vid not in many
            continue
        assert many[vid] == one[0], vid
    assert many[follower.id]["favourited"] is True and many[muter.id]["favourited"] is False
    assert many[people["tag_fan"].id]["filtered"][0]["filter"]["title"] == "plants"
    assert people["no_boosts"].id not in many  # its hide filter caught the post
