"""Create, edit and delete posts; like, boost, bookmark, pin; polls. The rules of posting."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import BigInteger, Select, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from kith import policy, text
from kith.accounts.models import Account
from kith.communities import posting as community_posting
from kith.communities.models import Community
from kith.db import new_id, one_of, utcnow
from kith.db_plans import (
    COMMIT_EARLY,
    Plan,
    Step,
    column_binds,
    insert_ignoring_conflicts,
    loaded,
    read,
    run_plan,
)
from kith.emojis import service as emoji_service
from kith.errors import Forbidden, NotFound, ValidationFailed
from kith.federation import groups, outbound
from kith.jobs.queue import enqueue, job_handler
from kith.media import service as media
from kith.notifications import service as notifications
from kith.notifications.models import Notification, NotificationType
from kith.posts import presenter
from kith.posts.models import (
    Bookmark,
    Like,
    Mention,
    Pin,
    Poll,
    PollVote,
    Post,
    PostEdit,
    PostTag,
    Tag,
    Visibility,
)
from kith.runtime import after_commit, runtime_of
from kith.search import service as search

log = logging.getLogger(__name__)

T = TypeVar("T")
U = TypeVar("U")

MAX_PINS = 5
MAX_SPOILER = 500
POLL_MIN_SECONDS = 300
POLL_MAX_SECONDS = 30 * 24 * 3600
POLL_OPTION_MAX = 100
LANGUAGE_RE_MAX = 16


@dataclass(frozen=True)
class PollInput:
    """A poll as the composer sends it."""

    options: list[str]
    expires_in: int  # seconds
    multiple: bool = False
    hide_totals: bool = False


@dataclass
class PostInput:
    """Everything a new post (or an edit) may carry."""

    source: str
    visibility: Visibility = Visibility.PUBLIC
    spoiler_text: str = ""
    sensitive: bool = False
    language: str | None = None
    in_reply_to_id: int | None = None
    poll: PollInput | None = None
    extra: dict[str, str] = field(default_factory=dict)
    # Uploads (media.service.upload) to attach, in order. On an edit: the post's current
    # attachments or empty (attachments can't be added or removed by editing) …
    media_ids: list[int] = field(default_factory=list)
    # … but their alt text may change: attachment id → new description.
    media_descriptions: dict[int, str] = field(default_factory=dict)
    # Communities a new thread is addressed to (a reply goes to its thread's): see
    # communities.posting. Ignored by edits.
    community_ids: list[int] = field(default_factory=list)
    # The flair a new thread wears in a community (community id → flair id; checked with the
    # communities, before anything is written).
    community_flairs: dict[int, int] = field(default_factory=dict)


def _check_language(lang: str | None) -> str | None:
    if not lang:
        return None
    lang = lang.strip()
    if not (1 < len(lang) <= LANGUAGE_RE_MAX) or not all(c.isalnum() or c == "-" for c in lang):
        raise ValidationFailed("Use a language code such as en or pt-BR.", field="language")
    return lang


def _check_poll(poll: PollInput, max_options: int) -> PollInput:
    options = [o.strip() for o in poll.options]
    if not 2 <= len(options) <= max_options:
        raise ValidationFailed(f"A poll needs 2 to {max_options} options.", field="poll")
    if any(not o for o in options):
        raise ValidationFailed("Poll options can't be empty.", field="poll")
    if any(len(o) > POLL_OPTION_MAX for o in options):
        raise ValidationFailed(
            f"Poll options are at most {POLL_OPTION_MAX} characters.", field="poll"
        )
    if len({o.casefold() for o in options}) != len(options):
        raise ValidationFailed("Poll options must differ.", field="poll")
    if not POLL_MIN_SECONDS <= poll.expires_in <= POLL_MAX_SECONDS:
        raise ValidationFailed("A poll lasts between 5 minutes and 30 days.", field="poll")
    return PollInput(options, poll.expires_in, poll.multiple, poll.hide_totals)


def _check_content(db: AsyncSession, data: PostInput, *, may_be_empty: bool = False) -> None:
    limit = runtime_of(db).settings.max_post_chars
    if not (may_be_empty or data.source.strip() or data.poll is not None or data.media_ids):
        raise ValidationFailed("Write something first.", field="status")
    if data.poll is not None and data.media_ids:
        raise ValidationFailed(
            "A post can have a poll or attachments, not both.", field="media_ids"
        )
    if text.count_characters(data.source) + len(data.spoiler_text) > limit:
        raise ValidationFailed(f"Posts are at most {limit} characters.", field="status")
    if len(data.spoiler_text) > MAX_SPOILER:
        raise ValidationFailed(
            f"Content warnings are at most {MAX_SPOILER} characters.", field="spoiler_text"
        )
    try:
        Visibility(data.visibility)
    except ValueError:
        raise ValidationFailed("Unknown audience.", field="visibility") from None


class _Mentioned(NamedTuple):
    id: int
    key: str  # the handle as `text.parse_text` normalises it: "ana" or "ana@host"
    url: str  # where the mention links to: the profile page
    local: bool
    account: Account


# A remote handle somewhere in the text: the cheap test that spares posts without one any
# parsing, query or request beyond the local mentions'.
_REMOTE_HANDLE_HINT = re.compile(r"@[A-Za-z0-9_]{1,30}@[A-Za-z0-9]")
MAX_REMOTE_MENTIONS = 10
# Looking up handles stops starting new lookups after this long (each is bounded by the
# outbound client's own timeouts); the handles left stay plain text.
REMOTE_MENTIONS_SECONDS = 15.0


async def _resolve_remote_mentions(db: AsyncSession, source: str) -> dict[str, _Mentioned]:
    """The accounts of the `@user@host` mentions of `source` (at most MAX_REMOTE_MENTIONS,
    in order), looked up through WebFinger when not known: call it BEFORE the session writes
    anything (on SQLite no request may wait while it holds the write lock). New remote
    accounts are stored (flushed) at the end, after every request. A handle that cannot be
    resolved is left out, and stays plain text in the post."""
    if not _REMOTE_HANDLE_HINT.search(source):
        return {}
    from kith.federation import remote_accounts  # federation imports posts: import late

    handles = [m for m in text.parse_text(source).mentions if "@" in m][:MAX_REMOTE_MENTIONS]
    found: dict[str, Account | dict[str, Any]] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REMOTE_MENTIONS_SECONDS
    for handle in handles:
        split = remote_accounts.split_handle(handle)
        if split is None or loop.time() > deadline:
            continue
        try:
            found[handle] = await remote_accounts.find_handle(db, *split)
        except remote_accounts.ActorFetchFailed as exc:
            log.info("mention %s left as text: %s", handle[:300], exc)
    base = runtime_of(db).settings.base_url
    mentioned: dict[str, _Mentioned] = {}
    for handle, account_or_doc in found.items():
        if isinstance(account_or_doc, Account):
            account = account_or_doc
        else:
            try:
                account = await remote_accounts.store_document(db, account_or_doc)
            except remote_accounts.ActorFetchFailed as exc:
                log.info("mention %s left as text: %s", handle[:300], exc)
                continue
        if account.suspended_at is not None:
            continue
        if account.is_local:
            url = f"{base}/@{account.username}"
        else:
            url = await remote_accounts.profile_url(db, account)
        mentioned[handle] = _Mentioned(account.id, handle, url, account.is_local, account)
    return mentioned


async def _render(
    db: AsyncSession, source: str, remote: Mapping[str, _Mentioned]
) -> tuple[str, list[_Mentioned], list[str], list[Community]]:
    """HTML of the source, the accounts it mentions (local names looked up here, `remote`
    the `@user@host` ones resolved beforehand), its hashtags, and the local communities it
    mentions (linked to their pages; `communities.posting.mentioned`)."""
    prepared = text.prepare_post(source)  # parsed once, rendered below
    parsed = prepared.parsed
    base = runtime_of(db).settings.base_url
    local_names = [m for m in parsed.mentions if "@" not in m]
    mentioned: list[_Mentioned] = []
    if local_names:
        statement = _local_accounts_statement(db.get_bind().dialect.name)
        rows = await read(db, statement, {"names": local_names})
        mentioned = [
            _Mentioned(a.id, a.username_key, f"{base}/@{a.username}", True, a)
            for a in (loaded(db, Account, row) for row in rows)
        ]
    seen = {m.id for m in mentioned}
    for handle in parsed.mentions:
        if handle in remote and remote[handle].id not in seen:
            mentioned.append(remote[handle])
            seen.add(remote[handle].id)
    urls = {m.key: m.url for m in mentioned} | {k: m.url for k, m in remote.items()}
    groups = await community_posting.mentioned(db, parsed, accounts=urls.keys())
    urls |= {key: f"{base}/c/{c.handle}" for key, c in groups.items()}
    html = prepared.render(mention_urls=urls, hashtag_url=lambda t: f"{base}/tags/{t}")
    communities = list({c.id: c for c in groups.values()}.values())
    return html, mentioned, list(parsed.hashtags), communities


@functools.cache
def _local_accounts_statement(dialect_name: str) -> Select[tuple[Any, ...]]:
    """Local, unsuspended accounts by lowercase name (`names`), every column (for
    `db_plans.loaded`): built once, as every post with a mention runs it."""
    return select(*Account.__table__.columns).where(
        one_of(Account.username_key, "names", dialect_name),
        Account.domain == "",
        Account.suspended_at.is_(None),
    )


_TAG_IDS = {
    dialect: select(Tag.name, Tag.id).where(one_of(Tag.name, "names", dialect))
    for dialect in ("sqlite", "postgresql")
}
_ADD_TAGS = insert_ignoring_conflicts(Tag.__table__)  # type: ignore[arg-type]


async def ids_of_tags(db: AsyncSession, tags: list[str]) -> dict[str, int]:
    """Ids of these hashtags (deduplicated, in order), creating the new ones: one lookup for
    all, one insert for the missing (a tag created meanwhile by a concurrent post is fine)."""
    return await run_plan(db, ids_of_tags_plan(db.get_bind().dialect.name, tags))


def ids_of_tags_plan(dialect: str, tags: list[str]) -> Plan[dict[str, int]]:
    """`ids_of_tags` as a plan (`kith.db_plans`)."""
    names = list(dict.fromkeys(tags))
    if not names:
        return {}
    tag_ids = _TAG_IDS[dialect]
    ids = {row[0]: row[1] for row in (yield Step(tag_ids, {"names": names}, rows=True)) or ()}
    missing = [name for name in names if name not in ids]
    if missing:
        yield Step(
            _ADD_TAGS[dialect], [{"id": new_id(), "name": n, "display_name": n} for n in missing]
        )
        found = yield Step(tag_ids, {"names": missing}, rows=True)
        ids.update({row[0]: row[1] for row in found or ()})
    return {name: ids[name] for name in names}


async def _attach_tags(db: AsyncSession, post_id: int, tags: list[str]) -> None:
    """Link the post to its hashtags, creating the new ones."""
    tag_ids = await ids_of_tags(db, tags)
    db.add_all(PostTag(tag_id=tag_id, post_id=post_id) for tag_id in tag_ids.values())


async def get_visible_post(db: AsyncSession, viewer: policy.Viewer, post_id: int) -> Post:
    """The post if the viewer may see it; NotFound otherwise (never reveal it exists)."""
    post = await db.get(Post, post_id)
    if post is None or not await policy.can_see_post(db, viewer, post):
        raise NotFound("This post does not exist or is not visible to you.")
    return post


async def create_post(db: AsyncSession, author: Account, data: PostInput) -> Post:
    """Publish a post: render it, link mentions and tags, notify, and tell live timelines.

    A reply must be to a post the author can see; replying to a deleted or invisible post is
    refused. Direct posts are seen only by the people they mention."""
    settings = runtime_of(db).settings
    _check_content(db, data)
    language = _check_language(data.language)
    poll = _check_poll(data.poll, settings.max_poll_options) if data.poll else None
    await media.check_attachable(db, author, data.media_ids)  # before anything is written
    remote_mentions = await _resolve_remote_mentions(db, data.source)
    viewer = policy.Viewer(author.id)
    parent: Post | None = None
    if data.in_reply_to_id is not None:
        try:
            parent = await get_visible_post(db, viewer, data.in_reply_to_id)
        except NotFound:
            raise ValidationFailed(
                "The post you are replying to is gone or not visible.", field="in_reply_to_id"
            ) from None
        if parent.reblog_of_id is not None:
            parent = await get_visible_post(db, viewer, parent.reblog_of_id)
    html, mentioned, tags, named = await _render(db, data.source, remote_mentions)
    # Communities (chosen, or named in the text): checked before anything is written,
    # attached after the post row.
    where = await community_posting.addressed(
        db, author.id, data.community_ids, data.visibility, parent, named
    )
    await community_posting.check_flairs(db, where, data.community_flairs)
    created_at = utcnow()
    post = Post(
        id=new_id(),
        account_id=author.id,
        visibility=Visibility(data.visibility),
        source=data.source,
        content_html=html,
        spoiler_text=data.spoiler_text.strip(),
        sensitive=data.sensitive or bool(data.spoiler_text.strip()),
        language=language,
        in_reply_to_id=parent.id if parent else None,
        in_reply_to_account_id=parent.account_id if parent else None,
        thread_root_id=(parent.thread_root_id or parent.id) if parent else None,
        reblog_of_id=None,
        created_at=created_at,
        edited_at=None,
        replies_count=0,
        reblogs_count=0,
        likes_count=0,
        render_rev=0,
        community_gate=None,
    )
    post.uri = f"{settings.base_url}/@{author.username}/{post.id}"
    dialect = db.get_bind().dialect.name
    rows = _post_rows_plan(dialect, post, [a.id for a in mentioned], tags)
    # What every new post does once written (`link_new_post_plan`), then this one's remote
    # readers' inboxes (`outbound.post_inboxes_step`) and the render revision it leaves.
    # Communities, media and a poll are written by the session in between, when there are
    # any: they may narrow who sees the post, which notifications check.
    alone = where.empty and not data.media_ids and not poll
    link = _link_and_read_plan(
        dialect,
        post,
        parent=parent,
        mentioned_ids=[a.id for a in mentioned if a.local],
        read_rev=not data.media_ids,
        last=alone,  # nothing but deliveries follows it (then it does not commit)
    )
    if alone:
        tag_ids, (added, inboxes, rev) = await run_plan(db, _then(rows, link))
        _held(db, post)
    else:
        tag_ids = await run_plan(db, rows)
        _held(db, post)
        await community_posting.attach(db, post, where, data.community_flairs)  # (see above)
        if data.media_ids:
            try:
                await media.attach(db, author, post, data.media_ids)
            except ValidationFailed:
                await db.rollback()  # an upload was taken by a concurrent post: write nothing
                raise
        if poll:
            db.add(
                Poll(
                    post_id=post.id,
                    options=poll.options,
                    multiple=poll.multiple,
                    hide_totals=poll.hide_totals,
                    expires_at=post.created_at + timedelta(seconds=poll.expires_in),
                )
            )
            await enqueue(
                db,
                "poll.ended",
                {"post_id": post.id},
                run_at=post.created_at + timedelta(seconds=poll.expires_in),
            )
        added, inboxes, rev = await run_plan(db, link)  # (it flushes what the session holds)
    notifications.remember_added(db, added)
    await outbound.send_created(db, post, author, inboxes)
    if not where.empty:  # its communities' Groups pass it on to their remote members
        await groups.announce_post(db, post)
    await db.commit()
    if rev is not None:
        # The response's entity is built from what is held here rather than read back (see
        # presenter.remember_fresh), at the revision this transaction left; with media, the
        # attachments are read back.
        emojis = await emoji_service.for_posts(db, [post], {author.id: author})
        presenter.remember_fresh(
            db,
            presenter.PostView(
                post=post,
                author=author,
                mentions=sorted((m.account for m in mentioned), key=lambda a: a.id),
                tags=sorted(tag_ids),
                emojis=emojis.get(post.id, []),
            ),
            rev,
        )
    await _announce(db, "post.created", post)
    return post


# A new post's rows, written by `create_post`'s plan (`kith.db_plans`): every column named.
_INSERT_POST = {
    "sqlite": insert(Post).values(column_binds(Post.__table__)),  # type: ignore[arg-type]
    "postgresql": search.insert_post_indexed(Post.__table__),  # type: ignore[arg-type]
}
_INSERT_MENTION = insert(Mention).values(column_binds(Mention.__table__))  # type: ignore[arg-type]
_INSERT_POST_TAG = insert(PostTag).values(column_binds(PostTag.__table__))  # type: ignore[arg-type]
_RENDER_REV = select(Post.render_rev).where(Post.id == bindparam("id", type_=BigInteger()))
_COUNT_REPLY = (  # (an UPDATE's bind may not be named after a column)
    update(Post)
    .where(Post.id == bindparam("parent_id", type_=BigInteger()))
    .values(replies_count=Post.replies_count + 1)
)


def _post_rows_plan(
    dialect: str, post: Post, mention_ids: list[int], tags: list[str]
) -> Plan[dict[str, int]]:
    """The post's row (every column as `post` holds it), its mentions and its hashtags (made
    when new); returns the hashtags' ids by name."""
    tag_ids = yield from ids_of_tags_plan(dialect, tags)
    values = {c.key: getattr(post, c.key) for c in Post.__table__.columns}
    if dialect == "postgresql":  # its search document in the same row (see link_new_post_plan)
        values["body"] = search.post_document(post)
    yield Step(_INSERT_POST[dialect], values)
    if mention_ids:
        yield Step(_INSERT_MENTION, [{"post_id": post.id, "account_id": i} for i in mention_ids])
    if tag_ids:
        yield Step(_INSERT_POST_TAG, [{"post_id": post.id, "tag_id": i} for i in tag_ids.values()])
    return tag_ids


