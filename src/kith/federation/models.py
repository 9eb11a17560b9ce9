"""Tables of the federation domain."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String, Text
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
