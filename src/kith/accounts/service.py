"""Sign-up, sign-in, sessions and instance settings: the rules of the accounts domain."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts import access, email_tokens, passwords
from kith.accounts.models import (
    Account,
    InstanceSettings,
    Invite,
    RegistrationMode,
    User,
    UserSession,
    UserState,
)
from kith.accounts.throttle import SlidingWindow
from kith.communities.models import Community
from kith.db import utcnow
from kith.errors import NotFound, RateLimited, ValidationFailed
from kith.moderation import sign_ups
from kith.notifications import service as notifications

USERNAME_RE = re.compile(r"^[a-z0-9_]{1,30}$")
EMAIL_RE = re.compile(r"^[^@\s<>\"']{1,64}@[^@\s<>\"']+\.[^@\s<>\"']{2,}$")
SESSION_LIFETIME = timedelta(days=30)
# A half-finished sign-in (password right, second factor due) is only good for a few minutes.
SECOND_FACTOR_WINDOW = timedelta(minutes=10)

# Names that would impersonate the instance or collide with routes and protocol endpoints.
RESERVED_USERNAMES = frozenset(
    """admin administrator root system support help moderator moderators mod staff kith
    instance official security abuse postmaster webmaster hostmaster noreply no_reply mail
    www api about settings login logout signup signin register auth oauth inbox outbox
    users user accounts account notifications search tags tag explore public local home
    static media well_known nodeinfo actor relay everyone all null undefined""".split()
)


def normalize_username(name: str) -> str:
    return name.strip().lstrip("@").lower()


def check_username(name: str) -> str:
    """Return the normalized username or raise ValidationFailed(field="username")."""
    key = normalize_username(name)
    if not USERNAME_RE.fullmatch(key):
        raise ValidationFailed(
            "Use 1–30 characters: letters a–z, digits and underscores.", field="username"
        )
    if key in RESERVED_USERNAMES:
        raise ValidationFailed("This username is reserved.", field="username")
    return key


def check_email(email: str) -> str:
    email = email.strip()
    if len(email) > 320 or not EMAIL_RE.fullmatch(email):
        raise ValidationFailed("Enter a valid email address.", field="email")
    return email


async def get_instance_settings(db: AsyncSession) -> InstanceSettings:
    """The instance's admin-editable settings (the row is created on first use)."""
    row = await db.get(InstanceSettings, 1)
    if row is None:
        row = InstanceSettings(id=1, name="Kith", description="", rules=[])
        db.add(row)
        try:
            await db.flush()
        except IntegrityError:  # created by a concurrent request
            await db.rollback()
            row = await db.get(InstanceSettings, 1)
            assert row is not None
    return row


async def find_local_account(db: AsyncSession, username: str) -> Account | None:
    """The local account with this username (case-insensitive), or None."""
    return await db.scalar(
        select(Account).where(
            Account.username_key == normalize_username(username), Account.domain == ""
        )
    )


async def find_account(db: AsyncSession, acct: str) -> Account | None:
    """The account an `acct` names: `name` (local), `name@our.domain` (local too) or
    `name@host` (a remote account already known here; nothing is fetched)."""
    from kith.runtime import runtime_of

    name, _, host = acct.strip().lstrip("@").partition("@")
    host = host.lower()
    if not host or host == runtime_of(db).settings.domain.lower():
        return await find_local_account(db, name)
    return await db.scalar(
        select(Account).where(Account.username_key == name.casefold(), Account.domain == host)
    )


async def get_user(db: AsyncSession, user_id: int) -> User | None:
    return await db.get(User, user_id)


async def user_for_account(db: AsyncSession, account_id: int) -> User | None:
    return await db.scalar(select(User).where(User.account_id == account_id))


@dataclass(frozen=True)
class Registration:
    """What sign-up produced."""

    user: User
    account: Account
    needs_approval: bool


async def _check_invite(db: AsyncSession, code: str | None) -> Invite:
    invite = None
    if code:
        invite = await db.scalar(select(Invite).where(Invite.code == code))
    now = utcnow()
    if (
        invite is None
        or (invite.expires_at is not None and invite.expires_at <= now)
        or (invite.max_uses is not None and invite.uses >= invite.max_uses)
    ):
        raise ValidationFailed("This invite link is not valid any more.", field="invite")
    return invite


