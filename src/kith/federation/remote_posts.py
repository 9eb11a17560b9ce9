"""Remote posts: turn a Note or Question from another server into a stored post, edit it,
delete it, and fetch the ones a thread or a boost needs.

Rules that hold for every remote post:
- its HTML is always sanitized (`text.sanitize_remote_html`), whatever the server sent;
- its `uri` is the object's id, and that id is never taken over by another actor: a Create
  whose id is already stored for someone else is refused, one stored for the same actor is
  a repeat and changes nothing (not even its audience); an Update never changes the audience
  (visibility, mentions) of a stored post;
- a Delete that comes before its Create leaves a `Tombstone`, and a tombstoned id is never
  stored again;
- the audience comes from `to`/`cc`: the public collection (also written `as:Public` or
  `Public`) in `to` is public, in `cc` unlisted; the author's followers collection alone is
  followers-only; anything else is direct, seen by the local accounts it names.

Jobs fetch everything first (`fetch_thread`, `fetch_object`) and write afterwards, so a slow
server never holds a write transaction open."""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kith import text
from kith.accounts.models import Account
from kith.communities import posting as community_posting
from kith.db import new_id, utcnow
from kith.emojis import remote as remote_emojis
from kith.emojis.activitypub import EmojiTag, parse_emoji_tags
from kith.federation.actors import ActorFetchFailed, fetch_json
from kith.federation.local_objects import account_by_uri, is_local, post_by_uri
from kith.federation.models import RemoteActor, Tombstone
from kith.federation.origin import first_id, id_of, ids_of, origin_of, type_of
from kith.federation.remote_accounts import fetch_actor_document, store_document
from kith.graph.models import Follow
from kith.media import remote as remote_media
from kith.media import service as media
from kith.media.models import MediaAttachment, MediaState, MediaType
from kith.notifications import service as notifications
from kith.notifications.models import NotificationType
from kith.posts import service as posts_service
from kith.posts.models import Mention, Poll, Post, PostEdit, PostTag, Visibility
from kith.posts.service import ids_of_tags
from kith.search import service as search

log = logging.getLogger(__name__)

# Objects stored as posts. Pages and Articles (Lemmy posts, blogs) and Videos (PeerTube) are
# "converted" as Mastodon does: their title and a link to them, with the text of a Page or
# Article below the title (a Video's description is Markdown meant for its own page).
CONVERTED_TYPES = frozenset({"Page", "Article", "Video"})
NOTE_TYPES = frozenset({"Note", "Question"}) | CONVERTED_TYPES
PUBLIC_IDS = frozenset({"https://www.w3.org/ns/activitystreams#Public", "as:Public", "Public"})
# How many missing ancestors of a reply (or boosted originals) one activity may fetch.
MAX_FETCH_DEPTH = 5
MAX_ATTACHMENTS = 4
MAX_CONTENT_CHARS = 100_000
MAX_SPOILER = 500
MAX_TAGS = 30
MAX_POLL_OPTIONS = 20


class Refused(Exception):
    """The activity asks for something its actor may not do (the outcome says what)."""


# --- reading a Note --------------------------------------------------------------------------


def as_list(value: Any) -> list[Any]:
    """A value that may be one item or a list, as a list (ActivityStreams allows both)."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def audience(obj: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The ids in `to` and in `cc` (references may be strings or embedded objects)."""
    return (
        [i for i in (id_of(v) for v in as_list(obj.get("to"))) if i],
        [i for i in (id_of(v) for v in as_list(obj.get("cc"))) if i],
    )


def visibility_of(obj: dict[str, Any], followers_url: str | None) -> Visibility:
    """The audience Kith gives an object addressed this way (see the module docstring)."""
    to, cc = audience(obj)
    if any(i in PUBLIC_IDS for i in to):
        return Visibility.PUBLIC
    if any(i in PUBLIC_IDS for i in cc):
        return Visibility.UNLISTED
    if followers_url and followers_url in to + cc:
        return Visibility.PRIVATE
    return Visibility.DIRECT