def _link_and_read_plan(
    dialect: str,
    post: Post,
    *,
    parent: Post | None,
    mentioned_ids: list[int],
    read_rev: bool,
    last: bool,
) -> Plan[tuple[list[tuple[int, int]], set[str], int | None]]:
    """`link_new_post_plan`, then the post's remote inboxes and (`read_rev`) its revision;
    committed early when this is the `last` of the post's writes and no delivery follows."""
    added = yield from link_new_post_plan(
        dialect,
        post,
        parent=parent,
        mentioned_ids=mentioned_ids,
        indexed=dialect == "postgresql",  # (`_post_rows_plan`)
    )
    found = yield outbound.post_inboxes_step(post)
    inboxes = {row[0] for row in found or () if row[0]}
    rev = None
    if read_rev:
        (row,) = (yield Step(_RENDER_REV, {"id": post.id}, rows=True)) or [(None,)]
        rev = row[0]
    if last and not inboxes:
        yield COMMIT_EARLY
    return added, inboxes, rev


def _then(first: Plan[T], second: Plan[U]) -> Plan[tuple[T, U]]:
    one = yield from first
    return one, (yield from second)


def _held(db: AsyncSession, post: Post) -> None:
    """A post written by a plan, held by the session as if it had flushed it: persistent,
    every column loaded (so a later change to it is an UPDATE, and reading it loads nothing)."""
    make_transient_to_detached(post)
    db.add(post)


