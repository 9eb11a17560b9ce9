"""Search accounts, hashtags and posts, and keep the full-text index of posts up to date.

Posts are indexed as plain text (content and content warning) by explicit calls from
`kith.posts.service` — no ORM events. SQLite keeps the text in the FTS5 table `posts_fts`
(rowid = post id); PostgreSQL keeps a `tsvector` in the `posts.search_document` column with a
GIN index. Both are created by migration 0002. Which posts a viewer finds is decided by
`kith.policy` alone.

Queries are never passed to the database's query language as typed: they are split into words
and "quoted phrases", every term is quoted, and the result is the posts that contain all terms.
FTS5 operators (NEAR, *, ^, OR, parentheses) and websearch syntax are therefore plain words.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    Table,
    Text,
    and_,
    bindparam,
    case,
    cast,
    column,
    delete,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    table,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert

from kith import policy, text
from kith.accounts.models import Account
from kith.db_plans import Plan, Step, column_binds, run_plan
from kith.posts.models import Post, PostTag, Tag
from kith.runtime import runtime_of

MAX_QUERY = 200
MAX_TERMS = 8
MAX_TERM = 100
DEFAULT_LIMIT = 20
TYPES = ("accounts", "hashtags", "posts")

# The index, as Core tables: neither is part of the ORM models (they differ per database).
_posts_fts = table("posts_fts", column("rowid"), column("body"))
_posts_pg = table("posts", column("id"), column("search_document"))

# Typed, because a bare parameter leaves PostgreSQL to pick among to_tsvector's overloads.
_SIMPLE: ColumnElement[Any] = literal_column("'simple'::regconfig")

_TERM_RE = re.compile(r'"([^"]*)"?|([^\s"]+)')


@dataclass
class SearchResults:
    """What one search found, per kind (kinds not asked for stay empty)."""

    query: str
    accounts: list[Account] = field(default_factory=list)
    hashtags: list[Tag] = field(default_factory=list)
    posts: list[Post] = field(default_factory=list)


def clean_query(q: str) -> str:
    """The query without control characters (PostgreSQL refuses NUL), trimmed and bounded."""
    kept = "".join(" " if unicodedata.category(c) == "Cc" else c for c in q)
    return " ".join(kept.split())[:MAX_QUERY]


def query_terms(q: str) -> list[str]:
    """Words and "quoted phrases" of a query, without any operator meaning. Terms without a
    letter or digit ("*", "(", "-") match nothing in either index, so they are dropped."""
    terms: list[str] = []
    for m in _TERM_RE.finditer(clean_query(q)):
        term = " ".join((m.group(1) if m.group(1) is not None else m.group(2) or "").split())
        if re.search(r"\w", term):
            terms.append(term[:MAX_TERM])
    return terms[:MAX_TERMS]


def _quoted(terms: list[str]) -> str:
    """Terms as a conjunction of phrases, the one syntax both FTS5 MATCH and PostgreSQL's
    websearch_to_tsquery read the same way. Terms never contain a double quote."""
    return " ".join(f'"{t}"' for t in terms)


def document_text(content_html: str, spoiler_text: str) -> str:
    """The text a post is found by: its content as plain text and its content warning."""
    return "\n".join(p for p in (text.html_to_text(content_html), spoiler_text) if p)


def post_document(post: Post) -> str:
    """The indexed text of this post (see `document_text`)."""
    return document_text(post.content_html, post.spoiler_text)


def _dialect(db: AsyncSession) -> str:
    return db.get_bind().dialect.name


async def index_post(db: AsyncSession, post: Post, *, new: bool = False) -> None:
    """(Re)index a post in the caller's transaction; call after it is flushed (`new`: it was
    never indexed, so there is nothing to replace). Boosts carry no text of their own and are
    not indexed."""
    if post.reblog_of_id is None:
        await run_plan(db, index_post_plan(_dialect(db), post.id, post_document(post), new=new))


def insert_post_indexed(posts: Table) -> Insert:
    """For PostgreSQL: an INSERT of every column of `posts` (binds named after them) that
    also writes the post's search document from a `body` value (`post_document`), so a new
    post's row is written once, not inserted then updated (`index_post_plan`). SQLite's index
    is a table of its own."""
    with_document = table(
        "posts", *(column(c.key, c.type) for c in posts.columns), column("search_document")
    )
    return insert(with_document).values(
        column_binds(posts)
        | {"search_document": func.to_tsvector(_SIMPLE, cast(bindparam("body"), Text))}
    )


def index_post_plan(dialect_name: str, post_id: int, body: str, *, new: bool) -> Plan[None]:
    """`index_post` as a plan (`kith.db_plans`): the text `body` (`post_document`)."""
    if dialect_name == "postgresql":
        yield Step(_INDEX_PG, {"post_id": post_id, "body": body})
        return
    if not new:
        yield Step(_UNINDEX_SQLITE, {"id": post_id})
    yield Step(_INDEX_SQLITE, {"id": post_id, "body": body})


_INDEX_PG = (
    update(_posts_pg)
    .where(_posts_pg.c.id == bindparam("post_id", type_=BigInteger()))  # (not a column's name)
    .values(search_document=func.to_tsvector(_SIMPLE, cast(bindparam("body"), Text)))
)
_UNINDEX_SQLITE = delete(_posts_fts).where(_posts_fts.c.rowid == bindparam("id"))
_INDEX_SQLITE = insert(_posts_fts).values(rowid=bindparam("id"), body=bindparam("body"))


async def unindex_post(db: AsyncSession, post: Post) -> None:
    """Forget a post's text in the caller's transaction (before deleting it, so no copy of
    its words stays behind in the SQLite index)."""
    if _dialect(db) == "postgresql":
        await db.execute(
            update(_posts_pg).where(_posts_pg.c.id == post.id).values(search_document=None)
        )
        return
    await db.execute(delete(_posts_fts).where(_posts_fts.c.rowid == post.id))


def _match_clause(db: AsyncSession, terms: list[str]) -> ColumnElement[bool]:
    query: BindParameter[str] = bindparam("fts_query", _quoted(terms))
    if _dialect(db) == "postgresql":
        return literal_column("posts.search_document").op("@@")(
            func.websearch_to_tsquery(_SIMPLE, cast(query, Text))
        )
    matching = select(_posts_fts.c.rowid).where(literal_column("posts_fts").op("MATCH")(query))
    return Post.id.in_(matching)


async def search_posts(
    db: AsyncSession,
    viewer: policy.Viewer,
    q: str,
    *,
    limit: int = DEFAULT_LIMIT,
    max_id: int | None = None,
) -> list[Post]:
    """Posts containing every term of `q` that this viewer may find, newest first."""
    terms = query_terms(q)
    if not terms:
        return []
    stmt = select(Post).where(_match_clause(db, terms), policy.searchable_clause(viewer, Post))
    if max_id is not None:
        stmt = stmt.where(Post.id < max_id)
    stmt = stmt.order_by(Post.id.desc()).limit(max(1, min(limit, 40)))
    return list((await db.scalars(stmt)).all())


def _handle_parts(db: AsyncSession, q: str) -> tuple[str, str | None]:
    """`@name@domain` → (name, domain); our own domain counts as local (""); no domain → None."""
    name, _, domain = q.strip().lstrip("@").lower().partition("@")
    if not domain:
        return name, None
    local = runtime_of(db).settings.domain.lower()
    return name, "" if domain in (local, local.split(":")[0]) else domain


async def search_accounts(
    db: AsyncSession, viewer: policy.Viewer, q: str, *, limit: int = DEFAULT_LIMIT
) -> list[Account]:
    """Accounts whose handle or display name contains `q` (case-insensitive): exact handle
    first, then handles and names that start with it, then the rest."""
    q = clean_query(q)
    name, domain = _handle_parts(db, q)
    if not name:
        return []
    exact = and_(Account.username_key == name, Account.domain == (domain or ""))
    if domain is None:
        loose = or_(
            Account.username_key.contains(name, autoescape=True),
            Account.display_name.icontains(q, autoescape=True),
        )
    else:
        loose = and_(
            Account.username_key.startswith(name, autoescape=True),
            Account.domain.startswith(domain, autoescape=True),
        )
    rank = case(
        (exact, 0),
        (Account.username_key.startswith(name, autoescape=True), 1),
        (func.lower(Account.display_name).startswith(q.lower(), autoescape=True), 2),
        else_=3,
    )
    stmt = (
        select(Account)
        .where(or_(exact, loose), policy.account_search_clause(viewer, exact))
        .order_by(rank, Account.username_key, Account.id)
        .limit(max(1, min(limit, 40)))
    )
    return list((await db.scalars(stmt)).all())


async def search_hashtags(
    db: AsyncSession, viewer: policy.Viewer, q: str, *, limit: int = DEFAULT_LIMIT
) -> list[Tag]:
    """Hashtags whose name starts with `q`, shortest first. A tag is listed only if the viewer
    could find a post that uses it, so a tag used only in private posts stays private."""
    key = text.normalize_hashtag(clean_query(q).lstrip("#"))
    if not key:
        return []
    used = exists(
        select(PostTag.post_id)
        .join(Post, Post.id == PostTag.post_id)
        .where(PostTag.tag_id == Tag.id, policy.searchable_clause(viewer, Post))
    )
    stmt = (
        select(Tag)
        .where(Tag.name.startswith(key, autoescape=True), used)
        .order_by(func.length(Tag.name), Tag.name)
        .limit(max(1, min(limit, 40)))
    )
    return list((await db.scalars(stmt)).all())


async def search(
    db: AsyncSession,
    viewer: policy.Viewer,
    q: str,
    *,
    type: str | None = None,
    limit: int = DEFAULT_LIMIT,
    max_id: int | None = None,
    resolve: bool = False,
) -> SearchResults:
    """Search one kind (`type` in TYPES) or, with no type, all three. With `resolve` (signed-in
    people only), a remote handle `@user@host` not known yet is looked up on its server first."""
    results = SearchResults(query=clean_query(q))
    if not results.query:
        return results
    if resolve and viewer.account_id is not None and type in (None, "accounts"):
        await _resolve_remote(db, results.query)
    if type in (None, "accounts"):
        results.accounts = await search_accounts(db, viewer, q, limit=limit)
    if type in (None, "hashtags"):
        results.hashtags = await search_hashtags(db, viewer, q, limit=limit)
    if type in (None, "posts"):
        results.posts = await search_posts(db, viewer, q, limit=limit, max_id=max_id)
    return results


async def _resolve_remote(db: AsyncSession, q: str) -> None:
    """Fetch the account `q` names when it is a remote handle (WebFinger, then its actor),
    and commit it, so the account search below finds it. A failure just finds nothing."""
    from kith.federation.actors import ActorFetchFailed
    from kith.federation.remote_accounts import resolve_handle, split_handle

    handle = split_handle(q)
    if handle is None or _handle_parts(db, q)[1] == "":
        return
    try:
        await resolve_handle(db, *handle)
        await db.commit()
    except ActorFetchFailed:
        await db.rollback()