def _text_of(obj: dict[str, Any], key: str) -> tuple[str, str | None]:
    """A natural-language property (`content`, `summary`) and its language, from the plain
    value or the first entry of its `…Map`."""
    value = obj.get(key)
    mapped = obj.get(f"{key}Map")
    language: str | None = None
    if isinstance(mapped, dict):
        for lang, text_value in mapped.items():
            if isinstance(lang, str) and isinstance(text_value, str):
                language = lang[:16] if 1 < len(lang) <= 16 else None
                if not isinstance(value, str):
                    value = text_value
                break
    return (value if isinstance(value, str) else ""), language


def _plain_paragraphs(value: str) -> str:
    return "".join(f"<p>{html.escape(part)}</p>" for part in value.split("\n\n") if part.strip())


def _page_url(obj: dict[str, Any]) -> str:
    """Where a converted object is read: its `url` (the text/html one when it lists several
    Links, as PeerTube does), else its id."""
    urls = as_list(obj.get("url"))
    for item in urls:
        if isinstance(item, dict) and str(item.get("mediaType", "")).startswith("text/html"):
            href = item.get("href")
            if isinstance(href, str) and origin_of(href):
                return href
    first = _media_url(urls)
    return first if first is not None else str(obj.get("id", ""))


def _converted(obj: dict[str, Any], content: str) -> str:
    """The HTML a Page, Article or Video is shown as: its title, the text of a Page or
    Article, and a link to it (sanitized later with the rest)."""
    title, _ = _text_of(obj, "name")
    link = html.escape(_page_url(obj)[:1024], quote=True)
    body = content if type_of(obj) != "Video" else ""
    head = f"<p><strong>{html.escape(title[:500])}</strong></p>" if title.strip() else ""
    return f'{head}{body}<p><a href="{link}">{link}</a></p>'


def _media_url(value: Any) -> str | None:
    for item in as_list(value):
        url = (
            item
            if isinstance(item, str)
            else (item.get("href") if isinstance(item, dict) else None)
        )
        if isinstance(url, str) and origin_of(url) and len(url) <= 1024:
            return url
    return None


def _int_or_none(value: Any) -> int | None:
    return (
        value
        if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 100_000
        else None
    )


@dataclass
class RemoteMedia:
    """An attachment as the remote server describes it (the file stays there for now)."""

    url: str
    type: str
    description: str
    blurhash: str | None
    width: int | None
    height: int | None


@dataclass
class RemotePoll:
    options: list[str]
    multiple: bool
    expires_at: datetime | None
    votes_count: int
    voters_count: int
    counts: list[int] = field(default_factory=list)  # per option (`replies.totalItems`)


@dataclass
class NoteFields:
    """What Kith keeps of a Note / Question."""

    content_html: str
    spoiler_text: str
    sensitive: bool
    language: str | None
    in_reply_to: str | None
    mentions: list[str] = field(default_factory=list)  # actor ids
    hashtags: list[str] = field(default_factory=list)  # normalized names
    attachments: list[RemoteMedia] = field(default_factory=list)
    poll: RemotePoll | None = None
    published: datetime | None = None
    updated: datetime | None = None
    emojis: list[EmojiTag] = field(default_factory=list)  # its `Emoji` tags


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _attachments(obj: dict[str, Any]) -> list[RemoteMedia]:
    found: list[RemoteMedia] = []
    for item in as_list(obj.get("attachment")):
        if not isinstance(item, dict):
            continue
        url = _media_url(item.get("url"))
        media_type = item.get("mediaType") if isinstance(item.get("mediaType"), str) else ""
        if url is None:
            continue
        kind = media_type.split("/", 1)[0] if media_type else type_of(item).lower()
        kind = {"image": MediaType.IMAGE, "video": MediaType.VIDEO, "audio": MediaType.AUDIO}.get(
            kind, MediaType.IMAGE
        )
        name = item.get("name")
        blurhash = item.get("blurhash")
        found.append(
            RemoteMedia(
                url=url,
                type=str(kind),
                description=text.html_to_text(name)[:1500] if isinstance(name, str) else "",
                blurhash=blurhash[:100] if isinstance(blurhash, str) else None,
                width=_int_or_none(item.get("width")),
                height=_int_or_none(item.get("height")),
            )
        )
        if len(found) == MAX_ATTACHMENTS:
            break
    return found


