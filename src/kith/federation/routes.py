"""The ActivityPub and discovery GETs: WebFinger, host-meta, NodeInfo, actors, posts and
collections. Each handler parses, asks `federation.service`, and renders with
`federation.activitypub` / `federation.discovery`. (The inboxes are `federation.inbox`.)"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts import service as accounts
from kith.accounts.models import Account
from kith.communities import activitypub as group_ap
from kith.config import Settings
from kith.emojis import service as emoji_service
from kith.errors import Forbidden, KithError, NotFound, ValidationFailed
from kith.federation import activitypub as ap
from kith.federation import discovery, groups, keys, service, signed_fetch, uris
from kith.federation.inbox_routes import request_parts
from kith.federation.negotiation import (
    ActivityJsonOnlyRoute,
    FederationRoute,
    activity_json,
    json_error,
    wants_activity_json,
)
from kith.posts import presenter
from kith.runtime import runtime_of
from kith.web.deps import get_db

log = logging.getLogger(__name__)
router = APIRouter(route_class=FederationRoute)
# Registered before the HTML pages: these match `/@name` and `/@name/ID` only when the request
# asks for ActivityPub JSON, and the pages answer everything else.
negotiated = APIRouter(route_class=ActivityJsonOnlyRoute)

JRD_CONTENT_TYPE = "application/jrd+json; charset=utf-8"


class SignatureRequired(KithError):
    """An unsigned (or badly signed) GET while the instance runs in "authorized fetch" mode."""

    status = 401


async def fetch_viewer(request: Request, db: AsyncSession = Depends(get_db)) -> policy.Viewer:
    """Who is fetching a document: the remote actor whose HTTP signature the GET carries
    (`signed_fetch.signer_of`), else anonymous. Session cookies are ignored on purpose: these
    documents are for servers. A signature that proves nothing counts as none — except in
    "authorized fetch" mode (`KITH_AUTHORIZED_FETCH`), where such a GET is refused (401)."""
    settings = _settings(db)
    parts = request_parts(request, b"", settings.https)
    try:
        signer = await signed_fetch.signer_of(db, parts)
    except signed_fetch.BadFetchSignature as exc:
        log.info("fetch: refused a signature (%s)", exc)
        signer = None
    if signer is None:
        if settings.authorized_fetch and wants_activity_json(request.headers.get("accept", "")):
            raise SignatureRequired("This server answers signed requests only.")
        return policy.ANONYMOUS
    return policy.Viewer(signer.id)


async def actor_fetcher(
    request: Request, db: AsyncSession = Depends(get_db)
) -> policy.Viewer | None:
    """`fetch_viewer` for actor documents, except that the GET authorized fetch mode would
    refuse is answered with None: it gets the key-only document. A peer verifying one of our
    signatures must be able to read the key without a signature of its own (signing that fetch
    would send us asking for its key in turn)."""
    try:
        return await fetch_viewer(request, db)
    except SignatureRequired:
        return None


def _settings(db: AsyncSession) -> Settings:
    return runtime_of(db).settings


def _json(document: dict[str, Any], content_type: str, cors: bool = False) -> Response:
    headers = {"Access-Control-Allow-Origin": "*"} if cors else {}
    return Response(
        json.dumps(document, ensure_ascii=False), media_type=content_type, headers=headers
    )


def _max_id(raw: str | None, field: str = "max_id") -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise ValidationFailed(f"{field} must be a number.", field=field)
    return int(raw)


# --- discovery ----------------------------------------------------------------------------


@router.get("/.well-known/webfinger")
async def webfinger(resource: str = "", db: AsyncSession = Depends(get_db)) -> Response:
    settings = _settings(db)
    try:
        if not resource:
            raise service.MalformedResource("The resource parameter is required.")
        community = await groups.webfinger_community(db, resource)
        if community is not None:  # a community's Group (FEP-1b12)
            return _json(group_ap.webfinger(settings, community), JRD_CONTENT_TYPE, cors=True)
        account = await service.webfinger_account(db, settings, resource)
    except KithError as exc:
        response = json_error(exc.status, exc.message)
        response.headers["Access-Control-Allow-Origin"] = "*"
        return response
    return _json(discovery.webfinger(settings, account), JRD_CONTENT_TYPE, cors=True)


@router.get("/.well-known/host-meta")
async def host_meta(db: AsyncSession = Depends(get_db)) -> Response:
    return Response(
        discovery.host_meta(_settings(db)),
        media_type="application/xrd+xml; charset=utf-8",
        headers={"Access-Control-Allow-Origin": "*"},
    )


@router.get("/.well-known/nodeinfo")
async def nodeinfo_links(db: AsyncSession = Depends(get_db)) -> Response:
    return _json(discovery.nodeinfo_links(_settings(db)), "application/json", cors=True)


@router.get("/nodeinfo/{version}")
async def nodeinfo(version: str, db: AsyncSession = Depends(get_db)) -> Response:
    if version not in discovery.NODEINFO_VERSIONS:
        raise NotFound("No such NodeInfo version.")
    usage = await service.usage(db)
    name = (await accounts.get_instance_settings(db)).name
    profile = f"http://nodeinfo.diaspora.software/ns/schema/{version}#"
    return _json(
        discovery.nodeinfo(version, usage, name),
        f'application/json; profile="{profile}"; charset=utf-8',
        cors=True,
    )


# --- actors -------------------------------------------------------------------------------


async def _person(db: AsyncSession, username: str, *, key_only: bool = False) -> Response:
    account, state = await service.published_actor(db, username)
    key = await keys.local_key(db, account)
    settings = _settings(db)
    if key_only:
        return activity_json(ap.key_only_actor(settings, account, key))
    suspended = state is policy.ActorState.SUSPENDED
    moved = await db.get(Account, account.moved_to_id) if account.moved_to_id else None
    moved_to = ap.actor_id(settings, moved) if moved else None
    emojis = (await emoji_service.for_accounts(db, [account])).get(account.id, ())
    return activity_json(
        ap.person(settings, account, key, suspended=suspended, moved_to=moved_to, emojis=emojis)
    )


@router.get("/users/{username}")
async def actor(
    request: Request,
    username: str,
    db: AsyncSession = Depends(get_db),
    viewer: policy.Viewer | None = Depends(actor_fetcher),
) -> Response:
    """The `Person` (its key id `…#main-key` is this URL too); in authorized fetch mode an
    unsigned GET gets the key-only document."""
    if not wants_activity_json(request.headers.get("accept", "")):
        account, _ = await service.published_actor(db, username)
        return RedirectResponse(f"/@{account.username}", status_code=302)
    return await _person(db, username, key_only=viewer is None)


@negotiated.get("/@{username}")
async def actor_by_profile_url(
    username: str,
    db: AsyncSession = Depends(get_db),
    viewer: policy.Viewer | None = Depends(actor_fetcher),
) -> Response:
    return await _person(db, username, key_only=viewer is None)


@router.get("/actor")
async def instance_actor(db: AsyncSession = Depends(get_db)) -> Response:
    key = await keys.instance_key(db)
    return activity_json(ap.instance_actor(_settings(db), key))


@router.get("/actor/outbox")
async def instance_actor_outbox(db: AsyncSession = Depends(get_db)) -> Response:
    outbox = f"{uris.instance_actor_uri(_settings(db))}/outbox"
    return activity_json(ap.ordered_collection(outbox, 0, items=[]))


# --- posts --------------------------------------------------------------------------------


async def _note(
    db: AsyncSession, viewer: policy.Viewer, username: str, status_id: int
) -> dict[str, Any]:
    view = await service.fetch_post(db, viewer, username, status_id)
    if view.post.reblog_of_id is not None:
        raise NotFound("A boost is not an object; see its activity.")
    parts = (await service.note_parts(db, _settings(db), [view]))[view.post.id]
    return ap.note(
        _settings(db),
        view,
        in_reply_to=parts.in_reply_to,
        poll_counts=parts.poll_counts,
        audience=parts.audience,
    )


@router.get("/users/{username}/statuses/{status_id:int}")
async def post_object(
    request: Request,
    username: str,
    status_id: int,
    db: AsyncSession = Depends(get_db),
    viewer: policy.Viewer = Depends(fetch_viewer),
) -> Response:
    if not wants_activity_json(request.headers.get("accept", "")):
        return RedirectResponse(f"/@{username}/{status_id}", status_code=302)
    return activity_json(await _note(db, viewer, username, status_id))


@negotiated.get("/@{username}/{status_id:int}")
async def post_by_page_url(
    username: str,
    status_id: int,
    db: AsyncSession = Depends(get_db),
    viewer: policy.Viewer = Depends(fetch_viewer),
) -> Response:
    return activity_json(await _note(db, viewer, username, status_id))


@router.get("/users/{username}/statuses/{status_id:int}/activity")
async def post_activity(
    username: str,
    status_id: int,
    db: AsyncSession = Depends(get_db),
    viewer: policy.Viewer = Depends(fetch_viewer),
) -> Response:
    """The Create of a post, or the Announce of a boost."""
    settings = _settings(db)
    view = await service.fetch_post(db, viewer, username, status_id)
    if view.post.reblog_of_id is not None:
        if view.reblog is None:  # pragma: no cover - policy let the boost through
            raise NotFound()
        return activity_json(ap.announce(settings, view))
    parts = (await service.note_parts(db, settings, [view]))[view.post.id]
    note = ap.note(
        settings,
        view,
        in_reply_to=parts.in_reply_to,
        poll_counts=parts.poll_counts,
        audience=parts.audience,
    )
    return activity_json(ap.create(settings, note, view))


# --- collections --------------------------------------------------------------------------


async def _collected_post(
    db: AsyncSession, viewer: policy.Viewer, username: str, status_id: int
) -> presenter.PostView:
    """The post whose collection is asked for: shown to exactly those who may see the post
    (404 otherwise, as the post itself); a boost has no collections."""
    view = await service.fetch_post(db, viewer, username, status_id)
    if view.post.reblog_of_id is not None:
        raise NotFound("A boost is not an object; see its activity.")
    return view


@router.get("/users/{username}/statuses/{status_id:int}/replies")
async def post_replies(
    request: Request,
    username: str,
    status_id: int,
    page: str = "",
    min_id: str | None = None,
    only_other_accounts: str = "",
    db: AsyncSession = Depends(get_db),
    viewer: policy.Viewer = Depends(fetch_viewer),
) -> Response:
    """The replies anyone may see, by id: the collection (count, first page), or a page."""
    if not wants_activity_json(request.headers.get("accept", "")):
        return RedirectResponse(f"/@{username}/{status_id}", status_code=302)
    settings = _settings(db)
    view = await _collected_post(db, viewer, username, status_id)
    collection_id = uris.replies_uri(settings, view.author.username, view.post.id)
    others = only_other_accounts == "true"
    if not page and min_id is None and not others:
        total = await service.replies_total(db, viewer, view.post)
        return activity_json(
            ap.ordered_collection(collection_id, total, first=f"{collection_id}?page=true")
        )
    cursor = _max_id(min_id, "min_id")
    result = await service.replies_page(
        db, settings, viewer, view.post, others=others, min_id=cursor, limit=ap.REPLIES_PAGE_SIZE
    )

    def page_url(in_others: bool, after: int | None) -> str:
        return (
            f"{collection_id}?page=true"
            + ("&only_other_accounts=true" if in_others else "")
            + (f"&min_id={after}" if after is not None else "")
        )

    next_page = page_url(result.next_others, result.next_min_id) if result.next_min_id else None
    return activity_json(
        ap.collection_page(page_url(others, cursor), collection_id, result.items, next_page, None)
    )


async def _counted(
    request: Request,
    db: AsyncSession,
    viewer: policy.Viewer,
    username: str,
    status_id: int,
    kind: str,
) -> Response:
    """`likes` or `shares` of a post: a count only; who liked or boosted is not published
    (as on Mastodon)."""
    if not wants_activity_json(request.headers.get("accept", "")):
        return RedirectResponse(f"/@{username}/{status_id}", status_code=302)
    view = await _collected_post(db, viewer, username, status_id)
    post, settings = view.post, _settings(db)
    uri_of, total = (
        (uris.likes_uri, post.likes_count)
        if kind == "likes"
        else (uris.shares_uri, post.reblogs_count)
    )
    return activity_json(
        ap.counted_collection(uri_of(settings, view.author.username, post.id), total)
    )


@router.get("/users/{username}/statuses/{status_id:int}/likes")
async def post_likes(
    request: Request,
    username: str,
    status_id: int,
    db: AsyncSession = Depends(get_db),
    viewer: policy.Viewer = Depends(fetch_viewer),
) -> Response:
    return await _counted(request, db, viewer, username, status_id, "likes")


@router.get("/users/{username}/statuses/{status_id:int}/shares")
async def post_shares(
    request: Request,
    username: str,
    status_id: int,
    db: AsyncSession = Depends(get_db),
    viewer: policy.Viewer = Depends(fetch_viewer),
) -> Response:
    return await _counted(request, db, viewer, username, status_id, "shares")


@router.get("/users/{username}/outbox")
async def outbox(
    username: str,
    page: str = "",
    max_id: str | None = None,
    db: AsyncSession = Depends(get_db),
    viewer: policy.Viewer = Depends(fetch_viewer),
) -> Response:
    settings = _settings(db)
    account = await service.actor_with_content(db, username)
    outbox_id = uris.outbox_uri(settings, account.username)
    if not page and max_id is None:
        total = await service.outbox_total(db, viewer, account)
        return activity_json(
            ap.ordered_collection(outbox_id, total, first=f"{outbox_id}?page=true")
        )
    cursor = _max_id(max_id)
    result = await service.outbox_page(db, viewer, account, cursor, ap.OUTBOX_PAGE_SIZE)
    plain = [v for v in result.views if v.post.reblog_of_id is None]
    parts = await service.note_parts(db, settings, plain)
    items = []
    for v in result.views:
        if v.post.reblog_of_id is not None:
            if v.reblog is not None:
                items.append(_without_context(ap.announce(settings, v)))
            continue
        p = parts[v.post.id]
        note = ap.note(
            settings, v, in_reply_to=p.in_reply_to, poll_counts=p.poll_counts, audience=p.audience
        )
        items.append(_without_context(ap.create(settings, note, v)))
    page_id = f"{outbox_id}?page=true" + (f"&max_id={cursor}" if cursor else "")
    next_page = f"{outbox_id}?page=true&max_id={result.next_max_id}" if result.next_max_id else None
    return activity_json(ap.collection_page(page_id, outbox_id, items, next_page, None))


def _without_context(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "@context"}


async def _network(
    db: AsyncSession,
    viewer: policy.Viewer,
    username: str,
    kind: str,
    page: str,
    max_id: str | None,
) -> Response:
    """Followers or following: the count is public; who is in it only when the account shows
    its network (else the collection has no pages and asking for one is a 403, as Mastodon)."""
    settings = _settings(db)
    account = await service.actor_with_content(db, username)
    collection_id = f"{uris.actor_uri(settings, account.username)}/{kind}"
    paged = bool(page) or max_id is not None
    cursor = _max_id(max_id)
    result = await service.network_page(
        db, settings, viewer, account, kind, cursor, ap.NETWORK_PAGE_SIZE, with_items=paged
    )
    if not paged:
        shown = await policy.can_see_network(db, viewer, account)
        first = f"{collection_id}?page=true" if shown else None
        return activity_json(ap.ordered_collection(collection_id, result.total, first=first))
    if result.items is None:
        raise Forbidden("This account does not show its network.")
    page_id = f"{collection_id}?page=true" + (f"&max_id={cursor}" if cursor else "")
    next_page = (
        f"{collection_id}?page=true&max_id={result.next_max_id}" if result.next_max_id else None
    )
    doc = ap.collection_page(page_id, collection_id, result.items, next_page, None)
    doc["totalItems"] = result.total
    return activity_json(doc)


@router.get("/users/{username}/followers")
async def followers(
    username: str,
    page: str = "",
    max_id: str | None = None,
    db: AsyncSession = Depends(get_db),
    viewer: policy.Viewer = Depends(fetch_viewer),
) -> Response:
    return await _network(db, viewer, username, "followers", page, max_id)


@router.get("/users/{username}/following")
async def following(
    username: str,
    page: str = "",
    max_id: str | None = None,
    db: AsyncSession = Depends(get_db),
    viewer: policy.Viewer = Depends(fetch_viewer),
) -> Response:
    return await _network(db, viewer, username, "following", page, max_id)


@router.get("/users/{username}/collections/featured")
async def featured(
    username: str,
    db: AsyncSession = Depends(get_db),
    viewer: policy.Viewer = Depends(fetch_viewer),
) -> Response:
    settings = _settings(db)
    account = await service.actor_with_content(db, username)
    views = await service.featured(db, viewer, account)
    parts = await service.note_parts(db, settings, views)
    items = [
        ap.note(
            settings,
            v,
            in_reply_to=parts[v.post.id].in_reply_to,
            poll_counts=parts[v.post.id].poll_counts,
            with_context=False,
            audience=parts[v.post.id].audience,
        )
        for v in views
    ]
    collection_id = uris.featured_uri(settings, account.username)
    return activity_json(ap.ordered_collection(collection_id, len(items), items=items))