async def link_new_post(
    db: AsyncSession, post: Post, *, parent: Post | None, mentioned_ids: list[int]
) -> None:
    """What every new post does once written, made here or arriving from another server
    (in the caller's transaction): see `link_new_post_plan`."""
    plan = link_new_post_plan(
        db.get_bind().dialect.name, post, parent=parent, mentioned_ids=mentioned_ids
    )
    notifications.remember_added(db, await run_plan(db, plan))


def link_new_post_plan(
    dialect: str,
    post: Post,
    *,
    parent: Post | None,
    mentioned_ids: list[int],
    indexed: bool = False,
) -> Plan[list[tuple[int, int]]]:
    """`link_new_post` as a plan (`kith.db_plans`): count it as a reply, notify the author
    it replies to and the local people it mentions (policy decides who may be), index its
    text (unless the row was `indexed` as it was inserted: `search.insert_post_indexed`).
    Returns the notifications added, for `notifications.remember_added`."""
    added: list[tuple[int, int]] = []
    if parent is not None:
        yield Step(_COUNT_REPLY, {"parent_id": parent.id})
        added += yield from notifications.notify_many_plan(
            dialect,
            recipient_ids=[parent.account_id],
            type=NotificationType.REPLY,
            from_account_id=post.account_id,
            post_id=post.id,
        )
    added += yield from notifications.notify_many_plan(
        dialect,
        recipient_ids=[i for i in mentioned_ids if parent is None or i != parent.account_id],
        type=NotificationType.MENTION,
        from_account_id=post.account_id,
        post_id=post.id,
    )
    if post.reblog_of_id is None and not indexed:
        yield from search.index_post_plan(dialect, post.id, search.post_document(post), new=True)
    return added