def _poll(obj: dict[str, Any]) -> RemotePoll | None:
    if type_of(obj) != "Question":
        return None
    multiple = "anyOf" in obj
    options: list[str] = []
    counts: list[int] = []
    for choice in as_list(obj.get("anyOf") if multiple else obj.get("oneOf")):
        if not isinstance(choice, dict) or not isinstance(choice.get("name"), str):
            continue
        if len(options) == MAX_POLL_OPTIONS:
            break
        options.append(text.html_to_text(choice["name"])[:100])
        replies = choice.get("replies")
        total = replies.get("totalItems") if isinstance(replies, dict) else None
        counts.append(_int_or_none(total) or 0)
    if len(options) < 2:
        return None
    votes = sum(counts)
    voters = _int_or_none(obj.get("votersCount"))
    return RemotePoll(
        options=options,
        multiple=multiple,
        expires_at=_when(obj.get("endTime")) or _when(obj.get("closed")),
        votes_count=votes,
        voters_count=voters if voters is not None else votes,
        counts=counts,
    )


def parse_note(obj: dict[str, Any]) -> NoteFields:
    """The fields of a Note / Question, sanitized and bounded; tolerant of the shapes other
    servers send (single values or lists, `contentMap`, missing optional fields)."""
    content, language = _text_of(obj, "content")
    if not content.strip() and isinstance(obj.get("_misskey_content"), str):
        # Misskey's MFM source, sent beside (rarely instead of) the HTML: shown as plain text.
        content = _plain_paragraphs(obj["_misskey_content"])
    if type_of(obj) in CONVERTED_TYPES:
        content = _converted(obj, content)
    summary, _ = _text_of(obj, "summary")
    mentions: list[str] = []
    hashtags: list[str] = []
    for tag in as_list(obj.get("tag")):
        if not isinstance(tag, dict):
            continue
        if type_of(tag) == "Mention" and isinstance(tag.get("href"), str):
            mentions.append(tag["href"])
        elif type_of(tag) == "Hashtag" and isinstance(tag.get("name"), str):
            name = text.normalize_hashtag(tag["name"].lstrip("#"))
            if name and name not in hashtags and len(hashtags) < MAX_TAGS:
                hashtags.append(name)
    spoiler = text.html_to_text(summary)[:MAX_SPOILER] if summary else ""
    return NoteFields(
        content_html=text.sanitize_remote_html(content[:MAX_CONTENT_CHARS]),
        spoiler_text=spoiler,
        sensitive=obj.get("sensitive") is True or bool(spoiler),
        language=language,
        in_reply_to=first_id(obj.get("inReplyTo")),
        mentions=list(dict.fromkeys(mentions)),
        hashtags=hashtags,
        attachments=_attachments(obj),
        poll=_poll(obj),
        published=_when(obj.get("published")),
        updated=_when(obj.get("updated")),
        emojis=parse_emoji_tags(obj.get("tag")),
    )


def author_of(obj: dict[str, Any]) -> str | None:
    """The actor a Note is attributed to (the first, when there are several)."""
    authors = ids_of(obj.get("attributedTo"))
    return authors[0] if authors else None


# --- fetching (network only, nothing written) ------------------------------------------------


@dataclass
class Fetched:
    """Documents fetched for one activity, stored afterwards in one go: actor documents to
    store (by id) and objects (oldest ancestor first)."""

    actors: dict[str, dict[str, Any]] = field(default_factory=dict)
    objects: list[dict[str, Any]] = field(default_factory=list)


async def is_tombstoned(db: AsyncSession, uri: str) -> bool:
    return bool(await db.scalar(select(exists().where(Tombstone.uri == uri))))


