"""Statuses: create, read, edit, delete, context, and the one-tap actions; polls."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts import service as accounts
from kith.accounts.models import Account
from kith.errors import NotFound, ValidationFailed
from kith.mastodon_api import render, scheduling
from kith.mastodon_api.deps import Auth, clamp, documented, optional_auth, parse_id, scoped
from kith.mastodon_api.entities import iso
from kith.mastodon_api.models import IdempotencyKey
from kith.mastodon_api.params import Params, read_params
from kith.posts import service as posts
from kith.posts.models import Visibility
from kith.posts.service import PollInput, PostInput
from kith.timelines import service as timelines
from kith.web.deps import get_db

router = APIRouter(prefix="/api/v1")
EDIT_BODY = {
    "status": "string",
    "spoiler_text": "string",
    "sensitive": "boolean",
    "language": "string",
    "media_ids": "strings",
}
STATUS_BODY = {
    **EDIT_BODY,
    "visibility": "string",
    "in_reply_to_id": "string",
    "scheduled_at": "string",
    "poll": "poll",
}


def _post_id(raw: str) -> int:
    pid = parse_id(raw)
    if pid is None:
        raise NotFound("Record not found")
    return pid


def post_input_from(p: Params) -> PostInput:
    """A PostInput from Mastodon's status parameters."""
    visibility = p.text("visibility") or "public"
    if visibility not in {v.value for v in Visibility}:
        raise ValidationFailed(
            "visibility is not one of public, unlisted, private, direct", field="visibility"
        )
    poll_params = p.obj("poll")
    poll = None
    if poll_params:
        given = poll_params.many("options")
        if any(isinstance(o, dict | list | bool) or o is None for o in given):
            raise ValidationFailed("poll[options] must be strings", field="poll")
        options = [str(o) for o in given]
        expires = poll_params.integer("expires_in")
        if expires is None:
            raise ValidationFailed("poll[expires_in] is required", field="poll")
        poll = PollInput(
            options=options,
            expires_in=expires,
            multiple=poll_params.flag("multiple"),
            hide_totals=poll_params.flag("hide_totals"),
        )
    reply = p.get("in_reply_to_id")
    if reply is not None and (isinstance(reply, bool) or not isinstance(reply, str | int)):
        raise ValidationFailed("in_reply_to_id must be a status id", field="in_reply_to_id")
    return PostInput(
        source=p.text("status") or "",
        visibility=Visibility(visibility),
        spoiler_text=p.text("spoiler_text") or "",
        sensitive=p.flag("sensitive"),
        language=p.text("language"),
        in_reply_to_id=_post_id(str(reply)) if reply not in (None, "") else None,
        poll=poll,
        media_ids=media_ids_from(p),
    )


def media_ids_from(p: Params) -> list[int]:
    """`media_ids[]` as ids; an id that is not a number is refused like a foreign one."""
    ids = []
    for raw in p.many("media_ids"):
        media_id = parse_id(
            raw if isinstance(raw, str | int) and not isinstance(raw, bool) else None
        )
        if media_id is None:
            raise ValidationFailed("media_ids must be ids of your uploads", field="media_ids")
        ids.append(media_id)
    return ids


def media_descriptions_from(p: Params) -> dict[int, str]:
    """Edits: `media_attributes[][id]` + `[description]` → new alt text per attachment."""
    out: dict[int, str] = {}
    given = p.get("media_attributes")
    # JSON sends a list of objects; forms send media_attributes[0][id] (a dict of objects).
    if isinstance(given, dict) and given and all(isinstance(v, dict) for v in given.values()):
        given = list(given.values())
    for attrs in given if isinstance(given, list) else [given] if given else []:
        if not isinstance(attrs, dict):
            raise ValidationFailed("media_attributes must be objects", field="media_attributes")
        item = Params(attrs)
        media_id = parse_id(item.text("id"))
        if media_id is None:
            raise ValidationFailed("media_attributes need an id", field="media_attributes")
        description = item.text("description")
        if description is not None:
            out[media_id] = description
    return out


@router.post("/statuses", openapi_extra=documented(body=STATUS_BODY))
async def create_status(
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:statuses")),
) -> dict[str, Any]:
    p = await read_params(request)
    assert auth.user is not None
    await accounts.require_confirmed(db, auth.user)
    data = post_input_from(p)  # validate before anything is kept
    if data.media_ids and p.text("scheduled_at"):
        # Unattached uploads are forgotten after a day, which a scheduled status may outlive.
        raise ValidationFailed("Scheduled statuses can't have attachments yet", field="media_ids")
    key = request.headers.get("idempotency-key")
    me = auth.account.id
    if key is not None:
        earlier = await scheduling.claim_key(db, me, key, scheduling.request_hash(p))
        if earlier is not None:
            return await _earlier_result(db, auth, earlier)
    try:
        scheduled_at = p.text("scheduled_at")
        if scheduled_at:
            row = await scheduling.schedule(
                db, auth.account, scheduling.parse_time(scheduled_at), dict(p)
            )
            result = scheduling.scheduled_entity(row)
            done = {"scheduled_id": row.id}
        else:
            post = await posts.create_post(db, auth.account, data)
            result = await render.one_status(db, auth.viewer, post)
            done = {"post_id": post.id}
    except Exception:
        if key is not None:
            await scheduling.release_key(db, me, key)
        raise
    if key is not None:
        await scheduling.complete_key(db, me, key, **done)
    return result