def announce_after_commit(db: AsyncSession, post: Post) -> None:
    """For a new post written inside a job (a remote post from the inbox): its `post.created`
    event for live timelines and streaming, published once the worker commits."""
    event = {"type": "post.created", "post_id": post.id, "account_id": post.account_id}

    async def publish(own: AsyncSession) -> None:
        await runtime_of(own).bus.publish("posts", event)

    after_commit(db, f"post.created:{post.id}", publish)


async def _announce(db: AsyncSession, event_type: str, post: Post) -> None:
    """After commit: publish the post event and the notifications this session created."""
    event = {"type": event_type, "post_id": post.id, "account_id": post.account_id}
    await runtime_of(db).bus.publish_many(
        [("posts", event), *notifications.notification_events(db)]
    )


async def edit_post(db: AsyncSession, viewer: policy.Viewer, post_id: int, data: PostInput) -> Post:
    """Change a post's text, content warning, sensitivity or language; the earlier version
    goes to the visible edit history and people who boosted it are notified. Audience and
    reply target never change (that would widen who saw it)."""
    post = await get_visible_post(db, viewer, post_id)
    if not policy.can_edit_post(viewer, post) or post.reblog_of_id is not None:
        raise Forbidden("Only the author can edit this post.")
    data.visibility = Visibility(post.visibility)
    data.poll = None
    poll = await db.get(Poll, post.id)
    attachments = await media.for_post(db, post.id)
    if data.media_ids and list(dict.fromkeys(data.media_ids)) != [m.id for m in attachments]:
        raise ValidationFailed(
            "Attachments can't be added, removed or reordered by editing.", field="media_ids"
        )
    if not data.source.strip() and poll is None and not attachments:
        raise ValidationFailed("Write something first.", field="status")
    _check_content(
        db, PostInput(source=data.source, spoiler_text=data.spoiler_text), may_be_empty=True
    )
    remote_mentions = await _resolve_remote_mentions(db, data.source)  # before any write
    language = _check_language(data.language) if data.language is not None else post.language
    await media.describe(db, attachments, data.media_descriptions)
    if not post.edited_at:
        # Keep the original as the first history entry, as Mastodon shows it.
        db.add(
            PostEdit(
                post_id=post.id,
                source=post.source,
                content_html=post.content_html,
                spoiler_text=post.spoiler_text,
                sensitive=post.sensitive,
                created_at=post.created_at,
            )
        )
    html, mentioned, tags, _ = await _render(db, data.source, remote_mentions)
    now = utcnow()
    post.source = data.source
    post.content_html = html
    post.spoiler_text = data.spoiler_text.strip()
    post.sensitive = data.sensitive or bool(post.spoiler_text)
    post.language = language
    post.edited_at = now
    db.add(
        PostEdit(
            post_id=post.id,
            source=post.source,
            content_html=html,
            spoiler_text=post.spoiler_text,
            sensitive=post.sensitive,
            created_at=now,
        )
    )
    existing = set(
        (await db.scalars(select(Mention.account_id).where(Mention.post_id == post.id))).all()
    )
    for acc in mentioned:
        if acc.id not in existing:
            # Direct posts must not gain readers by editing: only widen non-direct mentions.
            if post.visibility != Visibility.DIRECT:
                db.add(Mention(post_id=post.id, account_id=acc.id))
    await db.execute(delete(PostTag).where(PostTag.post_id == post.id))
    await _attach_tags(db, post.id, tags)
    boosters = (await db.scalars(select(Post.account_id).where(Post.reblog_of_id == post.id))).all()
    for booster in set(boosters):
        # One "edited" notification per booster and post, always the latest edit's (the
        # unique key would otherwise keep the first one and drop every later edit's).
        await notifications.withdraw(
            db,
            recipient_id=booster,
            type=NotificationType.UPDATE,
            from_account_id=post.account_id,
            post_id=post.id,
        )
        await notifications.notify(
            db,
            recipient_id=booster,
            type=NotificationType.UPDATE,
            from_account_id=post.account_id,
            post_id=post.id,
        )
    await search.index_post(db, post)
    await outbound.post_edited(db, post)
    await db.commit()
    await _announce(db, "post.updated", post)
    return post