async def fetch_object(db: AsyncSession, uri: str, into: Fetched) -> dict[str, Any] | None:
    """Fetch the Note / Question `uri` and its author's document (unless known), checking that
    it is a post of an actor on its own host. None (and a log line) when it can't be had."""
    if is_local(db, uri) or await is_tombstoned(db, uri):
        return None
    try:
        _, doc = await fetch_json(db, uri)
        if type_of(doc) not in NOTE_TYPES:
            raise ActorFetchFailed(f"{uri[:200]} is not a Note")
        author = author_of(doc)
        if author is None or origin_of(author) != origin_of(doc["id"]):
            raise ActorFetchFailed(f"{uri[:200]} is attributed to nobody on its host")
        if author not in into.actors:
            actor_doc = await fetch_actor_document(db, author)
            if actor_doc is not None:
                into.actors[author] = actor_doc
    except ActorFetchFailed as exc:
        log.info("federation: could not fetch %s: %s", uri[:200], exc)
        return None
    return doc


async def fetch_thread(db: AsyncSession, obj: dict[str, Any], into: Fetched) -> None:
    """Fetch the ancestors of `obj` that are not stored yet, at most MAX_FETCH_DEPTH of them,
    into `into.objects` (oldest first)."""
    chain: list[dict[str, Any]] = []
    parent = first_id(obj.get("inReplyTo"))
    seen = {obj.get("id")}
    while parent and parent not in seen and len(into.objects) + len(chain) < MAX_FETCH_DEPTH:
        seen.add(parent)
        if await post_by_uri(db, parent) is not None:
            break
        doc = await fetch_object(db, parent, into)
        if doc is None:
            break
        chain.append(doc)
        parent = first_id(doc.get("inReplyTo"))
    into.objects[:0] = reversed(chain)


async def store_fetched(db: AsyncSession, fetched: Fetched) -> None:
    """Write what `fetch_thread` / `fetch_object` brought: actors, then posts oldest first."""
    for doc in fetched.actors.values():
        try:
            await store_document(db, doc)
        except ActorFetchFailed as exc:
            log.info("federation: not storing actor %s: %s", str(doc.get("id"))[:200], exc)
    for doc in fetched.objects:
        author = await account_by_uri(db, author_of(doc) or "")
        if author is None or author.is_local:
            continue
        try:
            await store_note(db, author, doc, wanted=True)
        except Refused as exc:
            log.info("federation: not storing fetched %s: %s", str(doc.get("id"))[:200], exc)


# --- storing ---------------------------------------------------------------------------------


async def _followers_url(db: AsyncSession, author: Account) -> str | None:
    return await db.scalar(
        select(RemoteActor.followers_url).where(RemoteActor.account_id == author.id)
    )


async def _accounts(db: AsyncSession, uris: list[str]) -> list[Account]:
    found: dict[int, Account] = {}
    for uri in uris[:50]:
        account = await account_by_uri(db, uri)
        if account is not None and account.suspended_at is None:
            found.setdefault(account.id, account)
    return list(found.values())


async def is_followed_here(db: AsyncSession, account_id: int) -> bool:
    """Someone on this instance follows the account."""
    return bool(
        await db.scalar(
            select(
                exists()
                .where(Follow.followee_id == account_id)
                .where(exists().where(Account.id == Follow.follower_id, Account.domain == ""))
            )
        )
    )


def _existing_refusal(post: Post, author: Account) -> None:
    if post.account_id != author.id or post.reblog_of_id is not None:
        raise Refused("the object id is already used by another post")