async def _earlier_result(db: AsyncSession, auth: Auth, earlier: IdempotencyKey) -> dict[str, Any]:
    """The answer to a repeated request: the status (or scheduled status) it made."""
    if earlier.scheduled_id is not None:
        row = await scheduling.get_scheduled(db, auth.account.id, earlier.scheduled_id)
        return scheduling.scheduled_entity(row)
    assert earlier.post_id is not None
    post = await posts.get_visible_post(db, auth.viewer, earlier.post_id)
    return await render.one_status(db, auth.viewer, post)


@router.get("/scheduled_statuses")
async def scheduled_statuses(
    db: AsyncSession = Depends(get_db), auth: Auth = Depends(scoped("read:statuses"))
) -> list[dict[str, Any]]:
    return [
        scheduling.scheduled_entity(r) for r in await scheduling.my_scheduled(db, auth.account.id)
    ]


@router.get("/scheduled_statuses/{scheduled_id}")
async def scheduled_status(
    scheduled_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read:statuses")),
) -> dict[str, Any]:
    return scheduling.scheduled_entity(
        await scheduling.get_scheduled(db, auth.account.id, _post_id(scheduled_id))
    )


@router.put("/scheduled_statuses/{scheduled_id}")
async def reschedule(
    scheduled_id: str,
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:statuses")),
) -> dict[str, Any]:
    p = await read_params(request)
    row = await scheduling.get_scheduled(db, auth.account.id, _post_id(scheduled_id))  # 404 first
    when = scheduling.parse_time(p.text("scheduled_at") or "")
    return scheduling.scheduled_entity(
        await scheduling.reschedule(db, auth.account.id, row.id, when)
    )


@router.delete("/scheduled_statuses/{scheduled_id}")
async def cancel_scheduled(
    scheduled_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:statuses")),
) -> dict[str, Any]:
    await scheduling.cancel(db, auth.account.id, _post_id(scheduled_id))
    return {}


@router.get("/statuses/{status_id}")
async def get_status(
    status_id: str, db: AsyncSession = Depends(get_db), auth: Auth = Depends(optional_auth)
) -> dict[str, Any]:
    post = await posts.get_visible_post(db, auth.viewer, _post_id(status_id))
    return await render.one_status(db, auth.viewer, post)


@router.delete("/statuses/{status_id}")
async def delete_status(
    status_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:statuses")),
) -> dict[str, Any]:
    post = await posts.get_visible_post(db, auth.viewer, _post_id(status_id))
    entity = await render.one_status(db, auth.viewer, post)
    await posts.delete_post(db, auth.viewer, post.id)
    entity["text"] = post.source  # "delete and redraft" needs the source
    return entity


@router.put("/statuses/{status_id}", openapi_extra=documented(body=EDIT_BODY))
async def edit_status(
    status_id: str,
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:statuses")),
) -> dict[str, Any]:
    p = await read_params(request)
    data = PostInput(
        source=p.text("status") or "",
        spoiler_text=p.text("spoiler_text") or "",
        sensitive=p.flag("sensitive"),
        language=p.text("language"),
        media_ids=media_ids_from(p),
        media_descriptions=media_descriptions_from(p),
    )
    post = await posts.edit_post(db, auth.viewer, _post_id(status_id), data)
    return await render.one_status(db, auth.viewer, post)


@router.get("/statuses/{status_id}/source")
async def status_source(
    status_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("read:statuses")),
) -> dict[str, Any]:
    post = await posts.get_visible_post(db, auth.viewer, _post_id(status_id))
    if post.account_id != auth.account.id:
        raise NotFound("Record not found")
    return {"id": str(post.id), "text": post.source, "spoiler_text": post.spoiler_text}


@router.get("/statuses/{status_id}/history")
async def status_history(
    status_id: str, db: AsyncSession = Depends(get_db), auth: Auth = Depends(optional_auth)
) -> list[dict[str, Any]]:
    post = await posts.get_visible_post(db, auth.viewer, _post_id(status_id))
    versions = await posts.edit_history(db, auth.viewer, post.id)
    author = await db.get(Account, post.account_id)
    assert author is not None
    acct = await render.one_account(db, author)
    if not versions:
        versions_out = [
            {
                "content": post.content_html,
                "spoiler_text": post.spoiler_text,
                "sensitive": post.sensitive,
                "created_at": iso(post.created_at),
            }
        ]
    else:
        versions_out = [
            {
                "content": v.content_html,
                "spoiler_text": v.spoiler_text,
                "sensitive": v.sensitive,
                "created_at": iso(v.created_at),
            }
            for v in versions
        ]
    return [
        {**v, "account": acct, "poll": None, "media_attachments": [], "emojis": []}
        for v in versions_out
    ]


