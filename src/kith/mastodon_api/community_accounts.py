"""Communities as Mastodon accounts (`group: true`), so apps can find, follow and read them:
the Account and Relationship entities of a community, and the account endpoints' answers when
an id or handle names a community (`accounts.py` and `search.py` hand those over here). The
rules are `communities.as_account`'s."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.communities import as_account
from kith.communities.activitypub import group_id, plain_html
from kith.communities.models import Community, MembershipModel
from kith.config import Settings
from kith.mastodon_api import render
from kith.mastodon_api.deps import ApiJSON, clamp, link_header, parse_id
from kith.mastodon_api.entities import _media_url, iso
from kith.mastodon_api.params import Params
from kith.runtime import runtime_of

Json = dict[str, Any]

_JOINING = {
    MembershipModel.OPEN: "open: follow to join",
    MembershipModel.APPROVAL: "by approval: follow to ask",
    MembershipModel.INVITE: "invite only",
    MembershipModel.PRIVATE: "private: follow to ask",
}


def account_entity(settings: Settings, c: Community, figures: as_account.Figures) -> Json:
    """The Account entity of a community: `group` true, its handle as `acct`, its page as
    `url`, members as followers and threads as statuses; `locked` unless anyone may join."""
    url = f"{settings.base_url}/c/{c.handle}"
    return {
        "id": str(c.id),
        "username": c.handle,
        "acct": c.handle,
        "url": url,
        "uri": group_id(settings, c),
        "display_name": c.name,
        "note": plain_html(c.description),
        "avatar": _media_url(settings, c.icon_path, "avatar.png"),
        "avatar_static": _media_url(settings, c.icon_path, "avatar.png"),
        "header": _media_url(settings, c.banner_path, "header.png"),
        "header_static": _media_url(settings, c.banner_path, "header.png"),
        "locked": c.membership != MembershipModel.OPEN,
        "fields": [
            {
                "name": "Membership",
                "value": _JOINING.get(MembershipModel(c.membership), c.membership),
                "verified_at": None,
            }
        ],
        "emojis": [],
        "bot": False,
        "group": True,
        "discoverable": True,  # the directory lists every community's card
        "indexable": c.membership != MembershipModel.PRIVATE,
        # Its members are listed on its page (a private one's to members only), not here.
        "hide_collections": True,
        "noindex": False,
        "suspended": None,
        "limited": None,
        "created_at": iso(c.created_at.replace(hour=0, minute=0, second=0, microsecond=0)),
        "roles": [],
        "last_status_at": figures.last_thread_at.date().isoformat()
        if figures.last_thread_at
        else None,
        "statuses_count": figures.threads,
        "followers_count": figures.members,
        "following_count": 0,
    }


async def accounts(db: AsyncSession, viewer: policy.Viewer, rows: list[Community]) -> list[Json]:
    """Account entities of these communities as the viewer may count them."""
    settings = runtime_of(db).settings
    return [account_entity(settings, c, await as_account.figures(db, viewer, c)) for c in rows]


async def one_account(db: AsyncSession, viewer: policy.Viewer, c: Community) -> Json:
    return (await accounts(db, viewer, [c]))[0]


def relationship(f: as_account.Following) -> Json:
    """The Relationship entity of the viewer to a community: `following` when a member,
    `requested` while a join request waits; nothing else applies to a community."""
    return {
        "id": str(f.community_id),
        "following": f.member,
        "showing_reblogs": f.member,
        "notifying": False,
        "languages": None,
        "followed_by": False,
        "blocking": False,
        "blocked_by": False,
        "muting": False,
        "muting_notifications": False,
        "requested": f.requested,
        "requested_by": False,
        "domain_blocking": False,
        "endorsed": False,
        "note": "",
    }


def with_membership(rel: Json, f: as_account.Following) -> Json:
    """The Relationship entity of the viewer to another server's community's Group account
    (`rel`, as for any account), saying `following` while they are a member and `requested`
    while the Group has not answered, as the web page does."""
    following = bool(rel["following"]) or f.member
    return rel | {
        "following": following,
        "showing_reblogs": following,
        "requested": (bool(rel["requested"]) or f.requested) and not following,
    }


async def relationships(db: AsyncSession, account_id: int, ids: list[int]) -> dict[int, Json]:
    """Relationship entities for those of `ids` that are communities."""
    found = await as_account.following(db, account_id, ids)
    return {cid: relationship(f) for cid, f in found.items()}


async def statuses(
    request: Request, db: AsyncSession, viewer: policy.Viewer, c: Community, p: Params
) -> JSONResponse:
    """`GET /api/v1/accounts/:id/statuses` of a community: its newest threads (or its pinned
    ones), paged like an account's. Media and tag filters are not offered for communities
    yet: they answer an empty list rather than threads that do not match."""
    if p.flag("only_media") or p.text("tagged"):
        return ApiJSON([])
    page = await as_account.statuses(
        db,
        viewer,
        c,
        pinned=p.flag("pinned"),
        max_id=parse_id(p.text("max_id")),
        min_id=parse_id(p.text("min_id")),
        since_id=parse_id(p.text("since_id")),
        limit=clamp(p.integer("limit")),
    )
    items = await render.statuses(db, viewer, page.posts, context="account")
    link = None if p.flag("pinned") else link_header(request, page.posts, lambda x: x.id)
    return ApiJSON(items, headers={"Link": link} if link else {})


async def with_communities(
    db: AsyncSession, viewer: policy.Viewer, q: str, found: list[Json], limit: int
) -> list[Json]:
    """Account search results with the communities `q` finds: a community whose handle is
    exactly `q` first, then the accounts found, then other communities, `limit` in all.
    `!handle` is Lemmy's way to name a community: it finds communities only."""
    ranked = await as_account.search(db, q, limit=limit)
    exact = [c for rank, c in ranked if rank == as_account.SearchRank.EXACT]
    others = [c for rank, c in ranked if rank != as_account.SearchRank.EXACT]
    people = [] if q.strip().startswith("!") else found
    exact = exact[:limit]
    people = people[: limit - len(exact)]
    others = others[: limit - len(exact) - len(people)]
    return await accounts(db, viewer, exact) + people + await accounts(db, viewer, others)