async def store_note(
    db: AsyncSession,
    author: Account,
    obj: dict[str, Any],
    *,
    wanted: bool = False,
    communities: community_posting.Addressed | None = None,
) -> Post | None:
    """Store a remote post (not committed). Returns the post, the stored one when the id is
    known already (unchanged), or None when it is not wanted here: tombstoned, or — unless
    `wanted` (a thread or boost needs it) — addressed to nobody here and by an account nobody
    here follows. Raises Refused when the id belongs to another actor's post. `communities`
    (checked by `communities.posting.addressed`) are where it goes, attached before anyone
    is notified, as for a local post."""
    uri = obj["id"]
    existing = await db.scalar(select(Post).where(Post.uri == uri))
    if existing is not None:
        _existing_refusal(existing, author)
        return existing
    if await is_tombstoned(db, uri):
        return None
    note = parse_note(obj)
    to, cc = audience(obj)
    named = await _accounts(db, note.mentions + to + cc)
    local_named = [a for a in named if a.is_local]
    parent = await post_by_uri(db, note.in_reply_to) if note.in_reply_to else None
    if parent is not None and parent.reblog_of_id is not None:
        parent = None
    if not wanted and not await wanted_here(db, author, obj):
        return None
    visibility = visibility_of(obj, await _followers_url(db, author))
    now = utcnow()
    post = Post(
        id=new_id(),
        account_id=author.id,
        visibility=visibility,
        content_html=note.content_html,
        spoiler_text=note.spoiler_text,
        sensitive=note.sensitive,
        language=note.language,
        in_reply_to_id=parent.id if parent else None,
        in_reply_to_account_id=parent.account_id if parent else None,
        thread_root_id=(parent.thread_root_id or parent.id) if parent else None,
        created_at=min(note.published, now) if note.published else now,
        uri=uri[:512],
    )
    tag_ids = await ids_of_tags(db, note.hashtags)
    db.add(post)
    await db.flush()
    if communities is not None:
        await community_posting.attach(db, post, communities)
    # Everyone named gets a Mention row (that is what lets the local ones see a direct or
    # followers-only post); only accounts already known are linked, nothing is fetched.
    db.add_all(Mention(post_id=post.id, account_id=a.id) for a in named if a.id != author.id)
    db.add_all(PostTag(tag_id=tag_id, post_id=post.id) for tag_id in tag_ids.values())
    # Attachments wait as "processing" (a placeholder and their remote_url) until the media
    # cache has fetched and cleaned them (kith.media.remote).
    remote_files = [
        MediaAttachment(
            account_id=author.id,
            post_id=post.id,
            type=m.type,
            state=MediaState.PROCESSING,
            remote_url=m.url,
            description=m.description,
            blurhash=m.blurhash,
            width=m.width,
            height=m.height,
            position=i,
        )
        for i, m in enumerate(note.attachments)
    ]
    db.add_all(remote_files)
    if note.poll is not None:
        db.add(
            Poll(
                post_id=post.id,
                options=note.poll.options,
                multiple=note.poll.multiple,
                expires_at=note.poll.expires_at or now,
                votes_count=note.poll.votes_count,
                voters_count=note.poll.voters_count,
                remote_counts=note.poll.counts,
            )
        )
    await db.flush()
    await remote_media.enqueue_fetch(
        db, [m.id for m in remote_files if remote_media.needs_fetch(m)]
    )
    await remote_emojis.remember(db, author.domain, note.emojis)
    await posts_service.link_new_post(
        db, post, parent=parent, mentioned_ids=[a.id for a in local_named]
    )
    posts_service.announce_after_commit(db, post)  # live timelines and streaming
    return post


async def wanted_here(db: AsyncSession, author: Account, obj: dict[str, Any]) -> bool:
    """Whether a post concerns someone here: it names a local account (mention, `to`, `cc`),
    replies to a local post, or its author is followed from here. Nothing else is stored, so
    a stranger cannot fill the database by addressing posts to nobody."""
    note = parse_note(obj)
    to, cc = audience(obj)
    for uri in (note.mentions + to + cc)[:50]:
        if is_local(db, uri) and await account_by_uri(db, uri) is not None:
            return True
    if note.in_reply_to and is_local(db, note.in_reply_to):
        if await post_by_uri(db, note.in_reply_to) is not None:
            return True
    return await is_followed_here(db, author.id)


