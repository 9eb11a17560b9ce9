"""Tables of the federation domain."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kith.db import Base, new_id, utcnow


class ActorKey(Base):
    """An actor's RSA key, by its URI (`key_id`). Local accounts have exactly one, created the
    first time it is needed (`federation.keys.local_key`) and holding the private half; remote
    actors' keys are public halves fetched and cached (`fetched_at`). The instance actor's key
    has no account (`account_id` NULL)."""

    __tablename__ = "actor_keys"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True, default=None
    )
    # A community's `Group` key (`federation.keys.community_key`): deleted with it.
    community_id: Mapped[int | None] = mapped_column(
        ForeignKey("communities.id", ondelete="CASCADE"), index=True, default=None
    )
    key_id: Mapped[str] = mapped_column(String(512), unique=True)
    public_key_pem: Mapped[str] = mapped_column(Text)
    private_key_pem: Mapped[str | None] = mapped_column(Text, default=None)  # local keys only
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    fetched_at: Mapped[datetime | None] = mapped_column(default=None)  # remote keys only


class RemoteActor(Base):
    """Where a remote account lives: its ActivityPub endpoints and the document they came
    from (kept raw beside the derived columns). One row per remote `Account`."""

    __tablename__ = "remote_actors"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), unique=True
    )
    actor_type: Mapped[str] = mapped_column(String(32), default="Person")
    inbox_url: Mapped[str] = mapped_column(String(1024))
    shared_inbox_url: Mapped[str | None] = mapped_column(String(1024), default=None)
    outbox_url: Mapped[str | None] = mapped_column(String(1024), default=None)
    followers_url: Mapped[str | None] = mapped_column(String(1024), default=None)
    following_url: Mapped[str | None] = mapped_column(String(1024), default=None)
    featured_url: Mapped[str | None] = mapped_column(String(1024), default=None)
    profile_url: Mapped[str | None] = mapped_column(String(1024), default=None)
    # The actor's avatar (`icon`) and header (`image`) on its server; the cached copies are
    # Account.avatar_path / header_path (federation.remote_media), fetched at images_fetched_at.
    avatar_url: Mapped[str | None] = mapped_column(String(1024), default=None)
    header_url: Mapped[str | None] = mapped_column(String(1024), default=None)
    images_fetched_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    document: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)


class InboxItem(Base):
    """An activity that arrived in an inbox with a valid signature, waiting to be (or
    already) processed by the `federation.inbox` job. `activity_id` is unique, so a second
    delivery of the same activity stores nothing."""

    __tablename__ = "inbox_items"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    activity_id: Mapped[str] = mapped_column(String(1024), unique=True)
    activity_type: Mapped[str] = mapped_column(String(64))
    actor_uri: Mapped[str] = mapped_column(String(1024))
    actor_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True, default=None
    )
    # The local account whose personal inbox received it (None: the shared inbox).
    recipient_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None
    )
    activity: Mapped[dict[str, object]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(default=None)
    outcome: Mapped[str] = mapped_column(String(500), default="")


class OutboundActivity(Base):
    """An activity this instance sends, stored once however many inboxes it goes to; each
    `federation.deliver` job names it and one inbox. `actor_account_id` NULL = the instance
    actor signs. Rows older than any delivery can live are forgotten by the clean-up job."""

    __tablename__ = "outbound_activities"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    activity_id: Mapped[str] = mapped_column(String(1024), index=True)
    actor_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True, default=None
    )
    # Set when a community's `Group` sends it (an Announce, an Accept of a join): it signs
    # with the community's key (`federation.groups`), not an account's.
    community_id: Mapped[int | None] = mapped_column(
        ForeignKey("communities.id", ondelete="CASCADE"), index=True, default=None
    )
    document: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class DeliveryHost(Base):
    """What deliveries to one remote host have met lately: the breaker's state (consecutive
    failures, and until when the host is skipped) and the last answer, for the admin page.
    In the database so that every worker process sees the same state."""

    __tablename__ = "delivery_hosts"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)  # authority, port included
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    unavailable_until: Mapped[datetime | None] = mapped_column(default=None)
    last_status: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    last_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    last_success_at: Mapped[datetime | None] = mapped_column(default=None)


class Tombstone(Base):
    """A remote object that was deleted: a Delete that arrived before its Create (deliveries
    race), or a post deleted after we stored it. A Create of a tombstoned id is ignored, so a
    late or replayed Create cannot bring a deleted post back."""

    __tablename__ = "federation_tombstones"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    uri: Mapped[str] = mapped_column(String(1024), unique=True)
    actor_uri: Mapped[str] = mapped_column(String(1024))
    deleted_at: Mapped[datetime] = mapped_column(default=utcnow)


class LocalTombstone(Base):
    """A local post that was deleted: its ActivityPub id answers 410 Gone with a `Tombstone`
    (`former_type`, `deleted_at`) instead of 404, so peers that fetch it know it existed
    and is gone for good (federation.tombstones). Kept with the account's tombstone row."""

    __tablename__ = "local_tombstones"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    uri: Mapped[str] = mapped_column(String(1024), unique=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    former_type: Mapped[str] = mapped_column(String(32), default="Note")
    deleted_at: Mapped[datetime] = mapped_column(default=utcnow)


class DomainBlock(Base):
    """An admin's decision about a remote domain (and its subdomains): `suspend` (no
    federation at all, its accounts hidden), `silence` (its accounts left out of public
    listings for people who don't follow them) or `none`; `reject_media` stops fetching its
    files. `applied_at` is the stamp written into the domain's accounts' `suspended_at` /
    `silenced_at`, so lifting the block clears exactly what it set."""

    __tablename__ = "domain_blocks"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    domain: Mapped[str] = mapped_column(String(255), unique=True)  # lowercase, IDNA, port kept
    severity: Mapped[str] = mapped_column(String(16), default="suspend")
    reject_media: Mapped[bool] = mapped_column(Boolean, default=False)
    public_comment: Mapped[str] = mapped_column(String(1000), default="")
    private_comment: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    applied_at: Mapped[datetime] = mapped_column(default=utcnow)
