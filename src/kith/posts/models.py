"""Tables of the posts domain."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kith.db import Base, new_id, utcnow


class Visibility(enum.StrEnum):
    """Who a post is for (Mastodon's four audiences)."""

    PUBLIC = "public"  # everyone, listed in Local, hashtags and search
    UNLISTED = "unlisted"  # everyone with the link; not listed in public places
    PRIVATE = "private"  # followers only (Mastodon calls it "private")
    DIRECT = "direct"  # mentioned people only


class Post(Base):
    """A status. A boost is a Post with `reblog_of_id` set and no content of its own."""

    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    visibility: Mapped[str] = mapped_column(String(16), default=Visibility.PUBLIC)
    source: Mapped[str] = mapped_column(Text, default="")
    content_html: Mapped[str] = mapped_column(Text, default="")
    spoiler_text: Mapped[str] = mapped_column(String(500), default="")
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    language: Mapped[str | None] = mapped_column(String(16), default=None)
    in_reply_to_id: Mapped[int | None] = mapped_column(
        ForeignKey("posts.id", ondelete="SET NULL"), default=None, index=True
    )
    in_reply_to_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None
    )
    thread_root_id: Mapped[int | None] = mapped_column(default=None, index=True)
    reblog_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), default=None, index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    edited_at: Mapped[datetime | None] = mapped_column(default=None)
    replies_count: Mapped[int] = mapped_column(Integer, default=0)
    reblogs_count: Mapped[int] = mapped_column(Integer, default=0)
    likes_count: Mapped[int] = mapped_column(Integer, default=0)
    uri: Mapped[str | None] = mapped_column(String(512), default=None, unique=True)
    # Bumped by database triggers (migration 0004) whenever something a Status entity shows
    # of this post changes (text, media, mentions, tags; not the counters): API entities are
    # cached per process keyed by it (mastodon_api/entity_cache.py). Read it fresh from the
    # database, never from an object the session already held.
    render_rev: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Set only for posts whose communities narrow who may see them (a private community's,
    # one waiting for approval or removed): `communities.models.CommunityGate`. NULL for
    # every other post, so the policy's check costs one column test in the common case.
    community_gate: Mapped[str | None] = mapped_column(String(16), default=None)


# Profile and home timelines: "posts by these authors, newest first" is an index range scan.
Index("ix_posts_account_id_id", Post.account_id, Post.id)
Index("ix_posts_visibility_id", Post.visibility, Post.id)
# One boost per person and post: two racing clicks cannot make two (NULLs — ordinary posts —
# never collide).
Index("uq_posts_account_id_reblog_of_id", Post.account_id, Post.reblog_of_id, unique=True)


class Mention(Base):
    """An account mentioned in a post (it may see a direct post, and is notified)."""

    __tablename__ = "mentions"

    post_id: Mapped[int] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Tag(Base):
    """A hashtag, by normalized name."""

    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))


class PostTag(Base):
    """Hashtag ↔ post; (tag_id, post_id) is the hashtag timeline's range scan."""

    __tablename__ = "post_tags"

    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True)
    post_id: Mapped[int] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Like(Base):
    """A favourite."""

    __tablename__ = "likes"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    post_id: Mapped[int] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    id: Mapped[int] = mapped_column(default=new_id, index=True)  # orders "my likes"
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Bookmark(Base):
    """A private bookmark."""

    __tablename__ = "bookmarks"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    post_id: Mapped[int] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[int] = mapped_column(default=new_id, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Pin(Base):
    """A post pinned to its author's profile."""

    __tablename__ = "pins"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True
    )
    post_id: Mapped[int] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PostEdit(Base):
    """One earlier version of an edited post (the edit history people can read)."""

    __tablename__ = "post_edits"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(Text)
    content_html: Mapped[str] = mapped_column(Text)
    spoiler_text: Mapped[str] = mapped_column(String(500), default="")
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    poll_options: Mapped[list[str] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Poll(Base):
    """A poll attached to a post."""

    __tablename__ = "polls"

    post_id: Mapped[int] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    options: Mapped[list[str]] = mapped_column(JSON)
    multiple: Mapped[bool] = mapped_column(Boolean, default=False)
    hide_totals: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime]
    votes_count: Mapped[int] = mapped_column(Integer, default=0)
    voters_count: Mapped[int] = mapped_column(Integer, default=0)
    ended_notified_at: Mapped[datetime | None] = mapped_column(default=None)
    # A remote poll's votes per option as its server last reported them (`replies.totalItems`);
    # None for local polls, whose counts come from PollVote rows.
    remote_counts: Mapped[list[int] | None] = mapped_column(JSON, default=None)


class PollVote(Base):
    """One person's choice of one option."""

    __tablename__ = "poll_votes"
    __table_args__ = (UniqueConstraint("post_id", "account_id", "choice"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    post_id: Mapped[int] = mapped_column(
        ForeignKey("polls.post_id", ondelete="CASCADE"), index=True
    )
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    choice: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
