"""Status entities built from cached parts (mastodon_api.entity_cache) must equal entities
presented afresh, and must change as soon as what they show changes, whoever changes it: the
app under test has its own runtime (its own cache), and the changes below are made through
the test's session, as another process would make them."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account, AccountStats
from kith.config import Settings
from kith.filters import service as filters
from kith.graph import service as graph
from kith.mastodon_api import entities, entity_cache
from kith.media import service as media
from kith.media.models import MediaAttachment
from kith.posts import presenter
from kith.posts import service as posts
from kith.posts.models import Post
from kith.posts.service import PollInput, PostInput
from kith.runtime import Runtime, runtime_of
from tests.mastodon_api.conftest import bearer, token_for
from tests.test_accounts_images import png
from tests.world import person, post, running_app


async def reference(
    db: AsyncSession, viewer: policy.Viewer, rows: list[Post], context: str | None
) -> list[dict[str, Any]]:
    """Entities the way they were built before the cache: present every post, apply filters,
    count every author."""
    views = await presenter.present(db, viewer, rows)
    if context:
        views = await filters.apply(db, viewer, views, context=context)
    counts = await entities.account_counts(db, entities.all_accounts(views))
    settings = runtime_of(db).settings
    return [entities.status(settings, v, counts) for v in views]


async def fresh_rows(db: AsyncSession, ids: list[int]) -> list[Post]:
    db.expunge_all()
    found = {p.id: p for p in await db.scalars(select(Post).where(Post.id.in_(ids)))}
    return [found[i] for i in ids]


async def test_cached_entities__equal_fresh_ones__cold_and_warm(db: AsyncSession) -> None:
    ana, bo = await person(db, "ana"), await person(db, "bo")
    await person(db, "cy")
    await graph.follow(db, bo.id, ana.id)
    picture = await media.upload(db, ana, png(), "image/png", description="a blue square")
    plain = await post(db, ana, "hello #kith @bo and @cy", spoiler_text="cw", sensitive=True)
    with_media = await post(db, ana, "look", media_ids=[picture.id])
    poll = await post(db, ana, "which?", poll=PollInput(["a", "b"], expires_in=3600))
    reply = await post(db, bo, "@ana yes", reply_to=plain)
    boosted = await posts.boost(db, policy.Viewer(bo.id), plain.id)
    await posts.like(db, policy.Viewer(bo.id), with_media.id)
    await posts.bookmark(db, policy.Viewer(bo.id), plain.id)
    await posts.pin(db, policy.Viewer(ana.id), plain.id)
    await posts.vote(db, policy.Viewer(bo.id), poll.id, [1])
    await filters.create_filter(
        db, policy.Viewer(bo.id), title="look", keywords=[("look", True)], contexts=["home"]
    )
    await filters.create_filter(
        db,
        policy.Viewer(bo.id),
        title="no polls",
        keywords=[("which", True)],
        contexts=["home"],
        action="hide",
    )
    ids = [boosted.id, reply.id, poll.id, with_media.id, plain.id]
    for viewer in (policy.Viewer(bo.id), policy.Viewer(ana.id), policy.ANONYMOUS):
        for context in ("home", None):
            for _ in ("cold", "warm"):
                rows = await fresh_rows(db, ids)
                got = await entity_cache.statuses(db, viewer, rows, context=context)
                want = await reference(db, viewer, await fresh_rows(db, ids), context)
                assert got == want
    # The filters did something, and the cache holds every post and author.
    rows = await fresh_rows(db, ids)
    seen = await entity_cache.statuses(db, policy.Viewer(bo.id), rows, context="home")
    assert str(poll.id) not in {s["id"] for s in seen}
    assert [s for s in seen if s["id"] == str(with_media.id)][0]["filtered"]
    cache = entity_cache.cache_of(db)
    assert len(cache.posts) == len(ids) and len(cache.accounts) == 2


@pytest.fixture
async def api(settings: Settings, rt: Runtime) -> Any:
    async with running_app(settings) as client:
        yield client


async def _status(api: httpx.AsyncClient, token: str, post_id: int) -> dict[str, Any]:
    """The post as Home shows it (through the app's cache)."""
    r = await api.get("/api/v1/timelines/home", headers=bearer(token))
    assert r.status_code == 200
    found = [s for s in r.json() if s["id"] == str(post_id)]
    assert found, r.json()
    return found[0]


async def test_changes_made_elsewhere__show_at_once(
    api: httpx.AsyncClient, db: AsyncSession
) -> None:
    ana, bo = await person(db, "ana"), await person(db, "bo")
    await graph.follow(db, bo.id, ana.id)
    token = await token_for(db, bo)
    picture = await media.upload(db, ana, png(), "image/png", description="before")
    p = await post(db, ana, "first words #old", media_ids=[picture.id])
    before = await _status(api, token, p.id)
    assert before["content"].startswith("<p>first words")
    assert (await _status(api, token, p.id)) == before  # from the cache now

    await posts.edit_post(
        db,
        policy.Viewer(ana.id),
        p.id,
        PostInput(source="second words #new", media_ids=[picture.id]),
    )
    s = await _status(api, token, p.id)
    assert "second words" in s["content"] and [t["name"] for t in s["tags"]] == ["new"]
    assert s["edited_at"] is not None

    await db.execute(
        update(MediaAttachment).where(MediaAttachment.id == picture.id).values(description="after")
    )
    await db.commit()
    assert (await _status(api, token, p.id))["media_attachments"][0]["description"] == "after"

    await db.execute(update(Post).where(Post.id == p.id).values(sensitive=True))
    await db.commit()
    assert (await _status(api, token, p.id))["sensitive"] is True

    await db.execute(update(Account).where(Account.id == ana.id).values(display_name="Ana B."))
    await db.commit()
    s = await _status(api, token, p.id)
    assert s["account"]["display_name"] == "Ana B."

    # Counters and the viewer's own marks are read every time, without a new revision.
    await posts.like(db, policy.Viewer(bo.id), p.id)
    s = await _status(api, token, p.id)
    assert s["favourited"] is True and s["favourites_count"] == 1
    await post(db, ana, "another")
    s = await _status(api, token, p.id)
    assert s["account"]["statuses_count"] == 2
    # The last status's UTC day, as Mastodon gives it, read as text (entity_cache, entities).
    stats = await db.get(AccountStats, ana.id, populate_existing=True)
    assert stats is not None and stats.last_status_at is not None
    day = stats.last_status_at.date().isoformat()
    assert s["account"]["last_status_at"] == day
    r = await api.get(f"/api/v1/accounts/{ana.id}", headers=bearer(token))
    assert r.json()["last_status_at"] == day


async def test_uncommitted_render__is_not_kept(db: AsyncSession, rt: Runtime) -> None:
    """A session that edited and rolled back must not leave its text in the cache."""
    ana = await person(db, "ana")
    p = await post(db, ana, "kept")
    await db.execute(update(Post).where(Post.id == p.id).values(content_html="<p>never</p>"))
    (seen,) = await entity_cache.statuses(db, policy.ANONYMOUS, await fresh_rows(db, [p.id]))
    assert seen["content"] == "<p>never</p>"
    await db.rollback()
    # Another change takes the same revision number the rolled-back one had.
    await db.execute(update(Post).where(Post.id == p.id).values(sensitive=True))
    await db.commit()
    async with rt.sessions() as other:
        (seen,) = await entity_cache.statuses(
            other,
            policy.ANONYMOUS,
            [await other.get(Post, p.id)],  # type: ignore[list-item]
        )
    assert seen["content"] != "<p>never</p>" and seen["sensitive"] is True


async def test_render_revisions__move_with_every_shown_part(db: AsyncSession) -> None:
    """The triggers of migration 0004: each write to a shown part bumps the revision; the
    counters do not."""
    ana, bo = await person(db, "ana"), await person(db, "bo")
    p = await post(db, ana, "hi")

    async def rev() -> int:
        return int(await db.scalar(select(Post.render_rev).where(Post.id == p.id)) or 0)

    async def account_rev() -> int:
        return int(await db.scalar(select(Account.render_rev).where(Account.id == ana.id)) or 0)

    start = await rev()
    await posts.like(db, policy.Viewer(bo.id), p.id)
    await db.execute(update(Post).where(Post.id == p.id).values(replies_count=5))
    assert await rev() == start
    await db.execute(update(Post).where(Post.id == p.id).values(spoiler_text="cw"))
    assert await rev() == start + 1
    picture = await media.upload(db, ana, png(), "image/png")
    await db.execute(
        update(MediaAttachment).where(MediaAttachment.id == picture.id).values(post_id=p.id)
    )
    assert await rev() == start + 2
    await db.execute(
        update(MediaAttachment).where(MediaAttachment.id == picture.id).values(focus_x=0.5)
    )
    assert await rev() == start + 3
    start_account = await account_rev()
    await db.execute(update(Account).where(Account.id == ana.id).values(avatar_path="a.png"))
    assert await account_rev() == start_account + 1


async def test_moved_account__entities_carry_the_account_it_moved_to(
    api: httpx.AsyncClient, db: AsyncSession
) -> None:
    """Mastodon's `moved`: on statuses, account lookups and verify_credentials; fresh when the
    new account changes (it is not part of the mover's cached entity); absent otherwise."""
    old, new, reader = await person(db, "old"), await person(db, "new"), await person(db, "r")
    await graph.follow(db, reader.id, old.id)
    p = await post(db, old, "I am moving")
    token = await token_for(db, reader)
    assert "moved" not in (await _status(api, token, p.id))["account"]
    await db.execute(update(Account).where(Account.id == old.id).values(moved_to_id=new.id))
    await db.commit()

    s = await _status(api, token, p.id)
    assert s["account"]["moved"]["id"] == str(new.id)
    assert s["account"]["moved"]["acct"] == "new" and "moved" not in s["account"]["moved"]
    r = await api.get(f"/api/v1/accounts/{old.id}", headers=bearer(token))
    assert r.json()["moved"]["id"] == str(new.id)
    r = await api.get(f"/api/v1/accounts/{new.id}", headers=bearer(token))
    assert "moved" not in r.json()
    r = await api.get(
        "/api/v1/accounts/verify_credentials", headers=bearer(await token_for(db, old))
    )
    assert r.json()["moved"]["id"] == str(new.id)

    await db.execute(update(Account).where(Account.id == new.id).values(display_name="New Me"))
    await db.commit()
    assert (await _status(api, token, p.id))["account"]["moved"]["display_name"] == "New Me"


async def test_a_new_status__answered_from_what_was_written__equals_it_read_back(
    api: httpx.AsyncClient, db: AsyncSession
) -> None:
    """POST /statuses builds its answer from what create_post held (presenter.remember_fresh),
    without reading the post's mentions, tags or media back: it must equal the status read
    back afterwards, for text with mentions, tags, emoji, a warning, a reply and a poll."""
    from kith.emojis import service as emojis
    from tests.test_accounts_images import png as picture

    ana, bo = await person(db, "ana"), await person(db, "bo")
    await person(db, "cy")
    await emojis.add_local(db, policy.Viewer(account_id=None, is_admin=True), "blob", picture())
    token = await token_for(db, ana)
    first = await post(db, bo, "a thread")
    bodies: list[dict[str, Any]] = [
        {"status": "hi @cy and @bo #zeta #alpha :blob:", "spoiler_text": "cw :blob:"},
        {"status": "@bo yes #Alpha", "in_reply_to_id": str(first.id), "visibility": "unlisted"},
        {"status": "which?", "poll": {"options": ["a", "b"], "expires_in": 3600}},
        {"status": "just me", "visibility": "direct"},
    ]
    read_back_statements: list[str] = []

    def watch(_c: Any, _cur: Any, stmt: str, *_a: Any) -> None:
        if stmt.startswith(("SELECT mentions.post_id", "SELECT post_tags.post_id")):
            read_back_statements.append(stmt)

    for body in bodies:
        sa_event.listen(Engine, "before_cursor_execute", watch)
        try:
            made = await api.post("/api/v1/statuses", json=body, headers=bearer(token))
        finally:
            sa_event.remove(Engine, "before_cursor_execute", watch)
        assert made.status_code == 200, made.text
        again = await api.get(f"/api/v1/statuses/{made.json()['id']}", headers=bearer(token))
        assert made.json() == again.json()
    assert read_back_statements == []  # the answers were not read back


async def test_a_new_post_edited_in_the_same_session__shows_the_edit(db: AsyncSession) -> None:
    """What create_post remembered is of the revision it wrote: after an edit (a new
    revision), the session's entity is the edited post, not the remembered one."""
    ana = await person(db, "ana")
    p = await post(db, ana, "before #first")
    await posts.edit_post(db, policy.Viewer(ana.id), p.id, PostInput(source="after #second"))
    (seen,) = await entity_cache.statuses(db, policy.Viewer(ana.id), await fresh_rows(db, [p.id]))
    assert "after" in seen["content"] and [t["name"] for t in seen["tags"]] == ["second"]
