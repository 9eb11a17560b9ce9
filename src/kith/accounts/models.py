"""Tables of the accounts domain: Account (identity), User (local login), sessions, tokens."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kith.db import Base, new_id, utcnow


class RegistrationMode(enum.StrEnum):
    """Who may sign up on this instance."""

    OPEN = "open"
    APPROVAL = "approval"
    INVITE = "invite"
    CLOSED = "closed"


class Account(Base):
    """A person's public identity: profile and switches. Local accounts have a User; remote
    accounts (federation) have a `domain`. Local usernames are stored lowercase."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("username_key", "domain"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(64))
    username_key: Mapped[str] = mapped_column(String(64))  # casefolded, for unique lookups
    domain: Mapped[str] = mapped_column(String(255), default="")  # "" for local accounts
    display_name: Mapped[str] = mapped_column(String(100), default="")
    bio_source: Mapped[str] = mapped_column(Text, default="")
    bio_html: Mapped[str] = mapped_column(Text, default="")
    pronouns: Mapped[str] = mapped_column(String(40), default="")
    fields: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)  # [{name, value}] ≤ 4
    avatar_path: Mapped[str | None] = mapped_column(String(255), default=None)
    header_path: Mapped[str | None] = mapped_column(String(255), default=None)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    discoverable: Mapped[bool] = mapped_column(Boolean, default=True)
    hide_network: Mapped[bool] = mapped_column(Boolean, default=False)
    suspended_at: Mapped[datetime | None] = mapped_column(default=None)
    silenced_at: Mapped[datetime | None] = mapped_column(default=None)
    # When the account was deleted (accounts.deletion): the row stays for good as a tombstone
    # (the username is never given out again; peers cached its actor id and key), stamped
    # suspended at the same moment so every suspension rule hides it at once.
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    uri: Mapped[str | None] = mapped_column(String(512), default=None, unique=True)
    # Account migration (ActivityPub `alsoKnownAs` / `movedTo`): the actor URIs this account
    # says it also is, and the account it moved to (federation.moves).
    also_known_as: Mapped[list[str]] = mapped_column(JSON, default=list)
    moved_to_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None
    )
    # Bumped by a database trigger (migration 0004) on every change of a column the Account
    # entity shows: cached entities are keyed by it (mastodon_api/entity_cache.py).
    render_rev: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    user: Mapped[User | None] = relationship(back_populates="account", uselist=False, lazy="raise")

    @property
    def is_local(self) -> bool:
        return self.domain == ""

    @property
    def acct(self) -> str:
        """`name` for local accounts, `name@domain` for remote ones (Mastodon's acct)."""
        return self.username if self.is_local else f"{self.username}@{self.domain}"

    @property
    def name_to_show(self) -> str:
        return self.display_name or self.username


class AccountStats(Base):
    """What is shown with an account: how many posts (boosts included), followers and
    follows it has, and when it last posted. Kept by database triggers on `posts` and `follows`
    (migration 0003), so every way rows come and go (services, federation, cascades) counts,
    and showing 40 posts' authors never counts a popular account's followers again."""

    __tablename__ = "account_stats"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    statuses_count: Mapped[int] = mapped_column(Integer, default=0)
    followers_count: Mapped[int] = mapped_column(Integer, default=0)
    following_count: Mapped[int] = mapped_column(Integer, default=0)
    last_status_at: Mapped[datetime | None] = mapped_column(default=None)


class UserState(enum.StrEnum):
    """Where a local login is in its life."""

    ACTIVE = "active"
    PENDING = "pending"  # waiting for an admin's approval


class User(Base):
    """Local login credentials and private settings of an Account."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), unique=True
    )
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320), unique=True)  # lowercase
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default=UserState.ACTIVE)
    signup_reason: Mapped[str] = mapped_column(Text, default="")
    email_confirmed_at: Mapped[datetime | None] = mapped_column(default=None)
    totp_secret: Mapped[str | None] = mapped_column(String(64), default=None)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(default=None)
    # The last TOTP time step accepted: a code is refused unless its step is later (no replay).
    totp_last_step: Mapped[int | None] = mapped_column(default=None)
    notifications_read_id: Mapped[int] = mapped_column(default=0)
    invite_id: Mapped[int | None] = mapped_column(
        ForeignKey("invites.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    account: Mapped[Account] = relationship(back_populates="user", lazy="joined")


class UserSession(Base):
    """A signed-in browser. Only a hash of the cookie's token is stored."""

    __tablename__ = "user_sessions"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    # Half-signed-in: password was right, the TOTP code is still due.
    awaiting_second_factor: Mapped[bool] = mapped_column(Boolean, default=False)
    user_agent: Mapped[str] = mapped_column(String(200), default="")


class Invite(Base):
    """An invite link: lets people sign up when registration is invite-only."""

    __tablename__ = "invites"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    created_by_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    max_uses: Mapped[int | None] = mapped_column(Integer, default=None)
    uses: Mapped[int] = mapped_column(Integer, default=0)


class EmailToken(Base):
    """A one-time token mailed for confirming an address or resetting a password (hash only)."""

    __tablename__ = "email_tokens"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))  # "confirm" | "reset"
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class RecoveryCode(Base):
    """Single-use two-factor recovery codes (hashes)."""

    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(default=None)


class InstanceSettings(Base):
    """The admin-editable settings of the instance: a single row with id 1."""

    __tablename__ = "instance_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), default="Kith")
    description: Mapped[str] = mapped_column(Text, default="")
    rules: Mapped[list[str]] = mapped_column(JSON, default=list)
    registration_mode: Mapped[str] = mapped_column(String(16), default=RegistrationMode.OPEN)
    require_email_confirmation: Mapped[bool] = mapped_column(Boolean, default=False)
    # Who may start a community: "everyone" (any active local account) or "admins".
    community_creation: Mapped[str] = mapped_column(String(16), default="everyone")


Index("ix_accounts_display_name", Account.display_name)
