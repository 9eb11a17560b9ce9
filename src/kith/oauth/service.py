"""OAuth 2 rules (RFC 6749, PKCE RFC 7636, RFC 9700 practice): apps, codes, tokens, revocation.

No password grant. Codes are single use, short-lived, bound to the redirect URI and (when the
client sent one) a S256 PKCE challenge; replaying a code revokes the tokens it minted.
Secrets, codes and tokens are stored as SHA-256 hashes."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Select, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from kith import db_plans
from kith.accounts import access
from kith.accounts.models import Account, User
from kith.db import utcnow
from kith.errors import KithError, NotFound, ValidationFailed
from kith.oauth.models import OAuthApp, OAuthCode, OAuthToken
from kith.oauth.scopes import format_scopes, parse_scopes

OOB = "urn:ietf:wg:oauth:2.0:oob"
CODE_LIFETIME = timedelta(minutes=10)
MAX_REDIRECT_URIS = 10


class OAuthError(KithError):
    """An OAuth protocol error, answered as {"error": code, "error_description": message}."""

    status = 400

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _check_redirect_uri(uri: str) -> str:
    uri = uri.strip()
    if uri == OOB:
        return uri
    parts = urlsplit(uri)
    if not parts.scheme or parts.fragment or len(uri) > 2000:
        raise ValidationFailed(
            "Each redirect URI must be absolute, without a fragment.", field="redirect_uris"
        )
    if parts.scheme in ("javascript", "data", "vbscript", "file"):
        raise ValidationFailed("This redirect URI scheme is not allowed.", field="redirect_uris")
    if parts.scheme == "http" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
        # RFC 9700: plain http only for loopback; native apps use custom schemes.
        raise ValidationFailed(
            "http redirect URIs are allowed only on loopback.", field="redirect_uris"
        )
    return uri


@dataclass(frozen=True)
class NewApp:
    """A registered app and its secret (shown once)."""

    app: OAuthApp
    client_secret: str


async def register_app(
    db: AsyncSession,
    *,
    name: str,
    redirect_uris: str | list[str],
    scopes: str | None = None,
    website: str | None = None,
    owner_account_id: int | None = None,
) -> NewApp:
    """Register a client application (POST /api/v1/apps)."""
    name = (name or "").strip()
    if not 1 <= len(name) <= 200:
        raise ValidationFailed("client_name must be 1–200 characters.", field="client_name")
    uris = redirect_uris if isinstance(redirect_uris, list) else redirect_uris.split()
    uris = [_check_redirect_uri(u) for u in uris if u.strip()]
    if not uris or len(uris) > MAX_REDIRECT_URIS:
        raise ValidationFailed("Give 1–10 redirect URIs.", field="redirect_uris")
    granted = parse_scopes(scopes)
    if website and (len(website) > 500 or urlsplit(website).scheme not in ("http", "https")):
        website = None
    secret = secrets.token_urlsafe(32)
    app = OAuthApp(
        name=name,
        website=website,
        client_id=secrets.token_urlsafe(24),
        client_secret_hash=_hash(secret),
        redirect_uris=uris,
        scopes=format_scopes(granted),
        owner_account_id=owner_account_id,
    )
    db.add(app)
    await db.commit()
    return NewApp(app, secret)


async def app_by_client_id(db: AsyncSession, client_id: str) -> OAuthApp | None:
    if not client_id or len(client_id) > 100:
        return None
    return await db.scalar(select(OAuthApp).where(OAuthApp.client_id == client_id))


async def authenticate_client(db: AsyncSession, client_id: str, client_secret: str) -> OAuthApp:
    """The app whose id and secret match, else OAuthError invalid_client (401)."""
    app = await app_by_client_id(db, client_id)
    if app is None or not hmac.compare_digest(app.client_secret_hash, _hash(client_secret or "")):
        raise OAuthError("invalid_client", "Client authentication failed.", 401)
    return app


@dataclass(frozen=True)
class AuthorizationRequest:
    """A checked /oauth/authorize request, ready for the consent page."""

    app: OAuthApp
    redirect_uri: str
    scopes: frozenset[str]
    state: str | None
    code_challenge: str | None
    code_challenge_method: str | None


async def check_authorization_request(
    db: AsyncSession,
    *,
    client_id: str,
    redirect_uri: str,
    response_type: str,
    scope: str | None,
    state: str | None,
    code_challenge: str | None,
    code_challenge_method: str | None,
) -> AuthorizationRequest:
    """Validate an authorization request. Errors about the client or redirect URI must be shown
    to the user (never redirect to an unverified URI); the rest can be redirected."""
    app = await app_by_client_id(db, client_id)
    if app is None:
        raise OAuthError("invalid_client", "Unknown application.")
    if redirect_uri not in app.redirect_uris:  # exact match, as RFC 9700 requires
        raise OAuthError("invalid_request", "The redirect URI is not registered for this app.")
    if response_type != "code":
        raise OAuthError(
            "unsupported_response_type", "Only the authorization code flow is supported."
        )
    requested = parse_scopes(scope, default=app.scopes)
    allowed = parse_scopes(app.scopes)
    from kith.oauth.scopes import satisfies

    if not all(satisfies(allowed, s) or s in allowed for s in requested):
        raise OAuthError("invalid_scope", "The app did not register these scopes.")
    if code_challenge is not None:
        if (code_challenge_method or "plain") != "S256":
            raise OAuthError("invalid_request", "Only the S256 PKCE method is supported.")
        if not 43 <= len(code_challenge) <= 128:
            raise OAuthError("invalid_request", "Malformed PKCE code challenge.")
    return AuthorizationRequest(
        app, redirect_uri, requested, state, code_challenge, "S256" if code_challenge else None
    )


async def issue_code(db: AsyncSession, request: AuthorizationRequest, account: Account) -> str:
    """The person approved: mint a single-use code."""
    code = secrets.token_urlsafe(32)
    db.add(
        OAuthCode(
            code_hash=_hash(code),
            app_id=request.app.id,
            account_id=account.id,
            redirect_uri=request.redirect_uri,
            scopes=format_scopes(request.scopes),
            code_challenge=request.code_challenge,
            code_challenge_method=request.code_challenge_method,
            expires_at=utcnow() + CODE_LIFETIME,
        )
    )
    await db.commit()
    return code


@dataclass(frozen=True)
class IssuedToken:
    """What /oauth/token answers."""

    access_token: str
    refresh_token: str | None
    scope: str
    created_at: int


async def _mint(
    db: AsyncSession, app: OAuthApp, account_id: int | None, scopes: str, code_id: int | None = None
) -> IssuedToken:
    access = secrets.token_urlsafe(32)
    refresh = secrets.token_urlsafe(32) if account_id is not None else None
    now = utcnow()
    db.add(
        OAuthToken(
            token_hash=_hash(access),
            refresh_hash=_hash(refresh) if refresh else None,
            app_id=app.id,
            account_id=account_id,
            scopes=scopes,
            code_id=code_id,
            created_at=now,
        )
    )
    await db.commit()
    return IssuedToken(access, refresh, scopes, int(now.timestamp()))


def _pkce_ok(challenge: str, verifier: str) -> bool:
    digest = hashlib.sha256(verifier.encode()).digest()
    computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return hmac.compare_digest(computed, challenge)


async def exchange_code(
    db: AsyncSession, app: OAuthApp, *, code: str, redirect_uri: str, code_verifier: str | None
) -> IssuedToken:
    """authorization_code grant. A replayed code revokes what it minted (RFC 6749 §4.1.2)."""
    row = await db.scalar(select(OAuthCode).where(OAuthCode.code_hash == _hash(code or "")))
    if row is None or row.app_id != app.id:
        raise OAuthError("invalid_grant", "Unknown authorization code.")
    if row.used_at is not None:
        revoked = await db.execute(
            update(OAuthToken)
            .where(OAuthToken.code_id == row.id)
            .values(revoked_at=utcnow())
            .returning(OAuthToken.id, OAuthToken.account_id)
        )
        ended = [(t, a) for t, a in revoked.all()]
        await db.commit()
        await access.tokens_ended(db, ended)
        raise OAuthError("invalid_grant", "This authorization code was already used.")
    if row.expires_at <= utcnow():
        raise OAuthError("invalid_grant", "This authorization code has expired.")
    if row.redirect_uri != redirect_uri:
        raise OAuthError("invalid_grant", "redirect_uri does not match the authorization request.")
    if row.code_challenge is not None:
        if (
            not code_verifier
            or not 43 <= len(code_verifier) <= 128
            or not _pkce_ok(row.code_challenge, code_verifier)
        ):
            raise OAuthError("invalid_grant", "PKCE verification failed.")
    row.used_at = utcnow()
    return await _mint(db, app, row.account_id, row.scopes, code_id=row.id)


async def client_credentials(db: AsyncSession, app: OAuthApp, scope: str | None) -> IssuedToken:
    """client_credentials grant: a token acting as the app (no user)."""
    requested = parse_scopes(scope, default="read")
    if not requested <= parse_scopes(app.scopes) | {"read"}:
        raise OAuthError("invalid_scope", "The app did not register these scopes.")
    return await _mint(db, app, None, format_scopes(requested))


async def refresh(db: AsyncSession, app: OAuthApp, refresh_token: str) -> IssuedToken:
    """refresh_token grant: rotate — the old token pair stops working."""
    row = await db.scalar(
        select(OAuthToken).where(OAuthToken.refresh_hash == _hash(refresh_token or ""))
    )
    if row is None or row.app_id != app.id or row.revoked_at is not None:
        raise OAuthError("invalid_grant", "Unknown refresh token.")
    row.revoked_at = utcnow()
    issued = await _mint(db, app, row.account_id, row.scopes, code_id=row.code_id)
    await access.tokens_ended(db, [(row.id, row.account_id)])  # streams on the old token
    return issued


async def revoke(db: AsyncSession, app: OAuthApp, token: str) -> None:
    """Revoke an access or refresh token of this app (unknown tokens: no error, RFC 7009)."""
    h = _hash(token or "")
    revoked = await db.execute(
        update(OAuthToken)
        .where(
            OAuthToken.app_id == app.id,
            (OAuthToken.token_hash == h) | (OAuthToken.refresh_hash == h),
        )
        .values(revoked_at=utcnow())
        .returning(OAuthToken.id, OAuthToken.account_id)
    )
    ended = [(t, a) for t, a in revoked.all()]
    await db.commit()
    await access.tokens_ended(db, ended)  # open streams on it close (kith.accounts.access)


class TokenInfo:
    """A live access token: its scopes and the viewer it speaks for, read at once, and its
    row, app and user (None: client_credentials) as the session's entities, made when first
    asked for: most requests need only the viewer and the scopes."""

    def __init__(
        self,
        db: AsyncSession,
        row: Sequence[Any],
        *,
        token_id: int,
        scopes: frozenset[str],
        account_id: int | None,
        is_admin: bool,
    ) -> None:
        self._db = db
        self._row = row  # a row of `_token_statement`: every column of _TOKEN_TABLES
        self.token_id = token_id
        self.scopes = scopes
        self.account_id = account_id
        self.is_admin = is_admin

    @functools.cached_property
    def token(self) -> OAuthToken:
        return db_plans.loaded(self._db, OAuthToken, self._part(0))

    @functools.cached_property
    def app(self) -> OAuthApp:
        return db_plans.loaded(self._db, OAuthApp, self._part(1))

    @functools.cached_property
    def user(self) -> User | None:
        if self.account_id is None:
            return None
        user = db_plans.loaded(self._db, User, self._part(2))
        if "account" not in user.__dict__:  # (a user the session held already has it)
            set_committed_value(user, "account", db_plans.loaded(self._db, Account, self._part(3)))
        return user

    def _part(self, table: int) -> Sequence[Any]:
        """The columns of _TOKEN_TABLES[table] in the row."""
        return self._row[_token_row_slices()[table]]


async def token_info(db: AsyncSession, access_token: str) -> TokenInfo | None:
    """The live token for a bearer value, or None (unknown, revoked, expired, user gone)."""
    if not access_token or len(access_token) > 200:
        return None
    return await _live_token(db, _token_statement(by_id=False), _hash(access_token))


async def token_info_by_id(db: AsyncSession, token_id: int) -> TokenInfo | None:
    """`token_info` for a token already known by its row id (an open stream checking that
    its token is still live)."""
    return await _live_token(db, _token_statement(by_id=True), token_id)


_TOKEN_TABLES = (OAuthToken, OAuthApp, User, Account)


@functools.cache
def _token_statement(*, by_id: bool) -> Select[tuple[object, ...]]:
    """One query for the token (by hash, or by row id), its app, its user and the user's
    account, every column of each (`db_plans.loaded` makes them entities): every API request
    starts here, so it is built once and read past the session's execution path."""
    key = OAuthToken.id if by_id else OAuthToken.token_hash
    return (
        select(*(c for model in _TOKEN_TABLES for c in model.__table__.columns))
        .select_from(OAuthToken)
        .join(OAuthApp, OAuthApp.id == OAuthToken.app_id)
        .outerjoin(User, User.account_id == OAuthToken.account_id)
        .outerjoin(Account, Account.id == User.account_id)
        .where(key == bindparam("key"))
    )


