"""A community's moderators' pages — members and roles, join requests, bans, invite links,
the post approval queue, actions on posts — and its public moderation log.

Every list and action goes through a service that asks `communities.permissions` (the lists
in `communities.rosters`, the actions in `communities.moderation` and `.service`): a member
opening these pages gets the service's 403, never a page."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts import service as accounts
from kith.communities import moderation, permissions, rosters
from kith.communities import service as communities
from kith.communities.models import Community, ModAction, Role
from kith.communities.permissions import CommunityAction
from kith.errors import Forbidden, KithError, NotFound, ValidationFailed
from kith.web.auth import safe_next
from kith.web.communities import community_or_404
from kith.web.deps import Current, check_csrf, current, get_db, runtime, signed_in
from kith.web.forms import form_int, form_str
from kith.web.templating import render

router = APIRouter(dependencies=[Depends(check_csrf)])

NOTICES = {
    "approved": "Approved.",
    "rejected": "Turned down.",
    "banned": "Banned.",
    "unbanned": "The ban is lifted.",
    "role": "Role changed.",
    "transferred": "You handed the community over. You are a moderator now.",
    "revoked": "The invite link no longer works.",
    "done": "Done.",
}
BAN_CHOICES = [(3600, "1 hour"), (86400, "1 day"), (7 * 86400, "7 days"), (30 * 86400, "30 days")]
INVITE_EXPIRY = [(3600, "1 hour"), (86400, "1 day"), (7 * 86400, "7 days"), (30 * 86400, "30 days")]
INVITE_USES = [1, 5, 10, 25, 100]
POST_ACTIONS = ("approve", "reject", "remove", "restore", "lock", "unlock", "pin", "unpin")
# What a log line says the moderator did (the modlog page reads "ACTOR did TARGET").
LOG_VERBS = {
    ModAction.UPDATE: "edited the community",
    ModAction.APPROVE: "let in",
    ModAction.REJECT: "turned down the request of",
    ModAction.BAN: "banned",
    ModAction.UNBAN: "lifted the ban of",
    ModAction.CREATE_INVITE: "made an invite link",
    ModAction.REVOKE_INVITE: "revoked an invite link",
    ModAction.MAKE_MODERATOR: "made a moderator:",
    ModAction.REMOVE_MODERATOR: "removed as moderator:",
    ModAction.TRANSFER_OWNERSHIP: "handed ownership to",
    ModAction.APPROVE_POST: "approved a post by",
    ModAction.REJECT_POST: "turned down a post by",
    ModAction.REMOVE_POST: "removed a post by",
    ModAction.RESTORE_POST: "restored a post by",
    ModAction.LOCK: "locked a thread by",
    ModAction.UNLOCK: "unlocked a thread by",
    ModAction.PIN: "pinned a thread by",
    ModAction.UNPIN: "unpinned a thread by",
    ModAction.FLAIR: "changed the flair of a thread by",
}


def _me(me: Current) -> int:
    assert me.viewer.account_id is not None  # `signed_in` guarantees it
    return me.viewer.account_id


def _back(community: Community, section: str, notice: str) -> Response:
    return RedirectResponse(f"/c/{community.handle}/{section}?notice={notice}", status_code=303)


def done_page(community: Community, notice: str) -> Response:
    return RedirectResponse(f"/c/{community.handle}?notice={notice}", status_code=303)


async def _section(
    request: Request,
    db: AsyncSession,
    me: Current,
    community: Community,
    section: str,
    *,
    error: KithError | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    """A moderators' page: its list is read through `rosters`, which refuses non-moderators."""
    actor = _me(me)
    ctx: dict[str, Any] = {
        "title": f"{community.name}: {section}",
        "community": community,
        "section": section,
        "notice": NOTICES.get(request.query_params.get("notice", "")),
        "owns": await permissions.can(db, actor, community, CommunityAction.MANAGE_ROLES),
        "errors": {error.field or "form": error.message} if error else {},
        "form": {},
    }
    if section == "members":
        ctx["members"] = await rosters.members(db, actor, community)
        ctx["ban_choices"] = BAN_CHOICES
    elif section == "requests":
        ctx["requests"] = await rosters.requests(db, actor, community)
    elif section == "bans":
        ctx["bans"] = await rosters.bans(db, actor, community)
        ctx["ban_choices"] = BAN_CHOICES
    elif section == "invites":
        ctx["invites"] = await rosters.invites(db, actor, community)
        ctx["expiry_choices"], ctx["uses_choices"] = INVITE_EXPIRY, INVITE_USES
    elif section == "queue":
        ctx["queue"] = await rosters.approval_queue(db, actor, community)
    else:
        raise NotFound()
    ctx.update(extra or {})
    status = error.status if error else 200
    return await render(request, db, f"communities/{section}.html", ctx, status=status)