async def edit_history(db: AsyncSession, viewer: policy.Viewer, post_id: int) -> list[PostEdit]:
    """Versions of a post, oldest first (empty if never edited)."""
    post = await get_visible_post(db, viewer, post_id)
    return list(
        (
            await db.scalars(
                select(PostEdit).where(PostEdit.post_id == post.id).order_by(PostEdit.id)
            )
        ).all()
    )


async def delete_post(db: AsyncSession, viewer: policy.Viewer, post_id: int) -> Post:
    """Delete a post for real (with its boosts, likes, tags and notifications). Replies stay,
    detached. Returns the deleted post (for "delete and redraft")."""
    post = await get_visible_post(db, viewer, post_id)
    if not policy.can_delete_post(viewer, post):
        raise Forbidden("Only the author can delete this post.")
    if post.reblog_of_id is not None:
        raise ValidationFailed("Undo a boost instead of deleting it.", field="id")
    if post.in_reply_to_id is not None:
        await db.execute(
            update(Post)
            .where(Post.id == post.in_reply_to_id, Post.replies_count > 0)
            .values(replies_count=Post.replies_count - 1)
        )
    await outbound.post_deleting(db, post)
    await search.unindex_post(db, post)
    files = await media.forget_post_media(db, post.id)
    await db.execute(delete(Post).where(Post.id == post.id))
    await db.commit()
    await media.remove_files(db, files)
    await runtime_of(db).bus.publish(
        "posts", {"type": "post.deleted", "post_id": post.id, "account_id": post.account_id}
    )
    return post