@functools.cache
def _token_row_slices() -> list[slice]:
    """Where each of _TOKEN_TABLES' columns lie in a row of `_token_statement`."""
    slices, start = [], 0
    for model in _TOKEN_TABLES:
        width = len(model.__table__.columns)
        slices.append(slice(start, start + width))
        start += width
    return slices


@functools.cache
def _judged_columns() -> tuple[int, ...]:
    """Where, in a row of `_token_statement`, lie the columns a token is judged and known by:
    the token's id, revoked_at, expires_at, account_id and scopes, its user's id, state and
    is_admin, and the account's suspended_at."""
    starts = [s.start for s in _token_row_slices()]

    def at(table: int, key: str) -> int:
        return starts[table] + db_plans.column_keys(_TOKEN_TABLES[table]).index(key)

    return (
        at(0, "id"),
        at(0, "revoked_at"),
        at(0, "expires_at"),
        at(0, "account_id"),
        at(0, "scopes"),
        at(2, "id"),
        at(2, "state"),
        at(2, "is_admin"),
        at(3, "suspended_at"),
    )


async def _live_token(
    db: AsyncSession, statement: Select[tuple[object, ...]], key: str | int
) -> TokenInfo | None:
    found = await db_plans.read(db, statement, {"key": key})
    if not found:
        return None
    # Judged on the row just read (the session may hold older copies of these entities).
    row = found[0]
    token_id, revoked_at, expires_at, account_id, scopes, user_id, state, is_admin, suspended = (
        row[i] for i in _judged_columns()
    )
    if revoked_at is not None or (expires_at and expires_at <= utcnow()):
        return None
    if account_id is not None and (user_id is None or suspended is not None or state != "active"):
        return None  # the person is gone, suspended or not (yet) active
    return TokenInfo(
        db,
        row,
        token_id=token_id,
        scopes=frozenset(scopes.split()),
        account_id=account_id,
        is_admin=bool(is_admin) if account_id is not None else False,
    )


