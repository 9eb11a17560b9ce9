"""Post pages and actions: compose, thread view, like, boost, bookmark, pin, vote, edit, delete."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts import service as accounts
from kith.errors import KithError, NotFound, ValidationFailed
from kith.filters import service as filters
from kith.media import service as media
from kith.posts import presenter
from kith.posts import service as posts
from kith.posts.service import PostInput
from kith.timelines import service as timelines
from kith.web.auth import safe_next
from kith.web.composing import limit_composer_body, publish
from kith.web.deps import Current, check_csrf, current, get_db, signed_in
from kith.web.forms import form_int, form_str, post_input
from kith.web.templating import render

router = APIRouter(dependencies=[Depends(check_csrf)])


def back(request: Request, form_next: str, default: str) -> Response:
    """Redirect after an action: to the form's `next`, else `default` (no open redirects)."""
    return RedirectResponse(safe_next(form_next) if form_next else default, status_code=303)


@router.post("/posts", dependencies=[Depends(limit_composer_body)])
async def compose(
    request: Request, db: AsyncSession = Depends(get_db), me: Current = Depends(signed_in)
) -> Response:
    form = await request.form()
    assert me.account is not None and me.user is not None
    try:
        post = await publish(request, db, me, form, post_input(form))
    except ValidationFailed as err:
        return await render(
            request,
            db,
            "compose.html",
            {
                "errors": {err.field: err.message},
                "form": dict(form.items()),
            },
            status=422,
        )
    if request.headers.get("hx-request"):
        return RedirectResponse(form_str(form, "next") or "/home", status_code=303)
    return back(request, form_str(form, "next"), f"/@{me.account.username}/{post.id}")


@router.get("/compose")
async def compose_page(
    request: Request,
    in_reply_to_id: str = "",
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    return await render(
        request, db, "compose.html", {"form": {"in_reply_to_id": in_reply_to_id, "next": ""}}
    )


async def _load_post_page(
    request: Request, db: AsyncSession, me: Current, username: str, post_id: int
) -> Response:
    post = await posts.get_visible_post(db, me.viewer, post_id)
    author = await accounts.find_account(db, username)
    if author is None or author.id != post.account_id:
        raise NotFound()
    if post.reblog_of_id is not None:
        original = await posts.get_visible_post(db, me.viewer, post.reblog_of_id)
        orig_author = await db.get(type(author), original.account_id)
        assert orig_author is not None
        return RedirectResponse(f"/@{orig_author.acct}/{original.id}", status_code=303)
    ancestors, descendants = await timelines.thread(db, me.viewer, post)
    everything = ancestors + [post] + [p for p, _ in descendants]
    presented = await presenter.present(db, me.viewer, everything)
    views = {v.post.id: v for v in await presenter.with_communities(db, presented)}
    filtered = {
        v.post.id
        for v in await filters.apply(db, me.viewer, list(views.values()), context="thread")
    }
    return await render(
        request,
        db,
        "post.html",
        {
            "focus": views[post.id],
            "ancestors": [views[p.id] for p in ancestors if p.id in filtered],
            "descendants": [(views[p.id], depth) for p, depth in descendants if p.id in filtered],
            "title": f"{author.name_to_show}: post",
        },
    )


@router.get("/@{username}/{post_id:int}")
async def post_page(
    request: Request,
    username: str,
    post_id: int,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(current),
) -> Response:
    return await _load_post_page(request, db, me, username, post_id)


@router.get("/@{username}/{post_id:int}/history")
async def post_history(
    request: Request,
    username: str,
    post_id: int,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(current),
) -> Response:
    versions = await posts.edit_history(db, me.viewer, post_id)
    return await render(
        request,
        db,
        "history.html",
        {"versions": versions, "username": username, "post_id": post_id},
    )


@router.get("/posts/{post_id:int}/edit")
async def edit_page(
    request: Request,
    post_id: int,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    post = await posts.get_visible_post(db, me.viewer, post_id)
    if post.account_id != me.viewer.account_id:
        raise NotFound()
    attachments = await media.for_post(db, post.id)
    return await render(
        request,
        db,
        "edit.html",
        {
            "post": post,
            "media": attachments,
            "form": {
                "status": post.source,
                "spoiler_text": post.spoiler_text,
                "language": post.language or "",
            }
            | {f"alt_{m.id}": m.description for m in attachments},
        },
    )


@router.post("/posts/{post_id:int}/edit")
async def edit(
    request: Request,
    post_id: int,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    form = await request.form()
    assert me.account is not None
    data = PostInput(
        source=form_str(form, "status"),
        spoiler_text=form_str(form, "spoiler_text"),
        sensitive=form_str(form, "sensitive") == "on",
        language=form_str(form, "language") or None,
        media_descriptions={
            int(key[4:]): form_str(form, key)
            for key in form
            if key.startswith("alt_") and key[4:].isdigit() and len(key) < 24
        },
    )
    try:
        post = await posts.edit_post(db, me.viewer, post_id, data)
    except ValidationFailed as err:
        post = await posts.get_visible_post(db, me.viewer, post_id)
        return await render(
            request,
            db,
            "edit.html",
            {
                "post": post,
                "media": await media.for_post(db, post.id),
                "form": dict(form.items()),
                "errors": {err.field: err.message},
            },
            status=422,
        )
    return RedirectResponse(f"/@{me.account.username}/{post.id}", status_code=303)


ACTIONS = {
    "like": posts.like,
    "unlike": posts.unlike,
    "boost": posts.boost,
    "bookmark": lambda db, v, pid: posts.bookmark(db, v, pid, True),
    "unbookmark": lambda db, v, pid: posts.bookmark(db, v, pid, False),
    "pin": lambda db, v, pid: posts.pin(db, v, pid, True),
    "unpin": lambda db, v, pid: posts.pin(db, v, pid, False),
}


@router.post("/posts/{post_id:int}/{action}")
async def act(
    request: Request,
    post_id: int,
    action: str,
    db: AsyncSession = Depends(get_db),
    me: Current = Depends(signed_in),
) -> Response:
    """One-click actions on a post. Errors come back as a page with the message (422/404)."""
    form = await request.form()
    if action == "unboost":
        await posts.unboost(db, me.viewer, post_id)
    elif action == "delete":
        await posts.delete_post(db, me.viewer, post_id)
        return back(request, form_str(form, "next"), "/home")
    elif action == "vote":
        choices = [
            int(c)
            for c in form.getlist("choice")
            if isinstance(c, str) and c.isdigit() and len(c) < 4
        ]
        await posts.vote(db, me.viewer, post_id, choices)
    elif action in ACTIONS:
        await ACTIONS[action](db, me.viewer, post_id)
    else:
        raise NotFound()
    if request.headers.get("hx-request"):
        return await _card(request, db, me, form_int(form, "card") or post_id)
    return back(request, form_str(form, "next"), "/home")


async def _card(request: Request, db: AsyncSession, me: Current, post_id: int) -> Response:
    """The re-rendered post card htmx swaps in after an action (the boost row may be gone
    after an un-boost: then the original's card)."""
    try:
        post = await posts.get_visible_post(db, me.viewer, post_id)
    except NotFound:
        return await render(request, db, "_card.html", {"view": None})
    views = await presenter.with_communities(db, await presenter.present(db, me.viewer, [post]))
    return await render(request, db, "_card.html", {"view": views[0]})


__all__ = ["router", "KithError", "form_int"]