async def like(db: AsyncSession, viewer: policy.Viewer, post_id: int) -> Post:
    """Like (favourite) a post the viewer can see; liking twice is one like."""
    post = await _interactable(db, viewer, post_id)
    assert viewer.account_id is not None
    if await db.get(Like, (viewer.account_id, post.id)) is None:
        db.add(Like(account_id=viewer.account_id, post_id=post.id))
        try:
            await db.flush()
        except IntegrityError:
            await db.rollback()
            return post
        await recount_interactions(db, post.id)
        await outbound.liked(db, viewer.account_id, post)
        await notifications.notify(
            db,
            recipient_id=post.account_id,
            type=NotificationType.LIKE,
            from_account_id=viewer.account_id,
            post_id=post.id,
        )
        await db.commit()
        await notifications.publish_notifications(db)
    return post


async def unlike(db: AsyncSession, viewer: policy.Viewer, post_id: int) -> Post:
    post = await get_visible_post(db, viewer, post_id)
    assert viewer.account_id is not None
    await outbound.unliking(db, viewer.account_id, post)
    await remove_like(db, viewer.account_id, post)
    await db.commit()
    return post


async def remove_like(db: AsyncSession, account_id: int, post: Post) -> None:
    """Take back `account_id`'s like of `post` (in the caller's transaction), here or from
    another server: the row, its notification, the counter."""
    await db.execute(delete(Like).where(Like.account_id == account_id, Like.post_id == post.id))
    await notifications.withdraw(
        db,
        recipient_id=post.account_id,
        type=NotificationType.LIKE,
        from_account_id=account_id,
        post_id=post.id,
    )
    await recount_interactions(db, post.id)


async def _interactable(db: AsyncSession, viewer: policy.Viewer, post_id: int) -> Post:
    post = await get_visible_post(db, viewer, post_id)
    if post.reblog_of_id is not None:
        post = await get_visible_post(db, viewer, post.reblog_of_id)
    if not await policy.can_interact(db, viewer, post):
        raise NotFound("This post does not exist or is not visible to you.")
    return post


async def recount_interactions(db: AsyncSession, post_id: int) -> None:
    """Recompute a post's like and boost counters from the rows (exact even under concurrent
    clicks, and whoever — here or another server — liked or boosted)."""
    likes = select(func.count()).select_from(Like).where(Like.post_id == post_id).scalar_subquery()
    boosts = (
        select(func.count()).select_from(Post).where(Post.reblog_of_id == post_id).scalar_subquery()
    )
    await db.execute(
        update(Post).where(Post.id == post_id).values(likes_count=likes, reblogs_count=boosts)
    )


