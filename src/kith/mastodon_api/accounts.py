"""Accounts: credentials, profiles, their statuses, the social graph, relationships."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile

from kith import policy
from kith.accounts import profile
from kith.accounts import service as accounts
from kith.accounts.models import Account
from kith.accounts.profile import ImageKind, ProfileInput
from kith.communities import as_account
from kith.communities.models import Community
from kith.emojis import service as emoji_service
from kith.errors import NotFound, ValidationFailed
from kith.graph import service as graph
from kith.graph.models import Follow, FollowRequest
from kith.mastodon_api import community_accounts, entities, entity_cache, render
from kith.mastodon_api.deps import (
    PAGINATION,
    ApiJSON,
    Auth,
    account_window,
    clamp,
    documented,
    link_header,
    optional_auth,
    parse_id,
    scoped,
)
from kith.mastodon_api.params import read_params
from kith.media import images
from kith.runtime import runtime_of
from kith.timelines import service as timelines
from kith.web.deps import get_db

router = APIRouter(prefix="/api/v1/accounts")


async def _account(db: AsyncSession, viewer: policy.Viewer, raw: str) -> Account:
    aid = parse_id(raw)
    a = await db.get(Account, aid) if aid is not None else None
    if a is None or not await policy.can_see_account(db, viewer, a):
        raise NotFound("Record not found")
    return a


async def _account_or_community(
    db: AsyncSession, viewer: policy.Viewer, raw: str
) -> Account | Community:
    """The account with this id, or else the community (a `group: true` account to apps:
    see community_accounts); NotFound when neither (or an account the viewer may not see)."""
    aid = parse_id(raw)
    if aid is not None and await db.get(Account, aid) is None:
        community = await as_account.by_id(db, aid)
        if community is not None:
            return community
    return await _account(db, viewer, raw)


@router.get("/verify_credentials")
async def verify_credentials(
    db: AsyncSession = Depends(get_db), auth: Auth = Depends(scoped("profile"))
) -> dict[str, Any]:
    a = auth.account
    counts = await entities.account_counts(db, [a.id])
    requests = int(
        await db.scalar(
            select(func.count()).select_from(FollowRequest).where(FollowRequest.followee_id == a.id)
        )
        or 0
    )
    emojis = await emoji_service.for_accounts(db, [a])
    data = entities.credential_account(
        runtime_of(db).settings,
        a,
        counts.get(a.id),
        follow_requests=requests,
        emojis=emojis.get(a.id, ()),
    )
    if a.moved_to_id is not None:
        await entity_cache.with_moved(db, {a.id: data}, {a.id: a.moved_to_id})
    return data


@router.patch(
    "/update_credentials",
    openapi_extra=documented(
        body={
            "display_name": "string",
            "note": "string",
            "locked": "boolean",
            "discoverable": "boolean",
            "hide_collections": "boolean",
        }
    ),
)
async def update_credentials(
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:accounts")),
) -> dict[str, Any]:
    """Change the profile: only the parameters sent change (Mastodon's partial update)."""
    a = auth.account
    p = await read_params(request)
    fields = [(f.get("name", ""), f.get("value", "")) for f in (a.fields or [])]
    attrs = p.get("fields_attributes")
    if attrs is not None:
        rows = attrs.values() if isinstance(attrs, dict) else attrs
        if not isinstance(rows, list) and not hasattr(rows, "__iter__"):
            raise ValidationFailed("fields_attributes must be a list", field="fields_attributes")
        fields = []
        for row in rows:
            if not isinstance(row, dict):
                raise ValidationFailed(
                    "each field needs a name and a value", field="fields_attributes"
                )
            fields.append((str(row.get("name", "")), str(row.get("value", ""))))
    data = ProfileInput(
        display_name=p.text("display_name", a.display_name) or "",
        bio=p.text("note", a.bio_source) or "",
        pronouns=a.pronouns,
        fields=fields,
        locked=p.flag("locked", a.locked),
        discoverable=p.flag("discoverable", a.discoverable),
        hide_network=p.flag("hide_collections", a.hide_network),
    )
    uploads = await _checked_images(request, db)
    await profile.update_profile(db, a, data)
    for kind, raw in uploads.items():
        await profile.set_image(db, a, kind, raw)
    return await verify_credentials(db, auth)


async def _checked_images(request: Request, db: AsyncSession) -> dict[ImageKind, bytes]:
    """The avatar and header uploads, each already converted once to prove it fit, so that an
    unfit image is refused before the profile changes (no half-applied update). The second
    conversion, in set_image, costs a fraction of a second for an avatar-sized image."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return {}
    form = await request.form()
    limit = runtime_of(db).settings.max_avatar_bytes
    converters: dict[ImageKind, Callable[..., bytes]] = {
        "avatar": images.avatar_from_upload,
        "header": images.header_from_upload,
    }
    out: dict[ImageKind, bytes] = {}
    for kind, convert in converters.items():
        upload = form.get(kind)
        if isinstance(upload, UploadFile):
            raw = await upload.read(limit + 1)
            await asyncio.to_thread(convert, raw, max_bytes=limit)
            out[kind] = raw
    return out


@router.get("/lookup")
async def lookup(
    acct: str = "", db: AsyncSession = Depends(get_db), auth: Auth = Depends(optional_auth)
) -> dict[str, Any]:
    a = await accounts.find_account(db, acct)  # remote ones too, when known here
    if a is None and (community := await as_account.by_acct(db, acct)) is not None:
        return await community_accounts.one_account(db, auth.viewer, community)
    if a is None or not await policy.can_see_account(db, auth.viewer, a):
        raise NotFound("Record not found")
    return await render.one_account(db, a)


@router.get("/relationships", openapi_extra=documented({"id": "strings"}))
async def relationships(
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read:follows")),
) -> list[dict[str, Any]]:
    p = await read_params(request)
    ids = [aid for raw in p.many("id")[:40] if (aid := parse_id(str(raw))) is not None]
    groups = await community_accounts.relationships(db, auth.account.id, ids)
    memberships = await as_account.group_following(db, auth.account.id, ids)
    out = []
    for aid in ids:
        if aid in groups:
            out.append(groups[aid])
        elif await db.get(Account, aid) is not None:
            rel = await _rel(db, auth.account.id, aid)
            if aid in memberships:  # another server's community, as its Group's account
                rel = community_accounts.with_membership(rel, memberships[aid])
            out.append(rel)
    return out


@router.get("/{account_id}")
async def get_account(
    account_id: str, db: AsyncSession = Depends(get_db), auth: Auth = Depends(optional_auth)
) -> dict[str, Any]:
    a = await _account_or_community(db, auth.viewer, account_id)
    if isinstance(a, Community):
        return await community_accounts.one_account(db, auth.viewer, a)
    return await render.one_account(db, a)


@router.get(
    "/{account_id}/statuses",
    openapi_extra=documented(
        {
            **PAGINATION,
            "pinned": "boolean",
            "exclude_replies": "boolean",
            "exclude_reblogs": "boolean",
            "only_media": "boolean",
            "tagged": "string",
        }
    ),
)
async def account_statuses(
    account_id: str,
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(optional_auth),
) -> JSONResponse:
    a = await _account_or_community(db, auth.viewer, account_id)
    p = await read_params(request)
    if isinstance(a, Community):
        return await community_accounts.statuses(request, db, auth.viewer, a, p)
    if await policy.is_blocked_between(db, auth.viewer.account_id, a.id):
        return JSONResponse([])
    if p.flag("pinned"):
        pinned = await timelines.pinned(db, auth.viewer, a)
        return JSONResponse(await render.statuses(db, auth.viewer, pinned, context="account"))
    tab = "posts" if p.flag("exclude_replies") else "replies"
    if p.flag("only_media"):
        tab = "media"
    page = await timelines.profile(
        db,
        auth.viewer,
        a,
        tab=tab,
        max_id=parse_id(p.text("max_id")),
        min_id=parse_id(p.text("min_id") or p.text("since_id")),
        limit=clamp(p.integer("limit")),
        tagged=p.text("tagged") or None,
    )
    posts = [x for x in page.posts if not (p.flag("exclude_reblogs") and x.reblog_of_id)]
    items = await render.statuses(db, auth.viewer, posts, context="account")
    link = link_header(request, page.posts, lambda x: x.id)
    return ApiJSON(items, headers={"Link": link} if link else {})


@router.get("/{account_id}/followers", openapi_extra=documented(PAGINATION))
async def followers(
    account_id: str,
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(optional_auth),
) -> JSONResponse:
    a = await _account(db, auth.viewer, account_id)
    window = account_window(await read_params(request))
    return await render.account_page(
        request, db, await graph.followers_page(db, auth.viewer, a, window)
    )


@router.get("/{account_id}/following", openapi_extra=documented(PAGINATION))
async def following(
    account_id: str,
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(optional_auth),
) -> JSONResponse:
    a = await _account(db, auth.viewer, account_id)
    window = account_window(await read_params(request))
    return await render.account_page(
        request, db, await graph.following_page(db, auth.viewer, a, window)
    )


async def _rel(db: AsyncSession, me: int, other: int) -> dict[str, Any]:
    """The Relationship entity of `me` to `other`, with the follow's reblogs/notify switches."""
    rel = await graph.relationship(db, me, other)
    follow = await db.get(Follow, (me, other))
    return entities.relationship(
        other,
        rel,
        show_reblogs=follow.show_reblogs if follow else True,
        notify=follow.notify if follow else False,
    )


@router.post(
    "/{account_id}/follow",
    openapi_extra=documented(body={"reblogs": "boolean", "notify": "boolean"}),
)
async def follow(
    account_id: str,
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:follows")),
) -> dict[str, Any]:
    a = await _account_or_community(db, auth.viewer, account_id)
    p = await read_params(request)
    if isinstance(a, Community):  # following a community joins it
        joined = await as_account.follow(db, auth.account.id, a)
        return community_accounts.relationship(joined)
    if (asked := await as_account.follow_group(db, auth.account.id, a.id)) is not None:
        # Another server's community, as its Group's account: joined, as on the web.
        return community_accounts.with_membership(await _rel(db, auth.account.id, a.id), asked)
    # Read before anything is written: a bad flag must not leave a follow behind.
    reblogs = p.flag("reblogs") if p.get("reblogs") not in (None, "") else None
    notify = p.flag("notify") if p.get("notify") not in (None, "") else None
    await graph.follow(db, auth.account.id, a.id)
    row = await db.get(Follow, (auth.account.id, a.id))
    if row is not None and (reblogs is not None or notify is not None):
        row.show_reblogs = row.show_reblogs if reblogs is None else reblogs
        row.notify = row.notify if notify is None else notify
        await db.commit()
    return await _rel(db, auth.account.id, a.id)


@router.post("/{account_id}/unfollow")
async def unfollow(
    account_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:follows")),
) -> dict[str, Any]:
    a = await _account_or_community(db, auth.viewer, account_id)
    if isinstance(a, Community):
        return community_accounts.relationship(await as_account.unfollow(db, auth.account.id, a))
    if (left := await as_account.unfollow_group(db, auth.account.id, a.id)) is not None:
        return community_accounts.with_membership(await _rel(db, auth.account.id, a.id), left)
    await graph.unfollow(db, auth.account.id, a.id)
    return await _rel(db, auth.account.id, a.id)


@router.post("/{account_id}/remove_from_followers")
async def remove_from_followers(
    account_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:follows")),
) -> dict[str, Any]:
    a = await _account(db, auth.viewer, account_id)
    await graph.remove_follower(db, auth.account.id, a.id)
    return await _rel(db, auth.account.id, a.id)


@router.post("/{account_id}/block")
async def block(
    account_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:blocks")),
) -> dict[str, Any]:
    a = await _account(db, auth.viewer, account_id)
    await graph.block(db, auth.account.id, a.id)
    return await _rel(db, auth.account.id, a.id)


@router.post("/{account_id}/unblock")
async def unblock(
    account_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:blocks")),
) -> dict[str, Any]:
    a = await _account(db, auth.viewer, account_id)
    await graph.unblock(db, auth.account.id, a.id)
    return await _rel(db, auth.account.id, a.id)


@router.post(
    "/{account_id}/mute",
    openapi_extra=documented(body={"duration": "integer", "notifications": "boolean"}),
)
async def mute(
    account_id: str,
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:mutes")),
) -> dict[str, Any]:
    a = await _account(db, auth.viewer, account_id)
    p = await read_params(request)
    duration = p.integer("duration", 0) or None
    await graph.mute(
        db,
        auth.account.id,
        a.id,
        duration=duration,
        notifications_too=p.flag("notifications", True),
    )
    return await _rel(db, auth.account.id, a.id)


@router.post("/{account_id}/unmute")
async def unmute(
    account_id: str, db: AsyncSession = Depends(get_db), auth: Auth = Depends(scoped("write:mutes"))
) -> dict[str, Any]:
    a = await _account(db, auth.viewer, account_id)
    await graph.unmute(db, auth.account.id, a.id)
    return await _rel(db, auth.account.id, a.id)
