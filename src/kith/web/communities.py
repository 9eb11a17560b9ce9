"""Community pages: founding a community, its page (card, feed, joining, posting into it)
and editing it. The directory is `web.community_directory`, moderators' pages are
`web.community_moderation`.

Who may do what is asked of `communities.permissions`, who may see what of `kith.policy`;
handlers here only parse, call and render."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData, UploadFile

from kith import policy
from kith.communities import (
    directory,
    feeds,
    flairs,
    images,
    permissions,
    posting,
    reports,
    rosters,
)
from kith.communities import service as communities
from kith.communities.models import Community, CommunityPost, CommunityPostState, MembershipModel
from kith.communities.permissions import CommunityAction
from kith.errors import Forbidden, KithError, NotFound, ValidationFailed
from kith.filters import service as filters
from kith.posts import presenter
from kith.web.composing import limit_composer_body, publish
from kith.web.deps import Current, check_csrf, current, get_db, runtime, signed_in
from kith.web.forms import form_str, post_input
from kith.web.settings import limit_body_size
from kith.web.templating import render
from kith.web.timelines import _cursor

router = APIRouter(dependencies=[Depends(limit_body_size), Depends(check_csrf)])
# The community's composer takes images as the main composer does, so not the card's limit.
posting_router = APIRouter(dependencies=[Depends(limit_composer_body), Depends(check_csrf)])

# Shown after a redirect, chosen by key so no text is reflected from the URL.
NOTICES = {
    "created": "Your community is ready. Invite people, or tell them its address.",
    "saved": "Saved.",
    "joined": "You joined.",
    "requested": "Your request is waiting for the moderators.",
    "left": "You left.",
    "home_on": "Its posts will appear in your Home.",
    "home_off": "Its posts will no longer appear in your Home.",
    "posted": "Posted.",
    "queued": "Your post is waiting for a moderator's approval.",
    "reported": "Thank you: the moderators will look at your report.",
}
MEMBERSHIP_LABELS = {
    MembershipModel.OPEN: "Open: anyone joins at once",
    MembershipModel.APPROVAL: "Approval: people ask, moderators let them in",
    MembershipModel.INVITE: "Invite only: an invite link is the only way in",
    MembershipModel.PRIVATE: "Private: by request or invite; only members see posts and members",
}
SORTS = ("new", "active", "top")
WINDOWS = ("day", "week", "all")
_TOPIC_SPLIT = re.compile(r"[\s,]+")


async def community_or_404(db: AsyncSession, handle: str) -> Community:
    """Ours by `handle`, or a remote one known here by `handle@host`."""
    community = await communities.find_by_address(db, handle)
    if community is None:
        raise NotFound("No such community.")
    return community


def done(community: Community, notice: str, path: str = "") -> Response:
    return RedirectResponse(f"/c/{community.address}{path}?notice={notice}", status_code=303)


def _topics(raw: str) -> list[str]:
    return [t for t in _TOPIC_SPLIT.split(raw) if t]


def _community_fields(form: FormData) -> dict[str, Any]:
    """The create/edit form's fields as service arguments (the service checks them)."""
    return {
        "name": form_str(form, "name"),
        "description": form_str(form, "description"),
        "rules": form_str(form, "rules"),
        "topics": _topics(form_str(form, "topics")),
        "language": form_str(form, "language"),
        "membership": form_str(form, "membership", MembershipModel.OPEN),
        "join_question": form_str(form, "join_question"),
        "post_approval": form_str(form, "post_approval") == "on",
    }


def _form_of(community: Community) -> dict[str, Any]:
    return {
        "handle": community.handle,
        "name": community.name,
        "description": community.description,
        "rules": community.rules,
        "topics": " ".join(community.topics or []),
        "language": community.language,
        "membership": community.membership,
        "join_question": community.join_question,
        "post_approval": "on" if community.post_approval else "",
    }


# --- founding ------------------------------------------------------------------------------


async def _new_page(
    request: Request,
    db: AsyncSession,
    me: Current,
    form: dict[str, Any],
    error: KithError | None = None,
) -> Response:
    assert me.viewer.account_id is not None
    return await render(
        request,
        db,
        "communities/new.html",
        {
            "title": "Start a community",
            "form": form,
            "labels": MEMBERSHIP_LABELS,
            "may_create": await communities.may_create(db, me.viewer.account_id),
            "errors": {error.field or "form": error.message} if error else {},
        },
        status=error.status if error else 200,
    )