async def boost(db: AsyncSession, viewer: policy.Viewer, post_id: int) -> Post:
    """Boost a public or unlisted post; returns the boost (a Post). Boosting twice is one boost."""
    post = await _interactable(db, viewer, post_id)
    assert viewer.account_id is not None
    if not policy.can_boost(viewer, post):
        raise ValidationFailed("Followers-only and direct posts can't be boosted.", field="id")
    existing = await db.scalar(
        select(Post).where(Post.account_id == viewer.account_id, Post.reblog_of_id == post.id)
    )
    if existing is not None:
        return existing
    settings = runtime_of(db).settings
    reblog = Post(
        id=new_id(),
        account_id=viewer.account_id,
        visibility=post.visibility,
        reblog_of_id=post.id,
        created_at=utcnow(),
    )
    reblog.uri = f"{settings.base_url}/boosts/{reblog.id}"
    db.add(reblog)
    try:
        await db.flush()
    except IntegrityError:  # a racing click boosted first: that boost stands
        await db.rollback()
        existing = await db.scalar(
            select(Post).where(Post.account_id == viewer.account_id, Post.reblog_of_id == post.id)
        )
        if existing is None:
            raise
        return existing
    await recount_interactions(db, post.id)
    await outbound.post_created(db, reblog)
    await notifications.notify(
        db,
        recipient_id=post.account_id,
        type=NotificationType.BOOST,
        from_account_id=viewer.account_id,
        post_id=post.id,
    )
    await db.commit()
    await _announce(db, "post.created", reblog)
    return reblog


async def unboost(db: AsyncSession, viewer: policy.Viewer, post_id: int) -> None:
    assert viewer.account_id is not None
    original = await db.get(Post, post_id)
    if original is not None and original.reblog_of_id is not None:
        original = await db.get(Post, original.reblog_of_id)
    if original is None:
        raise NotFound()
    reblog = await db.scalar(
        select(Post).where(Post.account_id == viewer.account_id, Post.reblog_of_id == original.id)
    )
    if reblog is None:
        return
    await outbound.post_deleting(db, reblog)
    await db.execute(delete(Post).where(Post.id == reblog.id))
    await notifications.withdraw(
        db,
        recipient_id=original.account_id,
        type=NotificationType.BOOST,
        from_account_id=viewer.account_id,
        post_id=original.id,
    )
    await recount_interactions(db, original.id)
    await db.commit()
    await runtime_of(db).bus.publish(
        "posts", {"type": "post.deleted", "post_id": reblog.id, "account_id": reblog.account_id}
    )


async def bookmark(db: AsyncSession, viewer: policy.Viewer, post_id: int, on: bool = True) -> Post:
    """Bookmark (or un-bookmark) a visible post; private to the viewer."""
    post = await _interactable(db, viewer, post_id)
    assert viewer.account_id is not None
    have = await db.get(Bookmark, (viewer.account_id, post.id))
    if on and have is None:
        db.add(Bookmark(account_id=viewer.account_id, post_id=post.id))
    elif not on and have is not None:
        await db.delete(have)
    try:
        await db.commit()
    except IntegrityError:
        await db.rollback()
    return post


async def pin(db: AsyncSession, viewer: policy.Viewer, post_id: int, on: bool = True) -> Post:
    """Pin one's own public/unlisted/followers-only post to one's profile (at most 5)."""
    post = await get_visible_post(db, viewer, post_id)
    if not policy.can_edit_post(viewer, post) or post.reblog_of_id is not None:
        raise Forbidden("You can only pin your own posts.")
    if on and post.visibility == Visibility.DIRECT:
        raise ValidationFailed("Direct posts can't be pinned.", field="id")
    have = await db.get(Pin, (post.account_id, post.id))
    if on and have is None:
        count = await db.scalar(
            select(func.count()).select_from(Pin).where(Pin.account_id == post.account_id)
        )
        if (count or 0) >= MAX_PINS:
            raise ValidationFailed(f"You can pin at most {MAX_PINS} posts.", field="id")
        db.add(Pin(account_id=post.account_id, post_id=post.id))
    elif not on and have is not None:
        await db.delete(have)
    try:
        await db.commit()
    except IntegrityError:
        await db.rollback()
    return post


async def vote(db: AsyncSession, viewer: policy.Viewer, post_id: int, choices: list[int]) -> Poll:
    """Vote in a poll once; single-choice polls take one choice."""
    post = await _interactable(db, viewer, post_id)
    assert viewer.account_id is not None
    poll = await db.get(Poll, post.id)
    if poll is None:
        raise NotFound("This post has no poll.")
    if poll.expires_at <= utcnow():
        raise ValidationFailed("This poll has ended.", field="choices")
    if post.account_id == viewer.account_id:
        raise ValidationFailed("You can't vote in your own poll.", field="choices")
    picked = sorted(set(choices))
    if not picked or any(c < 0 or c >= len(poll.options) for c in picked):
        raise ValidationFailed("Pick one of the poll's options.", field="choices")
    if not poll.multiple and len(picked) > 1:
        raise ValidationFailed("This poll takes one choice.", field="choices")
    if await db.scalar(
        select(PollVote.id).where(
            PollVote.post_id == post.id, PollVote.account_id == viewer.account_id
        )
    ):
        raise ValidationFailed("You have already voted.", field="choices")
    for c in picked:
        db.add(PollVote(post_id=post.id, account_id=viewer.account_id, choice=c))
    try:
        await db.flush()
    except IntegrityError:
        await db.rollback()
        raise ValidationFailed("You have already voted.", field="choices") from None
    author = await db.get(Account, post.account_id)
    if author is not None and not author.is_local:
        # A remote poll: its server counts; the vote goes there (federation builds on posts).
        from kith.federation import polls as federated_polls

        await federated_polls.vote_cast(db, viewer.account_id, post, poll, picked)
        await db.commit()
        return poll
    poll.votes_count = int(
        await db.scalar(
            select(func.count()).select_from(PollVote).where(PollVote.post_id == post.id)
        )
        or 0
    )
    poll.voters_count = int(
        await db.scalar(
            select(func.count(func.distinct(PollVote.account_id))).where(
                PollVote.post_id == post.id
            )
        )
        or 0
    )
    await db.commit()
    return poll