async def register(
    db: AsyncSession,
    *,
    username: str,
    email: str,
    password: str,
    invite_code: str | None = None,
    reason: str = "",
    admin: bool | None = None,
    bypass_mode: bool = False,
) -> Registration:
    """Create a local account and its login, following the instance's registration mode.

    The first account of an instance becomes its admin. `bypass_mode` is for operators
    (CLI, demo): it ignores the registration mode, and the operator vouches for the address, so
    it counts as confirmed. Everyone else is mailed a confirmation link, queued in the same
    transaction. Commits, or raises with nothing written."""
    key = check_username(username)
    email = check_email(email)
    passwords.check_new_password(password, username=key, email=email)
    instance = await get_instance_settings(db)
    invite: Invite | None = None
    needs_approval = False
    if not bypass_mode:
        mode = instance.registration_mode
        if mode == RegistrationMode.CLOSED:
            raise ValidationFailed("Sign-up is closed on this instance.", field="username")
        if mode == RegistrationMode.INVITE or invite_code:
            invite = await _check_invite(db, invite_code)
        elif mode == RegistrationMode.APPROVAL:
            needs_approval = True
    # Community handles share the local name space (`@name@domain`) with usernames.
    if await find_local_account(db, key) is not None or await db.scalar(
        select(Community.id).where(Community.handle_key == key, Community.domain == "")
    ):
        raise ValidationFailed("This username is taken.", field="username")
    if await db.scalar(select(User.id).where(User.email_key == email.lower())):
        raise ValidationFailed("An account with this email exists.", field="email")
    is_first = not await db.scalar(select(func.count()).select_from(User))
    account = Account(username=key, username_key=key, domain="", display_name="")
    db.add(account)
    await db.flush()
    user = User(
        account_id=account.id,
        account=account,
        email=email,
        email_key=email.lower(),
        password_hash=passwords.hash_password(password),
        is_admin=bool(admin) if admin is not None else is_first,
        state=UserState.PENDING if needs_approval and not is_first else UserState.ACTIVE,
        signup_reason=reason[:1000],
        invite_id=invite.id if invite else None,
        email_confirmed_at=utcnow() if bypass_mode else None,
    )
    db.add(user)
    if invite is not None:
        await db.execute(update(Invite).where(Invite.id == invite.id).values(uses=Invite.uses + 1))
    try:
        if not bypass_mode:
            await db.flush()
            await email_tokens.queue_confirmation_mail(db, user)
            if user.state == UserState.PENDING:
                await sign_ups.notify_admins_of_sign_up(db, account.id)
        await db.commit()
    except IntegrityError as exc:  # two sign-ups raced for the same name or address
        await db.rollback()
        field = "email" if "email" in str(exc.orig).lower() else "username"
        raise ValidationFailed(
            "This username is taken."
            if field == "username"
            else "An account with this email exists.",
            field=field,
        ) from None
    await notifications.publish_notifications(db)
    return Registration(user=user, account=account, needs_approval=user.state == UserState.PENDING)


# --- sign-in ----------------------------------------------------------------------------


class LoginThrottle:
    """Mastodon's figures: 25 attempts per 5 minutes per IP, and a tighter cap per account."""

    def __init__(self, ip_limit: int = 25, account_limit: int = 10, window: float = 300) -> None:
        self.by_ip = SlidingWindow(ip_limit, window)
        self.by_account = SlidingWindow(account_limit, window)

    def check(self, ip: str, login: str) -> None:
        wait = max(self.by_ip.retry_after(ip), self.by_account.retry_after(login.lower()))
        if wait:
            raise RateLimited("Too many sign-in attempts. Try again in a few minutes.", wait)

    def failed(self, ip: str, login: str) -> None:
        self.by_ip.hit(ip)
        self.by_account.hit(login.lower())