@router.get("/communities/new")
async def new_page(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    return await _new_page(request, db, me, {"membership": MembershipModel.OPEN})


@router.post("/communities")
async def create(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    form = await request.form()
    assert me.viewer.account_id is not None
    try:
        made = await communities.create_community(
            db,
            me.viewer.account_id,
            form_str(form, "handle"),
            communities.CommunityInput(**_community_fields(form)),
        )
    except (ValidationFailed, Forbidden) as err:
        return await _new_page(request, db, me, dict(form.items()), err)
    return done(made, "created")


# --- a community's page --------------------------------------------------------------------


async def _page(
    request: Request,
    db: AsyncSession,
    me: Current,
    community: Community,
    *,
    form: dict[str, Any] | None = None,
    error: KithError | None = None,
) -> Response:
    """The community's page: its card for everyone; its feed for whoever the policy lets
    read it; joining, posting and moderating as the person's standing allows."""
    params = request.query_params
    sort = params.get("sort", "new")
    window = params.get("window", "day")
    viewer = me.viewer
    who = await permissions.standing(db, viewer.account_id, community)
    ban = (
        await permissions.active_ban(db, community.id, viewer.account_id)
        if who.banned and viewer.account_id is not None
        else None
    )
    can_read = await policy.can_see_community(db, viewer, community)
    views: list[presenter.PostView] = []
    pinned: list[presenter.PostView] = []
    older: int | None = None
    feed_error = ""
    # The flair `?flair=NAME` filters by: an unknown one shows nothing.
    flair_list, flair, feed_error = await flairs.feed_filter(db, community, params.get("flair"))
    if can_read and not feed_error:
        offset = params.get("offset", "0")
        try:
            page = await feeds.community_feed(
                db,
                viewer,
                community,
                sort=sort,
                window=window,
                max_id=_cursor(params.get("max_id")),
                offset=int(offset) if offset.isdigit() and len(offset) < 6 else -1,
                flair_id=flair.id if flair else None,
            )
        except ValidationFailed as err:
            page, feed_error = None, err.message
        if page is not None:
            older = page.older_max_id
            views = await filters.apply(
                db, viewer, await presenter.present(db, viewer, page.posts), context="public"
            )
            if not params.get("max_id") and not params.get("offset"):
                pinned = await presenter.present(
                    db, viewer, await feeds.pinned_threads(db, viewer, community)
                )
            await presenter.with_communities(db, pinned + views)
    may_moderate = permissions.allows(who, CommunityAction.MODERATE)
    waiting = (
        await rosters.waiting_counts(db, viewer.account_id, community)
        if may_moderate and viewer.account_id is not None
        else (0, 0)
    )
    states = await rosters.thread_states(
        db, community, [v.post.id for v in pinned] + [v.post.id for v in views]
    )
    response = await render(
        request,
        db,
        "communities/page.html",
        {
            "title": community.name,
            "community": community,
            "listing": await directory.listing(db, community),
            "moderators": await rosters.moderators(db, viewer, community),
            "who": who,
            "in_home": await communities.in_home(db, viewer.account_id, community),
            "ban": ban,
            "can_read": can_read,
            "may_post": permissions.allows(who, CommunityAction.POST),
            "cross_posts": (
                await posting.cross_post_choices(db, viewer.account_id, community)
                if viewer.account_id is not None and permissions.allows(who, CommunityAction.POST)
                else []
            ),
            "may_moderate": may_moderate,
            "waiting": waiting,
            "may_update": permissions.allows(who, CommunityAction.UPDATE),
            "may_invite": permissions.allows(who, CommunityAction.INVITE),
            "owns": permissions.allows(who, CommunityAction.MANAGE_ROLES),
            "views": views,
            "pinned": pinned,
            "states": states,
            "flairs": flair_list,
            "flair": flair,
            "thread_flairs": await flairs.flairs_of_threads(db, community, list(states)),
            "open_reports": await reports.open_count(db, viewer.account_id, community),
            "sort": sort if sort in SORTS else "new",
            "window": window if window in WINDOWS else "day",
            "older": older,
            "feed_error": feed_error,
            "labels": MEMBERSHIP_LABELS,
            "domain": runtime(request).settings.domain,
            "notice": NOTICES.get(params.get("notice", "")),
            "invite": params.get("invite", "")[:64],
            "form": form or {},
            "errors": {error.field or "form": error.message} if error else {},
        },
        status=error.status if error else 200,
    )
    # An invite link carries its code in the URL: don't hand it to other sites.
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@router.get("/c/{handle}")
async def community_page(
    request: Request,
    handle: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(current),
) -> Response:
    community = await community_or_404(db, handle)
    if handle != community.address:  # one address per community
        query = f"?{request.url.query}" if request.url.query else ""
        return RedirectResponse(f"/c/{community.address}{query}", status_code=303)
    return await _page(request, db, me, community)


@router.post("/c/{handle}/join")
async def join(
    request: Request,
    handle: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    """Join, ask to join (with the answer) or come in with an invite code."""
    community = await community_or_404(db, handle)
    form = await request.form()
    assert me.viewer.account_id is not None
    try:
        row = await communities.join(
            db,
            me.viewer.account_id,
            community,
            answer=form_str(form, "answer"),
            invite_code=form_str(form, "invite_code").strip() or None,
        )
    except (ValidationFailed, Forbidden) as err:
        return await _page(request, db, me, community, form=dict(form.items()), error=err)
    return done(community, "joined" if row.joined_at is not None else "requested")


@router.post("/c/{handle}/leave")
async def leave(
    request: Request,
    handle: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    """Leave, or withdraw a request."""
    community = await community_or_404(db, handle)
    assert me.viewer.account_id is not None
    try:
        await communities.leave(db, me.viewer.account_id, community)
    except ValidationFailed as err:
        return await _page(request, db, me, community, error=err)
    return done(community, "left")


@router.post("/c/{handle}/home")
async def home_setting(
    request: Request,
    handle: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    """A member turns the community's posts in their Home on (`in_home=on`) or off."""
    community = await community_or_404(db, handle)
    form = await request.form()
    assert me.viewer.account_id is not None
    choice = form_str(form, "in_home")
    try:
        if choice not in ("on", "off"):
            raise ValidationFailed("Choose whether its posts appear in your Home.", field="in_home")
        await communities.set_in_home(db, me.viewer.account_id, community, choice == "on")
    except ValidationFailed as err:
        return await _page(request, db, me, community, error=err)
    return done(community, f"home_{choice}")


@posting_router.post("/c/{handle}/posts")
async def compose(
    request: Request,
    handle: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    """Start a thread in the community (it may wait for approval), with the main composer's
    fields (images, a poll) and, `also_in`, other communities it goes to as well."""
    community = await community_or_404(db, handle)
    form = await request.form()
    assert me.user is not None and me.account is not None
    try:
        flair = await flairs.flair_named(db, community, form_str(form, "flair"))
        data = post_input(form)  # which audiences fit a community: the service's
        data.community_ids = [community.id, *_also_in(form)]
        data.community_flairs = {community.id: flair.id} if flair is not None else {}
        post = await publish(request, db, me, form, data)
    except ValidationFailed as err:
        if err.field == "community_ids":
            err.field = "form"  # about the communities themselves: shown at the top
        filled: dict[str, Any] = dict(form.items())
        filled["also_in"] = [v for v in form.getlist("also_in") if isinstance(v, str)]
        return await _page(request, db, me, community, form=filled, error=err)
    row = await db.get(CommunityPost, (community.id, post.id))
    queued = row is not None and row.state == CommunityPostState.PENDING
    return done(community, "queued" if queued else "posted")


def _also_in(form: FormData) -> list[int]:
    """The other communities ticked under "Also post to" (the service checks each)."""
    ids = []
    for raw in form.getlist("also_in"):
        if not isinstance(raw, str) or not raw.isdigit() or len(raw) > 19:
            raise ValidationFailed("No such community.", field="community_ids")
        ids.append(int(raw))
    return ids


# --- editing -------------------------------------------------------------------------------


async def _edit_page(
    request: Request,
    db: AsyncSession,
    community: Community,
    form: dict[str, Any],
    error: KithError | None = None,
    notice: str = "",
) -> Response:
    return await render(
        request,
        db,
        "communities/edit.html",
        {
            "title": f"Edit {community.name}",
            "community": community,
            "form": form,
            "labels": MEMBERSHIP_LABELS,
            "section": "edit",
            "notice": NOTICES.get(notice),
            "errors": {error.field or "form": error.message} if error else {},
        },
        status=error.status if error else 200,
    )


@router.get("/c/{handle}/edit")
async def edit_page(
    request: Request,
    handle: str,
    notice: str = "",
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    community = await community_or_404(db, handle)
    assert me.viewer.account_id is not None
    await permissions.require(db, me.viewer.account_id, community, CommunityAction.UPDATE)
    return await _edit_page(request, db, community, _form_of(community), notice=notice)


@router.post("/c/{handle}/edit")
async def edit(
    request: Request,
    handle: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    community = await community_or_404(db, handle)
    form = await request.form()
    assert me.viewer.account_id is not None
    try:
        await communities.update_community(
            db,
            me.viewer.account_id,
            community,
            communities.CommunityChanges(**_community_fields(form)),
            reason=form_str(form, "reason"),
        )
    except ValidationFailed as err:
        return await _edit_page(
            request, db, community, {**dict(form.items()), "handle": community.handle}, err
        )
    return RedirectResponse(f"/c/{community.handle}/edit?notice=saved", status_code=303)


@router.post("/c/{handle}/edit/{kind}")
async def image_upload(
    request: Request,
    handle: str,
    kind: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    """Upload or remove the community's icon or banner."""
    if kind not in ("icon", "banner"):
        raise NotFound()
    community = await community_or_404(db, handle)
    form = await request.form()
    actor = me.viewer.account_id
    assert actor is not None
    try:
        if form_str(form, "remove") == "on":
            await images.remove_image(db, actor, community, kind)  # type: ignore[arg-type]
        else:
            upload = form.get(kind)
            limit = runtime(request).settings.max_avatar_bytes
            data = await upload.read(limit + 1) if isinstance(upload, UploadFile) else b""
            await images.set_image(db, actor, community, kind, data)  # type: ignore[arg-type]
    except ValidationFailed as err:
        return await _edit_page(request, db, community, _form_of(community), err)
    return RedirectResponse(f"/c/{community.handle}/edit?notice=saved", status_code=303)