async def poll_results(db: AsyncSession, post_id: int) -> list[int]:
    """Votes per option, in option order."""
    poll = await db.get(Poll, post_id)
    if poll is None:
        return []
    rows = await db.execute(
        select(PollVote.choice, func.count())
        .where(PollVote.post_id == post_id)
        .group_by(PollVote.choice)
    )
    counts = dict(rows.all())
    return [int(counts.get(i, 0)) for i in range(len(poll.options))]


async def my_votes(db: AsyncSession, viewer: policy.Viewer, post_id: int) -> list[int]:
    if viewer.account_id is None:
        return []
    return list(
        (
            await db.scalars(
                select(PollVote.choice).where(
                    PollVote.post_id == post_id, PollVote.account_id == viewer.account_id
                )
            )
        ).all()
    )


@job_handler("poll.ended")
async def notify_poll_ended(db: AsyncSession, payload: dict[str, object]) -> None:
    """When a poll ends, notify its author and everyone who voted — once, even if re-run."""
    post_id = int(str(payload["post_id"]))
    poll = await db.get(Poll, post_id)
    post = await db.get(Post, post_id)
    if poll is None or post is None or poll.ended_notified_at is not None:
        return
    if poll.expires_at > utcnow():  # the poll was extended by an edit: try again later
        await enqueue(db, "poll.ended", {"post_id": post_id}, run_at=poll.expires_at)
        return
    voters = set(
        (await db.scalars(select(PollVote.account_id).where(PollVote.post_id == post_id))).all()
    )
    for account_id in voters - {post.account_id}:
        await notifications.notify(
            db,
            recipient_id=account_id,
            type=NotificationType.POLL,
            from_account_id=post.account_id,
            post_id=post_id,
        )
    await _notify_self_poll(db, post)
    poll.ended_notified_at = utcnow()
    # The final results go to the servers that received the poll (federation builds on posts).
    from kith.federation import polls as federated_polls

    await federated_polls.poll_ended(db, post)


async def _notify_self_poll(db: AsyncSession, post: Post) -> None:
    """The author's own "your poll has ended" (policy.should_notify skips self-notifications)."""
    insert_id = new_id()
    exists = await db.scalar(
        select(Notification.id).where(
            Notification.account_id == post.account_id,
            Notification.type == str(NotificationType.POLL),
            Notification.post_id == post.id,
        )
    )
    if exists is None:
        db.add(
            Notification(
                id=insert_id,
                account_id=post.account_id,
                type=str(NotificationType.POLL),
                from_account_id=post.account_id,
                post_id=post.id,
            )
        )
        db.info.setdefault("new_notifications", []).append((post.account_id, insert_id))


async def likers(
    db: AsyncSession, viewer: policy.Viewer, post_id: int, *, limit: int = 40
) -> list[Account]:
    """Who liked a post the viewer may see, newest first (not people either side blocks)."""
    post = await get_visible_post(db, viewer, post_id)
    stmt = select(Account).join(Like, Like.account_id == Account.id).where(Like.post_id == post.id)
    return await _people(db, viewer, stmt.order_by(Like.id.desc()), limit)


async def boosters(
    db: AsyncSession, viewer: policy.Viewer, post_id: int, *, limit: int = 40
) -> list[Account]:
    """Who boosted a post the viewer may see, newest first (not people either side blocks)."""
    post = await get_visible_post(db, viewer, post_id)
    stmt = (
        select(Account)
        .join(Post, Post.account_id == Account.id)
        .where(Post.reblog_of_id == post.id)
    )
    return await _people(db, viewer, stmt.order_by(Post.id.desc()), limit)


async def _people(
    db: AsyncSession, viewer: policy.Viewer, stmt: Select[Account], limit: int
) -> list[Account]:
    """Run an ordered accounts query, leaving out suspended accounts and blocks either way."""
    stmt = stmt.where(Account.suspended_at.is_(None)).limit(limit)
    if viewer.account_id is not None:
        stmt = stmt.where(~policy.blocked_between_clause(viewer.account_id, Account.id))
    return list((await db.scalars(stmt)).all())