# --- members and roles ---------------------------------------------------------------------


@router.post("/c/{handle}/members/{account_id:int}/{action}")
async def member_action(
    request: Request,
    handle: str,
    account_id: int,
    action: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    """Make or unmake a moderator, hand ownership over, or ban a member."""
    community = await community_or_404(db, handle)
    form = await request.form()
    reason = form_str(form, "reason")
    try:
        if action == "role":
            role = form_str(form, "role")
            if role not in (Role.MODERATOR, Role.MEMBER):
                raise ValidationFailed("Choose moderator or member.", field="role")
            await moderation.set_role(db, _me(me), community, account_id, Role(role), reason)
            notice = "role"
        elif action == "transfer":
            if form_str(form, "confirm").strip().lower() != community.handle_key:
                raise ValidationFailed("Type the community's handle to confirm.", field="confirm")
            await moderation.transfer_ownership(db, _me(me), community, account_id)
            return done_page(community, "transferred")
        elif action == "ban":
            await _ban(db, me, community, account_id, form_int(form, "duration"), reason)
            notice = "banned"
        else:
            raise NotFound()
    except (ValidationFailed, Forbidden) as err:
        return await _section(request, db, me, community, "members", error=err)
    return _back(community, "members", notice)


async def _ban(
    db: AsyncSession,
    me: Current,
    community: Community,
    account_id: int,
    seconds: int | None,
    reason: str,
) -> None:
    if seconds is not None and seconds > 10 * 366 * 86400:
        raise ValidationFailed("Ban for at most ten years, or for good.", field="duration")
    duration = timedelta(seconds=seconds) if seconds else None
    await moderation.ban(db, _me(me), community, account_id, duration=duration, reason=reason)


# --- requests ------------------------------------------------------------------------------


@router.post("/c/{handle}/requests/{account_id:int}/{action}")
async def request_action(
    request: Request,
    handle: str,
    account_id: int,
    action: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    if action not in ("approve", "reject"):
        raise NotFound()
    community = await community_or_404(db, handle)
    form = await request.form()
    try:
        if action == "approve":
            await moderation.approve(db, _me(me), community, account_id)
        else:
            await moderation.reject(db, _me(me), community, account_id, form_str(form, "reason"))
    except (ValidationFailed, Forbidden, NotFound) as err:
        return await _section(request, db, me, community, "requests", error=err)
    return _back(community, "requests", "approved" if action == "approve" else "rejected")


# --- bans ----------------------------------------------------------------------------------


@router.post("/c/{handle}/bans")
async def ban_by_name(
    request: Request,
    handle: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    """Ban someone by their @name (they need not be a member)."""
    community = await community_or_404(db, handle)
    form = await request.form()
    try:
        await permissions.require(db, _me(me), community, CommunityAction.MODERATE)
        name = form_str(form, "username").strip().lstrip("@")
        target = await accounts.find_account(db, name) if name else None
        if target is None:
            raise ValidationFailed("Nobody by that name is known here.", field="username")
        seconds = form_int(form, "duration")
        await _ban(db, me, community, target.id, seconds, form_str(form, "reason"))
    except (ValidationFailed, Forbidden) as err:
        extra = {"form": dict(form.items())}
        return await _section(request, db, me, community, "bans", error=err, extra=extra)
    return _back(community, "bans", "banned")


@router.post("/c/{handle}/bans/{account_id:int}/unban")
async def unban(
    request: Request,
    handle: str,
    account_id: int,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    community = await community_or_404(db, handle)
    form = await request.form()
    try:
        await moderation.unban(db, _me(me), community, account_id, form_str(form, "reason"))
    except ValidationFailed as err:
        return await _section(request, db, me, community, "bans", error=err)
    return _back(community, "bans", "unbanned")


# --- invites -------------------------------------------------------------------------------


@router.post("/c/{handle}/invites")
async def make_invite(
    request: Request,
    handle: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    """Make an invite link and show it this once (only its hash is kept). Rendered, not
    redirected to, so the code never lands in a URL of ours."""
    community = await community_or_404(db, handle)
    form = await request.form()
    try:
        seconds = form_int(form, "expires_in")
        if seconds is not None and seconds > 400 * 86400:
            raise ValidationFailed("Choose an expiry up to a year.", field="expires_in")
        _, code = await communities.create_invite(
            db,
            _me(me),
            community,
            expires_in=timedelta(seconds=seconds) if seconds else None,
            max_uses=form_int(form, "max_uses"),
        )
    except ValidationFailed as err:
        return await _section(request, db, me, community, "invites", error=err)
    base = runtime(request).settings.base_url
    link = f"{base}/c/{community.handle}?invite={code}"
    response = await _section(
        request, db, me, community, "invites", extra={"new_link": link, "new_code": code}
    )
    response.headers["Cache-Control"] = "no-store"
    return response


@router.post("/c/{handle}/invites/{invite_id:int}/revoke")
async def revoke_invite(
    request: Request,
    handle: str,
    invite_id: int,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    community = await community_or_404(db, handle)
    try:
        await communities.revoke_invite(db, _me(me), community, invite_id)
    except ValidationFailed as err:
        return await _section(request, db, me, community, "invites", error=err)
    return _back(community, "invites", "revoked")


# --- posts ---------------------------------------------------------------------------------


@router.post("/c/{handle}/posts/{post_id:int}/{action}")
async def post_action(
    request: Request,
    handle: str,
    post_id: int,
    action: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    """Approve, turn down, remove, restore, lock or pin a post of the community."""
    community = await community_or_404(db, handle)
    form = await request.form()
    reason = form_str(form, "reason")
    actor = _me(me)
    if action not in POST_ACTIONS:
        raise NotFound()
    try:
        if action == "approve":
            await moderation.approve_post(db, actor, community, post_id)
        elif action == "reject":
            await moderation.reject_post(db, actor, community, post_id, reason)
        elif action == "remove":
            await moderation.remove_post(db, actor, community, post_id, reason)
        elif action == "restore":
            await moderation.restore_post(db, actor, community, post_id, reason)
        elif action in ("lock", "unlock"):
            await moderation.lock_thread(
                db, actor, community, post_id, locked=action == "lock", reason=reason
            )
        else:
            await moderation.pin_thread(db, actor, community, post_id, pinned=action == "pin")
    except ValidationFailed as err:
        # Shown on the queue page, which lists what still waits (moderators only).
        return await _section(request, db, me, community, "queue", error=err)
    next_url = form_str(form, "next")
    target = safe_next(next_url) if next_url else f"/c/{community.handle}"
    sep = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{sep}notice=done", status_code=303)


# --- the public moderation log -------------------------------------------------------------


@router.get("/c/{handle}/log")
async def log_page(
    request: Request,
    handle: str,
    before: str = "",
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(current),
) -> Response:
    """What the moderators did and why: anyone's to read, but a private community's members'
    only (the policy decides; others get 404, as for its posts)."""
    community = await community_or_404(db, handle)
    try:
        lines = await rosters.moderation_log(
            db,
            me.viewer,
            community,
            before=int(before) if before.isdigit() and len(before) < 20 else None,
        )
    except Forbidden:
        raise NotFound("No such community log.") from None
    return await render(
        request,
        db,
        "communities/log.html",
        {
            "title": f"{community.name}: moderation log",
            "community": community,
            "lines": lines,
            "verbs": LOG_VERBS,
            "may_moderate": await permissions.can(
                db, me.viewer.account_id, community, CommunityAction.MODERATE
            ),
        },
    )


# Last: the names above (log, …) are routes of their own.
@router.get("/c/{handle}/{section}")
async def section_page(
    request: Request,
    handle: str,
    section: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    if section not in ("members", "requests", "bans", "invites", "queue"):
        raise NotFound()
    community = await community_or_404(db, handle)
    return await _section(request, db, me, community, section)
