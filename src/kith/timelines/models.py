"""Tables that shape timelines: read markers, followed hashtags, and the Home feeds kept on
write."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from kith.db import Base, new_id, utcnow


class Marker(Base):
    """Where a person stopped reading a timeline ("home" or "notifications"), synced across apps."""

    __tablename__ = "markers"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    timeline: Mapped[str] = mapped_column(String(16), primary_key=True)
    last_read_id: Mapped[int] = mapped_column(default=0)
    version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class TagFollow(Base):
    """A followed hashtag: its public posts appear in the follower's Home."""

    __tablename__ = "tag_follows"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[int] = mapped_column(
        ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    id: Mapped[int] = mapped_column(default=new_id)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConversationState(Base):
    """A person's reading state of one direct conversation (thread root): what they have
    read, and up to which post they removed it from their list."""

    __tablename__ = "conversation_states"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    root_id: Mapped[int] = mapped_column(primary_key=True)
    last_read_id: Mapped[int] = mapped_column(default=0)
    hidden_up_to_id: Mapped[int] = mapped_column(default=0)


class HomeFeed(Base):
    """A person's Home kept on write (timelines.feeds): `home_entries` holds every post that
    may belong in their Home with an id above `floor_id` (database triggers add them as posts,
    follows and followed hashtags appear: migration 0005). Reading Home walks those entries
    instead of searching every followed account's posts. Made on the first read, dropped
    when unread for long (no row: Home is searched as before)."""

    __tablename__ = "home_feeds"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    floor_id: Mapped[int] = mapped_column(BigInteger)
    read_at: Mapped[datetime] = mapped_column(default=utcnow)


class HomeEntry(Base):
    """A candidate of a person's Home: the policy still decides, when it is read."""

    __tablename__ = "home_entries"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("home_feeds.account_id", ondelete="CASCADE"), primary_key=True
    )
    post_id: Mapped[int] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
