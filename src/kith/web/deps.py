"""What every web handler needs: a database session, the signed-in person, CSRF checks."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import anyio
from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts import service as accounts
from kith.accounts.models import Account, User
from kith.errors import Forbidden, KithError, ValidationFailed
from kith.runtime import Runtime

SESSION_COOKIE = "kith_session"
CSRF_COOKIE = "kith_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


def runtime(request: Request) -> Runtime:
    return request.app.state.runtime


REQUEST_SESSIONS = "kith.sessions"  # in an ASGI scope: the sessions `get_db` opened for it


async def get_db(request: Request) -> AsyncSession:
    """A session for this request, closed (and rolled back if unfinished) once the request is
    answered: `kith.edge.Edge`, around every request, closes what `get_db` opened. A plain
    coroutine, not a generator: FastAPI ends a generator dependency through an exit stack,
    an async context manager and a shielded cancel scope, ~210 of a public timeline
    request's ~4,700 Python calls (bench/profile_api.py)."""
    opened = request.scope.get(REQUEST_SESSIONS)
    if opened is None:
        raise RuntimeError("get_db outside kith.edge.Edge: nothing would close the session")
    db = runtime(request).sessions()
    opened.append(db)
    return db


async def close_sessions(opened: list[AsyncSession]) -> None:
    """Close the sessions a request opened (a cancelled request's too: its connections go
    back to the pool), each even if another fails to; the first failure is raised."""
    if not opened:
        return
    failure: BaseException | None = None
    with anyio.CancelScope(shield=True):
        for db in opened:
            try:
                await db.close()
            except Exception as error:
                failure = failure or error
    if failure is not None:
        raise failure


@dataclass
class Current:
    """The signed-in person of this request (or nobody)."""

    user: User | None = None
    session_token: str | None = None
    awaiting_second_factor: bool = False

    @property
    def account(self) -> Account | None:
        return self.user.account if self.user else None

    @property
    def viewer(self) -> policy.Viewer:
        if self.user is None:
            return policy.ANONYMOUS
        return policy.Viewer(self.user.account_id, self.user.is_admin)


async def current(request: Request, db: AsyncSession = Depends(get_db)) -> Current:
    """Who is signed in, from the session cookie (a half-finished 2FA sign-in is nobody yet)."""
    cached = getattr(request.state, "current", None)
    if cached is not None:
        return cached
    result = await current_for_token(db, request.cookies.get(SESSION_COOKIE, ""))
    request.state.current = result
    return result


async def current_for_token(db: AsyncSession, token: str) -> Current:
    """Who a session cookie's token signs in (nobody: `Current()`); also asked again by open
    live streams when that person's access changed (web.stream)."""
    found = await accounts.session_and_user(db, token) if token else None
    if found is not None:
        sess, user = found
        if user.account.suspended_at is None:
            if sess.awaiting_second_factor:
                return Current(session_token=token, awaiting_second_factor=True)
            return Current(user=user, session_token=token)
    return Current()


class SignInRequired(KithError):
    """The page needs a signed-in person; the edge redirects to the sign-in page."""

    status = 401

    def __init__(self) -> None:
        super().__init__("Sign in first.")


async def signed_in(me: Current = Depends(current)) -> Current:
    """Like `current`, but sends anonymous visitors to the sign-in page."""
    if me.user is None:
        raise SignInRequired()
    return me


async def admin_only(me: Current = Depends(signed_in)) -> Current:
    if not (me.user and me.user.is_admin):
        raise Forbidden("Only admins may do this.")
    return me


def _csrf_basis(request: Request) -> str:
    return request.cookies.get(SESSION_COOKIE) or request.cookies.get(CSRF_COOKIE) or ""


def csrf_token_for(request: Request) -> str:
    """The token forms must echo: an HMAC of the session (or, before sign-in, of a random
    cookie) under the instance secret, so an attacker can neither read nor forge it."""
    basis = _csrf_basis(request) or request.state.__dict__.setdefault(
        "new_csrf_cookie", secrets.token_urlsafe(24)
    )
    secret = runtime(request).settings.effective_secret_key().encode()
    return hmac.new(secret, b"csrf:" + basis.encode(), hashlib.sha256).hexdigest()


class CsrfFailed(KithError):
    status = 403

    def __init__(self) -> None:
        super().__init__(
            "This form has expired or did not come from this site. Reload the page and try again."
        )


async def check_csrf(request: Request) -> None:
    """Refuse unsafe requests whose CSRF token (form field or header) doesn't match."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    sent = request.headers.get(CSRF_HEADER, "")
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        # PostgreSQL can't store NUL in text: refuse it here, for every form, with a clear error.
        for name, value in form.multi_items():
            if isinstance(value, str) and "\x00" in value:
                raise ValidationFailed("Text must not contain NUL characters.", field=name)
        if not sent:
            value = form.get(CSRF_FIELD, "")
            sent = value if isinstance(value, str) else ""
    if not _csrf_basis(request) or not hmac.compare_digest(sent, csrf_token_for(request)):
        raise CsrfFailed()


def declares_body_over(request: Request, limit: int) -> bool:
    """Does the request announce (Content-Length) a body of more than `limit` bytes? The
    upload forms' dependencies ask before anything parses the body (the CSRF check reads
    the form), and refuse it with their own error."""
    length = request.headers.get("content-length", "")
    return length.isdigit() and int(length) > limit


def client_ip(request: Request) -> str:
    """The client address (for rate limiting only; never stored)."""
    return request.client.host if request.client else "unknown"
