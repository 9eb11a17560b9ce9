"""The GETs of communities' `Group` actors (FEP-1b12): `/c/HANDLE` answers ActivityPub JSON
when asked for it (the HTML page answers everything else) and its collections. Each handler
asks `federation.groups` and renders with `communities.activitypub`."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.communities import activitypub as group_ap
from kith.federation import activitypub as ap
from kith.federation import groups, keys
from kith.federation.negotiation import ActivityJsonOnlyRoute, activity_json
from kith.federation.routes import _max_id, fetch_viewer
from kith.runtime import runtime_of
from kith.web.deps import get_db

# Registered before the HTML pages: `/c/NAME` and below match only requests asking for
# ActivityPub JSON.
negotiated = APIRouter(route_class=ActivityJsonOnlyRoute)


@negotiated.get("/c/{handle}")
async def group_actor(handle: str, db: AsyncSession = Depends(get_db)) -> Response:
    """The community's `Group`: its public card, endpoints and key (for every community)."""
    community = await groups.served_community(db, handle)
    key = await keys.community_key(db, community)
    return activity_json(group_ap.group(runtime_of(db).settings, community, key))


@negotiated.get("/c/{handle}/outbox")
async def group_outbox(
    handle: str,
    page: str = "",
    max_id: str | None = None,
    db: AsyncSession = Depends(get_db),
    viewer: policy.Viewer = Depends(fetch_viewer),
) -> Response:
    """The Announces of the community's threads, newest first (a private community's: none)."""
    community = await groups.served_community(db, handle)
    outbox_id = group_ap.collection_id(runtime_of(db).settings, community, "outbox")
    paged = bool(page) or max_id is not None
    cursor = _max_id(max_id)
    result = await groups.outbox_page(
        db, viewer, community, cursor, ap.OUTBOX_PAGE_SIZE, with_items=paged
    )
    if not paged:
        first = f"{outbox_id}?page=true" if result.total else None
        return activity_json(ap.ordered_collection(outbox_id, result.total, first=first))
    items = [{k: v for k, v in a.items() if k != "@context"} for a in result.announces]
    page_id = f"{outbox_id}?page=true" + (f"&max_id={cursor}" if cursor else "")
    next_page = f"{outbox_id}?page=true&max_id={result.next_max_id}" if result.next_max_id else None
    return activity_json(ap.collection_page(page_id, outbox_id, items, next_page, None))


@negotiated.get("/c/{handle}/followers")
async def group_followers(handle: str, db: AsyncSession = Depends(get_db)) -> Response:
    """How many members the community has; who they are is not published."""
    community = await groups.served_community(db, handle)
    collection = group_ap.collection_id(runtime_of(db).settings, community, "followers")
    total = await groups.follower_count(db, community)
    return activity_json(ap.ordered_collection(collection, total))


@negotiated.get("/c/{handle}/featured")
async def group_featured(
    handle: str,
    db: AsyncSession = Depends(get_db),
    viewer: policy.Viewer = Depends(fetch_viewer),
) -> Response:
    """The community's pinned threads, by id."""
    community = await groups.served_community(db, handle)
    collection = group_ap.collection_id(runtime_of(db).settings, community, "featured")
    items = await groups.featured_ids(db, viewer, community)
    return activity_json(ap.ordered_collection(collection, len(items), items=items))


@negotiated.get("/c/{handle}/moderators")
async def group_moderators(handle: str, db: AsyncSession = Depends(get_db)) -> Response:
    """The community's owner and moderators (Lemmy's `attributedTo`), by actor id."""
    community = await groups.served_community(db, handle)
    collection = group_ap.collection_id(runtime_of(db).settings, community, "moderators")
    items = await groups.moderator_ids(db, community)
    return activity_json(ap.ordered_collection(collection, len(items), items=items))