@router.get("/statuses/{status_id}/context")
async def status_context(
    status_id: str, db: AsyncSession = Depends(get_db), auth: Auth = Depends(optional_auth)
) -> dict[str, Any]:
    post = await posts.get_visible_post(db, auth.viewer, _post_id(status_id))
    ancestors, descendants = await timelines.thread(db, auth.viewer, post)
    return {
        "ancestors": await render.statuses(db, auth.viewer, ancestors, context="thread"),
        "descendants": await render.statuses(
            db, auth.viewer, [p for p, _ in descendants], context="thread"
        ),
    }


async def _after(db: AsyncSession, auth: Auth, post_id: int) -> dict[str, Any]:
    post = await posts.get_visible_post(db, auth.viewer, post_id)
    return await render.one_status(db, auth.viewer, post)


@router.post("/statuses/{status_id}/favourite")
async def favourite(
    status_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:favourites")),
) -> dict[str, Any]:
    post = await posts.like(db, auth.viewer, _post_id(status_id))
    return await _after(db, auth, post.id)


@router.post("/statuses/{status_id}/unfavourite")
async def unfavourite(
    status_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:favourites")),
) -> dict[str, Any]:
    post = await posts.unlike(db, auth.viewer, _post_id(status_id))
    return await _after(db, auth, post.id)


@router.post("/statuses/{status_id}/reblog")
async def reblog(
    status_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:statuses")),
) -> dict[str, Any]:
    boost = await posts.boost(db, auth.viewer, _post_id(status_id))
    return await render.one_status(db, auth.viewer, boost)


@router.post("/statuses/{status_id}/unreblog")
async def unreblog(
    status_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:statuses")),
) -> dict[str, Any]:
    pid = _post_id(status_id)
    await posts.unboost(db, auth.viewer, pid)
    return await _after(db, auth, pid)


@router.post("/statuses/{status_id}/bookmark")
async def bookmark(
    status_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:bookmarks")),
) -> dict[str, Any]:
    post = await posts.bookmark(db, auth.viewer, _post_id(status_id), True)
    return await _after(db, auth, post.id)


@router.post("/statuses/{status_id}/unbookmark")
async def unbookmark(
    status_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:bookmarks")),
) -> dict[str, Any]:
    post = await posts.bookmark(db, auth.viewer, _post_id(status_id), False)
    return await _after(db, auth, post.id)


@router.post("/statuses/{status_id}/pin")
async def pin(
    status_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:accounts")),
) -> dict[str, Any]:
    post = await posts.pin(db, auth.viewer, _post_id(status_id), True)
    return await _after(db, auth, post.id)


@router.post("/statuses/{status_id}/unpin")
async def unpin(
    status_id: str,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:accounts")),
) -> dict[str, Any]:
    post = await posts.pin(db, auth.viewer, _post_id(status_id), False)
    return await _after(db, auth, post.id)


@router.get("/statuses/{status_id}/favourited_by")
async def favourited_by(
    status_id: str,
    limit: int | None = None,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(optional_auth),
) -> list[dict[str, Any]]:
    people = await posts.likers(db, auth.viewer, _post_id(status_id), limit=clamp(limit, 40, 80))
    return await render.accounts(db, people)


@router.get("/statuses/{status_id}/reblogged_by")
async def reblogged_by(
    status_id: str,
    limit: int | None = None,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(optional_auth),
) -> list[dict[str, Any]]:
    people = await posts.boosters(db, auth.viewer, _post_id(status_id), limit=clamp(limit, 40, 80))
    return await render.accounts(db, people)


@router.get("/polls/{poll_id}")
async def get_poll(
    poll_id: str, db: AsyncSession = Depends(get_db), auth: Auth = Depends(optional_auth)
) -> dict[str, Any]:
    post = await posts.get_visible_post(db, auth.viewer, _post_id(poll_id))
    entity = await render.one_status(db, auth.viewer, post)
    if entity["poll"] is None:
        raise NotFound("Record not found")
    return entity["poll"]


@router.post("/polls/{poll_id}/votes", openapi_extra=documented(body={"choices": "strings"}))
async def vote(
    poll_id: str,
    request: Request,
    db: AsyncSession = Depends(get_db),
    auth: Auth = Depends(scoped("write:statuses")),
) -> dict[str, Any]:
    p = await read_params(request)
    choices = []
    for c in p.many("choices"):
        if isinstance(c, bool) or not str(c).isdigit() or len(str(c)) > 3:
            raise ValidationFailed("choices must be option indexes", field="choices")
        choices.append(int(c))
    await posts.vote(db, auth.viewer, _post_id(poll_id), choices)
    return await get_poll(poll_id, db, auth)
