"""create_app(): settings, database, bus, worker and the routers of each domain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from kith import (
    handlers,  # noqa: F401  (job handlers)
    mastodon_api,
)
from kith.accounts.credentials import MailThrottle
from kith.accounts.service import LoginThrottle
from kith.accounts.two_factor import SecondFactorThrottle
from kith.config import Settings, get_settings
from kith.edge import Edge
from kith.emojis import routes as emoji_routes
from kith.errors import KithError, RateLimited
from kith.federation import group_routes as federation_groups
from kith.federation import inbox_routes as federation_inbox
from kith.federation import routes as federation
from kith.jobs.worker import work_forever
from kith.mastodon_api.ratelimit import ApiRateLimiter
from kith.routing import index_routers
from kith.runtime import Runtime, settle_heap_now, wait_for_background
from kith.web import (
    about,
    admin,
    applications,
    auth,
    community_directory,
    community_flairs,
    community_moderation,
    community_reports,
    emoji_admin,
    federation_admin,
    media,
    notifications,
    posts,
    profiles,
    reports,
    search,
    stream,
    timelines,
    trends_admin,
)
from kith.web import communities as community_pages
from kith.web import filters as filter_settings
from kith.web import migration as migration_pages
from kith.web import oauth as oauth_pages
from kith.web import settings as settings_pages  # `settings` is create_app's argument
from kith.web.deps import SignInRequired

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "web" / "static"


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith(
        "/api/"
    ) and "application/json" not in request.headers.get("accept", "")


async def _error_page(request: Request, status: int, message: str) -> Response:
    from kith.web.templating import render

    if not _wants_html(request):
        return JSONResponse({"error": message}, status_code=status)
    try:
        async with request.app.state.runtime.sessions() as db:
            return await render(
                request, db, "error.html", {"status": status, "message": message}, status=status
            )
    except Exception:  # the error page must never fail itself
        log.exception("error page failed")
        return HTMLResponse(f"<h1>{status}</h1><p>{message}</p>", status_code=status)


def create_app(settings: Settings | None = None, *, settle_heap: bool = False) -> FastAPI:
    """The Kith web application for these settings (default: from the environment).

    `settle_heap`: once started, take what start-up built out of the collector's way
    (`runtime.settle_heap_now`); for a server process, not for tests that build many apps."""
    settings = settings or get_settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    settings.effective_secret_key()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = Runtime.from_settings(settings)
        app.state.runtime = rt
        app.state.login_throttle = LoginThrottle(
            settings.login_ip_limit, settings.login_account_limit, settings.login_window_seconds
        )
        app.state.second_factor_throttle = SecondFactorThrottle()
        app.state.mail_throttle = MailThrottle()
        worker = (
            asyncio.create_task(work_forever(rt.sessions, idle_sleep=settings.worker_idle_seconds))
            if settings.run_worker
            else None
        )
        if settle_heap:
            settle_heap_now()
        try:
            yield
        finally:
            if worker is not None:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            await wait_for_background()
            await rt.close()

    app = FastAPI(title="Kith", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # Before the pages: `/@name` and `/@name/ID` answer ActivityPub JSON when asked for it.
    app.include_router(federation.negotiated)
    app.include_router(federation_groups.negotiated)  # and `/c/NAME`, a community's Group
    app.include_router(federation.router)
    app.include_router(federation_inbox.router)
    app.include_router(emoji_routes.router)
    for module in (auth, timelines, posts, profiles, notifications, stream, settings_pages, media):
        app.include_router(module.router)
    app.include_router(oauth_pages.router)
    app.include_router(applications.router)
    for module in (search, filter_settings, reports, admin, trends_admin, federation_admin, about):
        app.include_router(module.router)
    app.include_router(emoji_admin.router)
    app.include_router(community_directory.router)
    app.include_router(community_pages.router)
    app.include_router(community_pages.posting_router)
    app.include_router(community_flairs.router)
    app.include_router(community_reports.router)
    app.include_router(community_moderation.router)  # after: its /c/NAME/SECTION is generic
    app.include_router(migration_pages.router)
    # Each of the API's routers on its own (not one router holding the others: each level of
    # nesting costs every request another pass of FastAPI's matching over its routers). A NUL
    # in a path or query is refused for every route by kith.edge.Edge.
    for router in mastodon_api.routers():
        app.include_router(router)

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, exc: ClientDisconnect) -> Response:
        # The client hung up while its body was being read: nobody is left to answer, and
        # nothing was written. Not an error of ours (uvicorn would log a traceback).
        return Response(status_code=400)

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, exc: SignInRequired) -> Response:
        if _wants_html(request) and request.method == "GET":
            return RedirectResponse(f"/auth/sign_in?next={request.url.path}", status_code=303)
        return await _error_page(request, 401, exc.message)

    @app.exception_handler(KithError)
    async def _kith_error(request: Request, exc: KithError) -> Response:
        response = await _error_page(request, exc.status, exc.message)
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return await _error_page(request, 422, f"Invalid {where}: {first.get('msg', 'bad value')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return await _error_page(request, exc.status_code, str(exc.detail))

    # The inboxes are answered by a plain ASGI layer inside Edge (see inbox_routes).
    app.add_middleware(federation_inbox.InboxEndpoints)
    app.add_middleware(Edge, error_page=_error_page, limiter=ApiRateLimiter())
    index_routers(app)  # every route is registered: routers may now skip paths not theirs
    return app


def create_served_app() -> FastAPI:
    """The app as `kith serve` runs it in each of its processes (uvicorn's factory)."""
    return create_app(settle_heap=True)
