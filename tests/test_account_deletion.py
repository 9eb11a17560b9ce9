"""Deleting an account (accounts.deletion): locked at once, everything it made removed by a
durable job in batches, nothing of anyone else's removed, counters right, the row kept as a
tombstone with its username reserved, and the rules: last admin, twice, suspended, CLI."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from typer.testing import CliRunner

from kith import policy
from kith.accounts import deletion
from kith.accounts import service as accounts
from kith.accounts.models import Account, AccountStats, User, UserSession
from kith.communities import service as communities
from kith.communities.models import Community, Membership
from kith.config import Settings, get_settings
from kith.db import Base, utcnow
from kith.errors import ValidationFailed
from kith.federation.delivery import DELIVER_JOB, KEEP_OUTBOUND
from kith.federation.models import ActorKey, LocalTombstone, OutboundActivity, RemoteActor
from kith.graph import service as graph
from kith.graph.models import Follow
from kith.jobs import worker
from kith.jobs.models import Job
from kith.lists import service as lists
from kith.media import service as media
from kith.moderation import service as moderation
from kith.moderation.models import Report
from kith.oauth import service as oauth
from kith.oauth.models import OAuthToken
from kith.posts import service as posts
from kith.posts.models import Like, Poll, Post
from kith.posts.service import PollInput, PostInput
from kith.runtime import Runtime
from tests.test_accounts_images import png
from tests.world import person, post, viewer


async def remote(db: AsyncSession, name: str, host: str = "remote.example") -> Account:
    """A remote account whose server has a shared inbox (no server runs: nothing is sent)."""
    uri = f"https://{host}/users/{name}"
    account = Account(username=name, username_key=name, domain=host, uri=uri)
    db.add(account)
    await db.flush()
    db.add(
        RemoteActor(
            account_id=account.id,
            inbox_url=f"{uri}/inbox",
            shared_inbox_url=f"https://{host}/inbox",
        )
    )
    await db.commit()
    return account


async def purge(rt: Runtime, account_id: int) -> int:
    """Run the purge to its end, one batch per transaction, as the job does; the batches."""
    for runs in range(1, 1000):
        async with rt.sessions() as db:
            done = await deletion.purge_step(db, account_id)
            await db.commit()
        if done:
            return runs
    raise AssertionError("the purge never ended")


async def rows_naming(db: AsyncSession, account_id: int) -> dict[str, int]:
    """How many rows of each table (but the kept ones) still name the account."""
    found: dict[str, int] = {}
    for table in Base.metadata.sorted_tables:
        if table.name in deletion.KEPT_TABLES:
            continue
        for fk in table.foreign_keys:
            if fk.column.table.name == "accounts":
                n = await db.scalar(
                    select(func.count()).select_from(table).where(fk.parent == account_id)
                )
                if n:
                    found[f"{table.name}.{fk.parent.name}"] = int(n)
    return found


async def stats(db: AsyncSession, account: Account) -> tuple[int, int, int]:
    row = await db.get(AccountStats, account.id, populate_existing=True)
    assert row is not None
    return row.statuses_count, row.followers_count, row.following_count


async def fresh(db: AsyncSession, model: Any, key: Any) -> Any:
    return await db.get(model, key, populate_existing=True)


async def test_delete__removes_everything_of_the_account_and_nothing_else(
    rt: Runtime, db: AsyncSession, settings: Settings
) -> None:
    # Given an admin, ana (who is deleted), bob and cy here, and rita on another server
    await person(db, "ada", admin=True)
    ana, bob, cy = [await person(db, n) for n in ("ana", "bob", "cy")]
    rita = await remote(db, "rita")
    # And ana's posts, a poll, a reply to bob, a boost of bob, likes and a vote
    ana_post = await post(db, ana, "ana's words")
    ana_poll = await post(db, ana, "pick", poll=PollInput(options=["a", "b"], expires_in=3600))
    bob_post = await post(db, bob, "bob's words")
    bob_poll = await post(db, bob, "bob asks", poll=PollInput(options=["x", "y"], expires_in=3600))
    ana_reply = await post(db, ana, "@bob agreed", reply_to=bob_post)
    await posts.boost(db, viewer(ana), bob_post.id)
    await posts.like(db, viewer(ana), bob_post.id)
    await posts.like(db, viewer(cy), bob_post.id)
    await posts.vote(db, viewer(ana), bob_poll.id, [0])
    await posts.vote(db, viewer(cy), bob_poll.id, [1])
    # And bob's reply to ana, his like and boost of her post, cy's own post
    bob_reply = await post(db, bob, "@ana nice", reply_to=ana_post)
    await posts.like(db, viewer(bob), ana_post.id)
    await posts.boost(db, viewer(bob), ana_post.id)
    cy_post = await post(db, cy, "cy's words")
    # And follows both ways, rita following ana, a list, a bookmark, a mute, an upload
    await graph.follow(db, bob.id, ana.id)
    await graph.follow(db, ana.id, cy.id)
    db.add(Follow(follower_id=rita.id, followee_id=ana.id))
    await db.commit()
    await lists.create_list(db, ana.id, title="friends")
    await posts.bookmark(db, viewer(ana), cy_post.id)
    await graph.mute(db, ana.id, cy.id)
    await media.upload(db, ana, png(), "image/png")
    # And a community ana owns, which bob joined, and a report about ana
    made = await communities.create_community(
        db, ana.id, "gardeners", communities.CommunityInput(name="Gardeners")
    )
    await communities.join(db, bob.id, made)
    await moderation.file_report(db, viewer(bob), account_id=ana.id, post_ids=[ana_post.id])
    # And ana is signed in, with an app token
    ana_user = await accounts.user_for_account(db, ana.id)
    assert ana_user is not None
    await accounts.start_session(db, ana_user)
    await oauth.create_personal_token(db, ana, "app", "read write")
    bob_before = await stats(db, bob)

    # When the operator deletes ana
    await deletion.delete_by_name(db, "ana")

    # Then at once she can't sign in or use her token, and she is hidden
    assert await db.scalar(select(User).where(User.account_id == ana.id)) is None
    assert await db.scalar(select(func.count()).select_from(UserSession)) == 0
    assert await db.scalar(select(func.count()).where(OAuthToken.account_id == ana.id)) == 0
    locked = await fresh(db, Account, ana.id)
    assert locked.deleted_at is not None and locked.suspended_at is not None
    assert not await policy.can_see_post(db, viewer(bob), ana_post)
    assert not await policy.can_see_account(db, viewer(bob, admin=True), locked)
    # And Delete(Person) waits for rita's server, signed by ana (the row holds her key)
    sent = (await db.scalars(select(OutboundActivity))).all()
    deletes = [a for a in sent if a.document.get("type") == "Delete"]
    assert len(deletes) == 1 and deletes[0].actor_account_id == ana.id
    assert deletes[0].document["object"] == "http://kith.test/users/ana"
    jobs = (await db.scalars(select(Job).where(Job.kind == DELIVER_JOB))).all()
    assert [j.payload["inbox"] for j in jobs if j.payload["activity"] == deletes[0].id] == [
        "https://remote.example/inbox"
    ]

    # When the purge runs (small batches, to see it go on across transactions)
    deletion.PURGE_BATCH, batch = 2, deletion.PURGE_BATCH
    try:
        runs = await purge(rt, ana.id)
    finally:
        deletion.PURGE_BATCH = batch
    assert runs > 2

    # Then nothing names ana any more but her tombstone, counters, key, reports
    assert await rows_naming(db, ana.id) == {}
    assert await stats(db, ana) == (0, 0, 0)
    assert await db.scalar(select(func.count()).where(Report.target_account_id == ana.id)) == 1
    gone = await fresh(db, Account, ana.id)
    assert gone.username == "ana" and gone.display_name == "" and gone.deleted_at is not None
    # And her posts answer as tombstones (a Question for the poll, nothing for the boost)
    kinds = dict((await db.execute(select(LocalTombstone.uri, LocalTombstone.former_type))).all())
    base = "http://kith.test/users/ana/statuses"
    assert kinds == {
        f"{base}/{ana_post.id}": "Note",
        f"{base}/{ana_poll.id}": "Question",
        f"{base}/{ana_reply.id}": "Note",
    }
    # And everyone else's things stay, counted again
    bob_post = await fresh(db, Post, bob_post.id)
    assert (bob_post.likes_count, bob_post.reblogs_count, bob_post.replies_count) == (1, 0, 0)
    assert await db.scalar(select(Like.account_id).where(Like.post_id == bob_post.id)) == cy.id
    reply = await fresh(db, Post, bob_reply.id)
    assert reply is not None and reply.in_reply_to_id is None
    poll = await fresh(db, Poll, bob_poll.id)
    assert (poll.votes_count, poll.voters_count) == (1, 1)
    assert await fresh(db, Post, cy_post.id) is not None
    # And bob lost his boost of ana's post and his follow of her; cy lost a follower
    assert await stats(db, bob) == (bob_before[0] - 1, 0, 0)
    assert await stats(db, cy) == (1, 0, 0)
    # And the community goes on without an owner, bob still in it
    community = await fresh(db, Community, made.id)
    assert community is not None and community.owner_id is None
    assert await db.get(Membership, (made.id, bob.id)) is not None
    # And her username can never be taken again
    with pytest.raises(ValidationFailed) as taken:
        await accounts.register(
            db,
            username="ANA",
            email="new@example.test",
            password="another good one",
            bypass_mode=True,
        )
    assert taken.value.field == "username"


async def test_delete__files_of_posts_uploads_and_avatar_are_removed(
    rt: Runtime, db: AsyncSession, settings: Settings
) -> None:
    # Given ana with an avatar, a post with an image and an upload never attached
    from kith.accounts import profile

    await person(db, "ada", admin=True)
    ana = await person(db, "ana")
    await profile.set_image(db, ana, "avatar", png())
    attached = await media.upload(db, ana, png(), "image/png")
    await posts.create_post(db, ana, PostInput(source="pic", media_ids=[attached.id]))
    loose = await media.upload(db, ana, png(), "image/png")
    media_dir = settings.effective_media_dir
    files = [ana.avatar_path, attached.file_path, loose.file_path, loose.preview_path]
    assert all(p and (media_dir / p).exists() for p in files)
    # When she is deleted and purged, and the worker runs the file jobs
    await deletion.delete_by_name(db, "ana")
    await purge(rt, ana.id)
    async with rt.sessions() as s:
        file_jobs = (await s.scalars(select(Job).where(Job.kind == "media.delete_files"))).all()
        for job in file_jobs:
            await media.delete_files_job(s, job.payload)
    # Then no file of hers is left
    assert [p for p in files if p and (media_dir / p).exists()] == []


async def test_delete__the_last_admin_is_refused_another_admin_is_not(db: AsyncSession) -> None:
    # Given one admin
    ada = await person(db, "ada", admin=True)
    # When they delete their own account, Then it is refused and nothing changes
    with pytest.raises(ValidationFailed) as refused:
        await deletion.delete_by_name(db, "ada")
    assert refused.value.field == "account" and "last admin" in refused.value.message
    assert (await fresh(db, Account, ada.id)).deleted_at is None
    # When there is a second admin, Then the first can go
    await person(db, "second", admin=True)
    await deletion.delete_by_name(db, "ada")
    assert (await fresh(db, Account, ada.id)).deleted_at is not None


async def test_delete__twice__is_refused_and_locks_once(rt: Runtime, db: AsyncSession) -> None:
    await person(db, "ada", admin=True)
    ana = await person(db, "ana")
    await deletion.delete_by_name(db, "ana")
    with pytest.raises(ValidationFailed) as again:
        await deletion.delete_by_name(db, "ana")
    assert again.value.message == deletion.ALREADY_DELETED
    # And a lock raced by a stale copy of the account (deleted_at not seen) still locks once
    async with rt.sessions() as other:
        stale = await other.get(Account, ana.id)
        assert stale is not None
        set_committed_value(stale, "deleted_at", None)  # as a concurrent request read it
        with pytest.raises(ValidationFailed):
            await deletion._lock(other, stale)
    purges = await db.scalar(select(func.count()).where(Job.kind == deletion.PURGE_JOB))
    assert purges == 1


async def test_delete__a_suspended_account__keeps_its_suspension_date(db: AsyncSession) -> None:
    await person(db, "ada", admin=True)
    ana = await person(db, "ana")
    await moderation.suspend(db, ana)
    suspended_at = ana.suspended_at
    await deletion.delete_by_name(db, "ana")
    gone = await fresh(db, Account, ana.id)
    assert gone.deleted_at is not None and gone.suspended_at == suspended_at
    # And no moderator action brings it back
    ada = await accounts.find_local_account(db, "ada")
    assert ada is not None
    with pytest.raises(ValidationFailed):
        await moderation.moderate_account(db, viewer(ada, admin=True), ana.id, "unsuspend")


async def test_admin_delete__refuses_admins_themselves_and_remote_accounts(
    db: AsyncSession,
) -> None:
    ada = await person(db, "ada", admin=True)
    other_admin = await person(db, "other", admin=True)
    rita = await remote(db, "rita")
    bob = await person(db, "bob")
    mod = viewer(ada, admin=True)
    for target in (ada, other_admin, rita):
        with pytest.raises(ValidationFailed):
            await deletion.delete_account(db, mod, target.id)
    from kith.errors import Forbidden

    with pytest.raises(Forbidden):
        await deletion.delete_account(db, viewer(bob), other_admin.id)
    deleted = await deletion.delete_account(db, mod, bob.id)
    assert deleted.deleted_at is not None


async def test_purge_job__a_crash_mid_batch_commits_nothing_and_the_job_resumes(
    rt: Runtime, db: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given ana (three posts, likes) was deleted, so a purge job waits
    await person(db, "ada", admin=True)
    ana, bob = await person(db, "ana"), await person(db, "bob")
    bob_post = await post(db, bob, "hi")
    for text in ("one", "two", "three"):
        await post(db, ana, f"@bob {text}", reply_to=bob_post)
    await posts.like(db, viewer(ana), bob_post.id)
    await deletion.delete_by_name(db, "ana")

    # When the worker dies in the middle of the batch (after its deletes, before its commit)
    async def crash(*args: Any) -> None:
        raise RuntimeError("worker killed")

    monkeypatch.setattr(deletion, "_recount", crash)
    await worker.run_once(rt.sessions, "first")
    # Then nothing of that batch was kept, and the job is still there, to run again
    assert await db.scalar(select(func.count()).where(Post.account_id == ana.id)) == 3
    job = await db.scalar(select(Job).where(Job.kind == deletion.PURGE_JOB))
    assert job is not None and "worker killed" in (job.last_error or "")
    # When another worker runs it later (its retry time brought forward)
    monkeypatch.undo()
    job.run_at = utcnow()
    await db.commit()
    while await worker.run_once(rt.sessions, "second"):
        pass
    # Then the purge ran to its end once
    assert await db.scalar(select(func.count()).where(Post.account_id == ana.id)) == 0
    counted = await fresh(db, Post, bob_post.id)
    assert (counted.likes_count, counted.replies_count) == (0, 0)
    assert await db.scalar(select(func.count()).where(Job.kind == deletion.PURGE_JOB)) == 0
    assert await db.scalar(select(func.count()).where(Job.kind == deletion.FORGET_KEY_JOB)) == 1


async def test_forget_key__waits_for_the_deliveries_then_drops_key_and_activities(
    rt: Runtime, db: AsyncSession
) -> None:
    # Given ana, followed from another server, was deleted and purged (her key signed)
    from kith.federation import keys

    await person(db, "ada", admin=True)
    ana = await person(db, "ana")
    await keys.local_key(db, ana)
    rita = await remote(db, "rita")
    db.add(Follow(follower_id=rita.id, followee_id=ana.id))
    await db.commit()
    await deletion.delete_by_name(db, "ana")
    await purge(rt, ana.id)
    # When the key job runs before every delivery could have run, Then the key stays
    await deletion.forget_key_job(db, {"account_id": ana.id})
    await db.commit()
    assert await db.scalar(select(func.count()).where(ActorKey.account_id == ana.id)) == 1
    # When it runs after KEEP_OUTBOUND, Then key and stored activities are gone
    gone = await fresh(db, Account, ana.id)
    gone.deleted_at = utcnow() - KEEP_OUTBOUND
    await db.commit()
    await deletion.forget_key_job(db, {"account_id": ana.id})
    await db.commit()
    assert await db.scalar(select(func.count()).where(ActorKey.account_id == ana.id)) == 0
    count = select(func.count()).where(OutboundActivity.actor_account_id == ana.id)
    assert await db.scalar(count) == 0
    assert await fresh(db, Account, ana.id) is not None


def test_cli__user_delete(settings: Settings, monkeypatch: pytest.MonkeyPatch, rt: Runtime) -> None:
    from kith.cli import app

    password = "a good password here"
    monkeypatch.setenv("KITH_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("KITH_DOMAIN", settings.domain)
    monkeypatch.setenv("KITH_VAR_DIR", str(settings.var_dir))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        for name, extra in (("ada", ["--admin"]), ("bob", [])):
            made = ["user", "create", name, "--email", f"{name}@x.test", "--password", password]
            assert runner.invoke(app, made + extra).exit_code == 0
        # Without --yes it asks, and "no" deletes nothing
        r = runner.invoke(app, ["user", "delete", "bob"], input="n\n")
        assert r.exit_code == 1
        r = runner.invoke(app, ["user", "delete", "bob", "--yes"])
        assert r.exit_code == 0 and "deleted @bob" in r.output, r.output
        r = runner.invoke(app, ["user", "delete", "bob", "--yes"])
        assert r.exit_code == 2 and "already deleted" in r.output
        r = runner.invoke(app, ["user", "delete", "nobody", "--yes"])
        assert r.exit_code == 2 and "No local account" in r.output
        r = runner.invoke(app, ["user", "delete", "ada", "--yes"])
        assert r.exit_code == 2 and "last admin" in r.output
        assert "bob" not in runner.invoke(app, ["user", "list"]).output
    finally:
        get_settings.cache_clear()
