"""Profile pages, follower lists and graph actions (follow, block, mute …)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts import service as accounts
from kith.emojis import service as emoji_service
from kith.errors import NotFound
from kith.filters import service as filters
from kith.graph import service as graph
from kith.posts import presenter
from kith.timelines import service as timelines
from kith.web.deps import Current, check_csrf, current, get_db, signed_in
from kith.web.forms import form_int, form_str
from kith.web.templating import render
from kith.web.timelines import _cursor

router = APIRouter(dependencies=[Depends(check_csrf)])

TABS = {"": "posts", "with_replies": "replies", "media": "media"}


async def _profile_account(db: AsyncSession, me: Current, username: str):  # type: ignore[no-untyped-def]
    account = await accounts.find_account(db, username)
    if account is None or not await policy.can_see_account(db, me.viewer, account):
        raise NotFound("No such account.")
    return account


@router.get("/@{username}")
@router.get("/@{username}/{tab:str}")
async def profile(
    request: Request,
    username: str,
    tab: str = "",
    max_id: str | None = None,
    min_id: str | None = None,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(current),
) -> Response:
    if tab in ("followers", "following"):
        return await network(request, username, tab, db, me)
    if tab not in TABS:
        raise NotFound()
    account = await _profile_account(db, me, username)
    rel = await graph.relationship(db, me.viewer.account_id, account.id)
    page = timelines.Page([], None, None)
    pinned: list[presenter.PostView] = []
    if not (rel.blocked_by or rel.blocking):
        page = await timelines.profile(
            db, me.viewer, account, tab=TABS[tab], max_id=_cursor(max_id), min_id=_cursor(min_id)
        )
        if not tab and max_id is None and min_id is None:
            pinned = await presenter.present(
                db, me.viewer, await timelines.pinned(db, me.viewer, account)
            )
    views = await filters.apply(
        db, me.viewer, await presenter.present(db, me.viewer, page.posts), context="account"
    )
    await presenter.with_communities(db, pinned + views)
    counts = await graph.profile_counts(db, account.id)
    return await render(
        request,
        db,
        "profile.html",
        {
            "account": account,
            "rel": rel,
            "views": views,
            "pinned": pinned,
            "page": page,
            "tab": tab,
            "counts": counts,
            "title": account.name_to_show,
            "show_network": await policy.can_see_network(db, me.viewer, account),
            "profile_emojis": (await emoji_service.for_accounts(db, [account])).get(account.id, []),
        },
    )


async def network(
    request: Request, username: str, which: str, db: AsyncSession, me: Current
) -> Response:
    account = await _profile_account(db, me, username)
    fn = graph.followers if which == "followers" else graph.following
    people = await fn(db, me.viewer, account)
    return await render(
        request,
        db,
        "people.html",
        {
            "account": account,
            "people": people,
            "which": which,
            "hidden": not await policy.can_see_network(db, me.viewer, account),
            "title": f"{account.name_to_show}: {which}",
        },
    )


GRAPH_ACTIONS = {
    "follow",
    "unfollow",
    "block",
    "unblock",
    "mute",
    "unmute",
    "remove_follower",
    "authorize",
    "reject",
}


@router.post("/@{username}/{action}")
async def graph_action(
    request: Request,
    username: str,
    action: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    if action not in GRAPH_ACTIONS:
        raise NotFound()
    form = await request.form()
    target = await _profile_account(db, me, username)
    mine = me.viewer.account_id
    assert mine is not None
    if action == "follow":
        await graph.follow(db, mine, target.id)
    elif action == "unfollow":
        await graph.unfollow(db, mine, target.id)
    elif action == "block":
        await graph.block(db, mine, target.id)
    elif action == "unblock":
        await graph.unblock(db, mine, target.id)
    elif action == "mute":
        await graph.mute(
            db,
            mine,
            target.id,
            duration=form_int(form, "duration"),
            notifications_too=form_str(form, "notifications", "on") == "on",
        )
    elif action == "unmute":
        await graph.unmute(db, mine, target.id)
    elif action == "remove_follower":
        await graph.remove_follower(db, mine, target.id)
    else:
        await graph.answer_request(db, mine, target.id, accept=action == "authorize")
        return RedirectResponse("/follow_requests", status_code=303)
    return RedirectResponse(f"/@{target.acct}", status_code=303)


@router.get("/follow_requests")
async def follow_requests(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    assert me.viewer.account_id is not None
    people = await graph.follow_requests(db, me.viewer.account_id)
    return await render(
        request, db, "follow_requests.html", {"people": people, "title": "Follow requests"}
    )