async def authorized_apps(db: AsyncSession, account_id: int) -> list[tuple[OAuthApp, OAuthToken]]:
    """Apps holding a live token of this person, newest first (settings page)."""
    rows = await db.execute(
        select(OAuthApp, OAuthToken)
        .join(OAuthToken, OAuthToken.app_id == OAuthApp.id)
        .where(OAuthToken.account_id == account_id, OAuthToken.revoked_at.is_(None))
        .order_by(OAuthToken.id.desc())
    )
    return [(a, t) for a, t in rows.all()]


async def revoke_app_for(db: AsyncSession, account_id: int, app_id: int) -> None:
    """Sign an app out of this person's account (every token it holds)."""
    result = await db.execute(
        update(OAuthToken)
        .where(
            OAuthToken.account_id == account_id,
            OAuthToken.app_id == app_id,
            OAuthToken.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound("No such authorized app.")
    await db.commit()
    await access.access_changed(db, [account_id])


async def create_personal_token(
    db: AsyncSession, account: Account, name: str, scopes: str
) -> IssuedToken:
    """The Development page / `kith token create`: an app owned by the person, and a token."""
    new = await register_app(
        db, name=name, redirect_uris=OOB, scopes=scopes, owner_account_id=account.id
    )
    return await _mint(db, new.app, account.id, new.app.scopes)