async def authenticate(
    db: AsyncSession, throttle: LoginThrottle, *, login: str, password: str, ip: str
) -> User:
    """The user whose username or email and password match; throttled before hashing so a
    flood cannot pin the CPU. Raises ValidationFailed(field="login") on any mismatch."""
    login = login.strip()[:320]
    throttle.check(ip, login)
    if "@" in login.lstrip("@"):
        user = await db.scalar(select(User).where(User.email_key == login.lower()))
    else:
        user = await db.scalar(
            select(User)
            .join(Account)
            .where(Account.username_key == normalize_username(login), Account.domain == "")
        )
    ok = passwords.verify_password(user.password_hash if user else passwords.DUMMY_HASH, password)
    if user is None or not ok:
        throttle.failed(ip, login)
        raise ValidationFailed("Wrong username or password.", field="login")
    if user.account.suspended_at is not None:
        raise ValidationFailed("This account is suspended.", field="login")
    if user.state == UserState.PENDING:
        raise ValidationFailed("Your sign-up is waiting for a moderator's approval.", field="login")
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
        await db.commit()
    return user


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def start_session(
    db: AsyncSession, user: User, *, user_agent: str = "", second_factor_due: bool = False
) -> str:
    """Create a session and return its secret token (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    db.add(
        UserSession(
            token_hash=_token_hash(token),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + (SECOND_FACTOR_WINDOW if second_factor_due else SESSION_LIFETIME),
            awaiting_second_factor=second_factor_due,
            user_agent=user_agent[:200],
        )
    )
    await db.commit()
    return token


async def session_for_token(db: AsyncSession, token: str) -> UserSession | None:
    """The live session for a cookie token, or None."""
    if not token or len(token) > 100:
        return None
    sess = await db.scalar(select(UserSession).where(UserSession.token_hash == _token_hash(token)))
    if sess is None or sess.expires_at <= utcnow():
        return None
    return sess


async def session_and_user(db: AsyncSession, token: str) -> tuple[UserSession, User] | None:
    """The live session for a cookie token and its user (with the account), in one query."""
    if not token or len(token) > 100:
        return None
    row = (
        await db.execute(
            select(UserSession, User)
            .join(User, User.id == UserSession.user_id)
            .where(UserSession.token_hash == _token_hash(token))
        )
    ).first()
    if row is None or row[0].expires_at <= utcnow():
        return None
    return row[0], row[1]


async def end_session(db: AsyncSession, token: str) -> None:
    """Sign out: forget the session (its open live streams close: kith.accounts.access)."""
    ended = await db.scalars(
        delete(UserSession)
        .where(UserSession.token_hash == _token_hash(token))
        .returning(UserSession.user_id)
    )
    user_ids = list(ended)
    await db.commit()
    await _sessions_ended(db, user_ids)


async def end_all_sessions(db: AsyncSession, user_id: int) -> None:
    """Sign out everywhere (after a password change or suspension)."""
    await db.execute(delete(UserSession).where(UserSession.user_id == user_id))
    await db.commit()
    await _sessions_ended(db, [user_id])


async def _sessions_ended(db: AsyncSession, user_ids: list[int]) -> None:
    """After a commit that ended these users' sessions: their live streams check again."""
    if user_ids:
        found = await db.scalars(select(User.account_id).where(User.id.in_(user_ids)))
        await access.access_changed(db, list(found))


async def end_other_sessions(db: AsyncSession, user_id: int, keep_token: str | None) -> None:
    """Sign out every browser of this user but the one holding `keep_token` (not committed)."""
    stmt = delete(UserSession).where(UserSession.user_id == user_id)
    if keep_token:
        stmt = stmt.where(UserSession.token_hash != _token_hash(keep_token))
    await db.execute(stmt)


async def finish_second_factor(db: AsyncSession, half_token: str, *, user_agent: str = "") -> str:
    """Turn a half-finished sign-in into a full session under a new token (the old one dies,
    so a token seen before the second factor is worth nothing after it). Commits."""
    sess = await session_for_token(db, half_token)
    if sess is None or not sess.awaiting_second_factor:
        raise ValidationFailed("Your sign-in expired. Sign in again.", field="code")
    user = await db.get(User, sess.user_id)
    assert user is not None
    await db.delete(sess)
    return await start_session(db, user, user_agent=user_agent)


class EmailNotConfirmed(ValidationFailed):
    """This instance lets only people with a confirmed address post."""

    status = 403
    field = "status"  # the composer shows it next to the text, which it keeps

    def __init__(self) -> None:
        super().__init__(
            "Confirm your email address before posting: open the link we mailed you, "
            "or ask for a new one in Settings → Account."
        )


async def require_local_account(db: AsyncSession, username: str) -> Account:
    account = await find_local_account(db, username)
    if account is None:
        raise NotFound("No such account")
    return account


async def require_confirmed(db: AsyncSession, user: User) -> None:
    """Refuse to let an unconfirmed address post when the instance demands confirmation.

    Called by every path that publishes on a person's behalf (the web composer today)."""
    if user.email_confirmed_at is not None:
        return
    if (await get_instance_settings(db)).require_email_confirmation:
        raise EmailNotConfirmed()