async def update_note(db: AsyncSession, author: Account, obj: dict[str, Any]) -> str:
    """Apply an Update of a stored remote post: text, content warning, sensitivity, language,
    hashtags, alt texts and poll counts change, with the earlier version in the edit history.
    The audience never changes. Returns the outcome."""
    post = await db.scalar(select(Post).where(Post.uri == obj["id"]))
    if post is None:
        return "ignored: not stored here"
    _existing_refusal(post, author)
    note = parse_note(obj)
    stale = (
        note.updated is not None and post.edited_at is not None and note.updated <= post.edited_at
    )
    changed = (note.content_html, note.spoiler_text, note.sensitive) != (
        post.content_html,
        post.spoiler_text,
        post.sensitive,
    )
    await _update_poll(db, post, note)
    await _describe_media(db, post, note)
    await remote_emojis.remember(db, author.domain, note.emojis)
    if stale or not changed:
        return "updated (no new text)"
    if post.edited_at is None:
        db.add(
            PostEdit(
                post_id=post.id,
                source="",
                content_html=post.content_html,
                spoiler_text=post.spoiler_text,
                sensitive=post.sensitive,
                created_at=post.created_at,
            )
        )
    now = utcnow()
    post.content_html = note.content_html
    post.spoiler_text = note.spoiler_text
    post.sensitive = note.sensitive
    post.language = note.language or post.language
    post.edited_at = min(note.updated, now) if note.updated else now
    db.add(
        PostEdit(
            post_id=post.id,
            source="",
            content_html=post.content_html,
            spoiler_text=post.spoiler_text,
            sensitive=post.sensitive,
            created_at=post.edited_at,
        )
    )
    await db.execute(delete(PostTag).where(PostTag.post_id == post.id))
    tag_ids = await ids_of_tags(db, note.hashtags)
    db.add_all(PostTag(tag_id=tag_id, post_id=post.id) for tag_id in tag_ids.values())
    boosters = await db.scalars(
        select(Post.account_id).where(Post.reblog_of_id == post.id).distinct()
    )
    for booster in boosters.all():
        await notifications.withdraw(
            db,
            recipient_id=booster,
            type=NotificationType.UPDATE,
            from_account_id=author.id,
            post_id=post.id,
        )
        await notifications.notify(
            db,
            recipient_id=booster,
            type=NotificationType.UPDATE,
            from_account_id=author.id,
            post_id=post.id,
        )
    await db.flush()
    await search.index_post(db, post)
    return "updated"


async def _update_poll(db: AsyncSession, post: Post, note: NoteFields) -> None:
    poll = await db.get(Poll, post.id)
    if poll is None or note.poll is None:
        return
    # The options themselves never change through an Update (votes were cast for them); only
    # the counts do, and only when the Update still lists the same options.
    if note.poll.options == list(poll.options):
        poll.remote_counts = note.poll.counts
    poll.votes_count = note.poll.votes_count
    poll.voters_count = note.poll.voters_count
    if note.poll.expires_at is not None:
        poll.expires_at = note.poll.expires_at


async def _describe_media(db: AsyncSession, post: Post, note: NoteFields) -> None:
    described = {m.url: m.description for m in note.attachments}
    for row in await media.for_post(db, post.id):
        if row.remote_url in described:
            row.description = described[row.remote_url]


async def remember_deletion(db: AsyncSession, uri: str, actor_uri: str) -> None:
    """Record that `uri` was deleted (once), so a late or replayed Create is ignored."""
    if not await is_tombstoned(db, uri):
        db.add(Tombstone(uri=uri[:1024], actor_uri=actor_uri[:1024]))
        await db.flush()


async def remove_post(db: AsyncSession, post: Post) -> None:
    """Delete a stored remote post (or boost) with what hangs on it, in the caller's
    transaction: index entry, attachment rows, the parent's reply count, the original's
    boost count."""
    if post.in_reply_to_id is not None:
        await db.execute(
            update(Post)
            .where(Post.id == post.in_reply_to_id, Post.replies_count > 0)
            .values(replies_count=Post.replies_count - 1)
        )
    await search.unindex_post(db, post)
    await media.forget_post_media(db, post.id)
    await db.execute(delete(Post).where(Post.id == post.id))
    if post.reblog_of_id is not None:
        await posts_service.recount_interactions(db, post.reblog_of_id)


async def delete_note(db: AsyncSession, author: Account, uri: str) -> str:
    """Delete the remote post `uri` of `author`; a post not stored (yet) leaves a tombstone.
    Raises Refused when the post is someone else's."""
    post = await db.scalar(select(Post).where(Post.uri == uri))
    if post is not None and post.account_id != author.id:
        raise Refused("Delete of another actor's post")
    await remember_deletion(db, uri, author.uri or "")
    if post is None:
        return "tombstoned (not stored)"
    await remove_post(db, post)
    return "deleted"
