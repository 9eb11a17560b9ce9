"""Build lists of entities with batched look-ups (one presenter pass, one counts query)."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.emojis import service as emoji_service
from kith.filters import service as filters
from kith.graph.service import Linked
from kith.mastodon_api import entities, entity_cache
from kith.mastodon_api.deps import ApiJSON, link_header
from kith.posts import presenter
from kith.posts.models import Post
from kith.runtime import runtime_of


async def statuses(
    db: AsyncSession, viewer: policy.Viewer, posts: list[Post], *, context: str | None = None
) -> list[dict[str, Any]]:
    """Status entities for posts the viewer may see, with filters of `context` applied (from
    the parts cached per process: entity_cache)."""
    return await entity_cache.statuses(db, viewer, posts, context=context)


async def status_for_many(
    db: AsyncSession, post: Post, viewer_ids: Collection[int], *, context: str
) -> dict[int, dict[str, Any]]:
    """The Status entity of one post for many viewers who may all see it (a live post sent
    to everyone connected): {viewer id: entity}; viewers whose "hide" filter catches it are
    left out. The post is presented once; what differs per viewer (liked, boosted,
    bookmarked, filter results) comes from one query each, and viewers alike share one
    entity. Only for an original post without a poll by someone else than the viewers
    (a boost's original and a poll's votes are the viewer's own: render those one by one)."""
    assert post.reblog_of_id is None and post.account_id not in viewer_ids
    if not viewer_ids:
        return {}
    # Anyone but the author sees the same post; their own marks are replaced below.
    views = await presenter.present(db, policy.Viewer(next(iter(viewer_ids))), [post])
    assert views and views[0].poll is None, "polls are rendered one viewer at a time"
    base = views[0]
    marks = await presenter.marks_of_viewers(db, post.id, viewer_ids)
    rules = await filters.active_rules_of(db, viewer_ids, context, post_ids={post.id})
    counts = await entities.account_counts(db, entities.all_accounts([base]))
    settings = runtime_of(db).settings
    shared: dict[tuple[Any, ...], dict[str, Any]] = {}
    out: dict[int, dict[str, Any]] = {}
    for vid in viewer_ids:
        hits = filters.judge(base, rules.get(vid, []))
        if hits is None:
            continue
        done = marks.get(vid, set())
        key = (
            presenter.LIKE in done,
            presenter.BOOST in done,
            presenter.BOOKMARK in done,
            tuple(h.filter.id for h in hits),
        )
        entity = shared.get(key)
        if entity is None:
            view = dataclasses.replace(
                base,
                liked=key[0],
                boosted=key[1],
                bookmarked=key[2],
                filtered=[h.filter.title for h in hits],
                filter_hits=hits,
            )
            entity = shared[key] = entities.status(settings, view, counts)
        out[vid] = entity
    return out


async def one_status(db: AsyncSession, viewer: policy.Viewer, post: Post) -> dict[str, Any]:
    return (await statuses(db, viewer, [post]))[0]


async def accounts(db: AsyncSession, rows: list[Account]) -> list[dict[str, Any]]:
    counts = await entities.account_counts(db, [a.id for a in rows])
    settings = runtime_of(db).settings
    emojis = await emoji_service.for_accounts(db, rows)
    out = [entities.account(settings, a, counts.get(a.id), emojis.get(a.id, ())) for a in rows]
    moved = {a.id: a.moved_to_id for a in rows if a.moved_to_id is not None}
    if moved:
        by_id = {a.id: entity for a, entity in zip(rows, out, strict=True)}
        await entity_cache.with_moved(db, by_id, moved)
    return out


async def one_account(db: AsyncSession, a: Account) -> dict[str, Any]:
    return (await accounts(db, [a]))[0]


async def account_page(request: Request, db: AsyncSession, rows: list[Linked]) -> JSONResponse:
    """A page of accounts with Mastodon's Link header, whose cursors are the ids of the rows
    behind them (follows, requests, blocks, mutes), not the accounts' ids."""
    items = await accounts(db, [x.account for x in rows])
    link = link_header(request, rows, lambda x: x.row_id)
    return ApiJSON(items, headers={"Link": link} if link else {})
