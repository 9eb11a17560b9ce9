"""Tables of the communities domain: a community, its members, invites, bans and the log of
what its moderators did."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from kith.db import Base, new_id, utcnow


class MembershipModel(enum.StrEnum):
    """How people get in (the rules are `communities.service.join`'s)."""

    OPEN = "open"  # anyone joins at once
    APPROVAL = "approval"  # a request, with the answer to the join question, waits for a moderator
    INVITE = "invite"  # only with an invite code
    PRIVATE = "private"  # an invite code or an approved request; content for members only


class Role(enum.StrEnum):
    """What a member may do, from most to least power."""

    OWNER = "owner"
    MODERATOR = "moderator"
    MEMBER = "member"


class MemberState(enum.StrEnum):
    ACTIVE = "active"
    PENDING = "pending"  # a join request waiting for a moderator


class ModAction(enum.StrEnum):
    """What a moderation log entry records."""

    UPDATE = "update"
    APPROVE = "approve"
    REJECT = "reject"
    BAN = "ban"
    UNBAN = "unban"
    CREATE_INVITE = "create_invite"
    REVOKE_INVITE = "revoke_invite"
    MAKE_MODERATOR = "make_moderator"
    REMOVE_MODERATOR = "remove_moderator"
    TRANSFER_OWNERSHIP = "transfer_ownership"
    APPROVE_POST = "approve_post"
    REJECT_POST = "reject_post"
    REMOVE_POST = "remove_post"
    RESTORE_POST = "restore_post"
    LOCK = "lock"
    UNLOCK = "unlock"
    PIN = "pin"
    UNPIN = "unpin"
    FLAIR = "flair"  # a moderator changed a thread's flair (`communities.flairs`)


class CommunityCreation(enum.StrEnum):
    """Who may start a community (`InstanceSettings.community_creation`)."""

    EVERYONE = "everyone"  # any active local account
    ADMINS = "admins"


class Community(Base):
    """A micro-community. Its handle shares the local name space with usernames (both are
    `@name@domain` to the fediverse), so the two never clash.

    A row with a `domain` is a **remote** community: a `Group` on another server (a Lemmy
    community, another Kith's) that people here joined or looked up
    (`federation.remote_groups`). Its card is copied from the Group's actor document, its
    members here are the local people who joined it, and its posts are those its Group
    announced; its rules, moderators and approvals live on its own server."""

    __tablename__ = "communities"
    __table_args__ = (UniqueConstraint("handle_key", "domain"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    handle: Mapped[str] = mapped_column(String(64))  # as its founder typed it (≤ 30 here)
    handle_key: Mapped[str] = mapped_column(String(64))  # lowercase, for lookups
    # "" for ours; the Group's host (port included) for a remote community.
    domain: Mapped[str] = mapped_column(String(255), default="", server_default="")
    # A remote community's Group actor (its account holds the id, inbox and key).
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), default=None, unique=True
    )
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    rules: Mapped[str] = mapped_column(Text, default="")
    topics: Mapped[list[str]] = mapped_column(JSON, default=list)  # normalized hashtag names
    language: Mapped[str] = mapped_column(String(16), default="")  # "" when not said
    membership: Mapped[str] = mapped_column(String(16), default=MembershipModel.OPEN)
    join_question: Mapped[str] = mapped_column(String(500), default="")
    # New threads wait in a queue until a moderator approves them (replies never wait).
    post_approval: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # Media paths (`kith.media.storage`) of its square icon and its banner, like an account's
    # avatar and header; None when not set.
    icon_path: Mapped[str | None] = mapped_column(String(255), default=None)
    banner_path: Mapped[str | None] = mapped_column(String(255), default=None)
    # Mirrors the owner's Membership (role OWNER), for lookups: both change together.
    # SET NULL: deleting the owner's account leaves the community for an admin to hand over.
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def is_remote(self) -> bool:
        return self.domain != ""

    @property
    def address(self) -> str:
        """How it is named here and in its page's URL: `handle`, or `handle@domain`."""
        return f"{self.handle}@{self.domain}" if self.domain else self.handle


class Membership(Base):
    """A person in a community (active), or asking to be (pending, with their answer)."""

    __tablename__ = "community_members"

    community_id: Mapped[int] = mapped_column(
        ForeignKey("communities.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    id: Mapped[int] = mapped_column(default=new_id)
    role: Mapped[str] = mapped_column(String(16), default=Role.MEMBER)
    state: Mapped[str] = mapped_column(String(16), default=MemberState.ACTIVE)
    answer: Mapped[str] = mapped_column(Text, default="")
    # The invite that let them in, if one did.
    invite_id: Mapped[int | None] = mapped_column(
        ForeignKey("community_invites.id", ondelete="SET NULL"), default=None
    )
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    joined_at: Mapped[datetime | None] = mapped_column(default=None)  # None while pending
    # The member's choice: the community's threads appear in their Home (on when they join;
    # `service.set_in_home`, the community page). Read by `timelines.home_clause`; the
    # triggers of migration 0007 keep Home feeds' candidates to match.
    in_home: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")


class CommunityInvite(Base):
    """An invite code to a community. Only a hash of the code is stored: a leaked database
    does not let anyone in."""

    __tablename__ = "community_invites"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    community_id: Mapped[int] = mapped_column(
        ForeignKey("communities.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    max_uses: Mapped[int | None] = mapped_column(Integer, default=None)
    uses: Mapped[int] = mapped_column(Integer, default=0)


class CommunityBan(Base):
    """`account` may not join, post in or be approved into `community` until `until` (None:
    for good). An expired row stays until the next ban or join replaces it."""

    __tablename__ = "community_bans"

    community_id: Mapped[int] = mapped_column(
        ForeignKey("communities.id", ondelete="CASCADE"), primary_key=True
    )
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    id: Mapped[int] = mapped_column(default=new_id)
    until: Mapped[datetime | None] = mapped_column(default=None)
    reason: Mapped[str] = mapped_column(Text, default="")
    by_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModerationLogEntry(Base):
    """One thing a community's moderators did, kept for members to see (and for appeals).
    Written in the same transaction as the action; outlives the accounts it names."""

    __tablename__ = "community_moderation_log"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"))
    actor_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None
    )
    action: Mapped[str] = mapped_column(String(32))
    target_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None
    )
    target_post_id: Mapped[int | None] = mapped_column(
        ForeignKey("posts.id", ondelete="SET NULL"), default=None
    )
    reason: Mapped[str] = mapped_column(Text, default="")  # what the moderator wrote
    detail: Mapped[str] = mapped_column(String(200), default="")  # what changed, for the reader
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# A community's log is read newest first: the ids are time-sortable.
Index(
    "ix_community_moderation_log_community_id",
    ModerationLogEntry.community_id,
    ModerationLogEntry.id,
)


class CommunityPostState(enum.StrEnum):
    """Where a post stands in one community it was addressed to."""

    APPROVED = "approved"  # in the community's feeds
    PENDING = "pending"  # waiting in the approval queue
    REMOVED = "removed"  # taken out (or turned down) by a moderator


class CommunityGate(enum.StrEnum):
    """`posts.community_gate`: who, beyond the post's own audience, may see a post because of
    its communities (`communities.posting.gate_of` decides; `kith.policy` enforces). NULL —
    the common case — means the communities narrow nothing."""

    MEMBERS = "members"  # a private community's post: its active members (and the author)
    MODERATORS = "moderators"  # not approved anywhere: its communities' moderators (and author)


class CommunityPost(Base):
    """A post in a community: a thread addressed to it, or a reply that joined the thread.
    A cross-post is one post with one row per community."""

    __tablename__ = "community_posts"

    community_id: Mapped[int] = mapped_column(
        ForeignKey("communities.id", ondelete="CASCADE"), primary_key=True
    )
    post_id: Mapped[int] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    is_thread: Mapped[bool] = mapped_column(Boolean, default=True)  # False: a reply in one
    # Written while the community was private: for its members only, for good (a community
    # turned open later does not publish what was said in private).
    members_only: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(16), default=CommunityPostState.APPROVED)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The moderator who last approved, rejected, removed or restored it, and when.
    decided_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None
    )
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    pinned_at: Mapped[datetime | None] = mapped_column(default=None)  # threads only
    locked_at: Mapped[datetime | None] = mapped_column(default=None)  # threads only: no replies
    # Threads only: replies in the thread so far, and the id of its newest post (the thread's
    # own id until someone replies): "active" ranks by it.
    thread_replies: Mapped[int] = mapped_column(Integer, default=0)
    active_id: Mapped[int] = mapped_column(BigInteger, default=0)
    # likes + boosts of the post + thread_replies, kept by triggers (migration 0006) on both
    # tables, whoever changes them: "top" sorts on it with an index.
    score: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Threads only: the flair its author or a moderator chose (`communities.flairs`).
    flair_id: Mapped[int | None] = mapped_column(
        ForeignKey("community_flairs.id", ondelete="SET NULL"), default=None
    )


# A community's feed ("new", the queue, My communities) is a range scan of one community's
# threads in one state by post id; "active" the same by the newest activity.
Index(
    "ix_community_posts_feed",
    CommunityPost.community_id,
    CommunityPost.state,
    CommunityPost.is_thread,
    CommunityPost.post_id,
)
Index(
    "ix_community_posts_active",
    CommunityPost.community_id,
    CommunityPost.state,
    CommunityPost.is_thread,
    CommunityPost.active_id,
)
Index(
    "ix_community_posts_top",
    CommunityPost.community_id,
    CommunityPost.state,
    CommunityPost.is_thread,
    CommunityPost.score,
    CommunityPost.post_id,
)


class CommunityFlair(Base):
    """A label a community's moderators define for its threads ("Question", "Event"): its
    authors pick one when posting, its feed can be filtered by it (`communities.flairs`)."""

    __tablename__ = "community_flairs"
    __table_args__ = (UniqueConstraint("community_id", "name_key"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    community_id: Mapped[int] = mapped_column(
        ForeignKey("communities.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(30))  # as the moderator typed it
    name_key: Mapped[str] = mapped_column(String(30))  # lowercase: no two alike
    colour: Mapped[str] = mapped_column(String(16))  # one of `flairs.PALETTE`
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReportState(enum.StrEnum):
    """Where a report to a community's moderators stands."""

    OPEN = "open"
    REMOVED = "removed"  # resolved by removing the post from the community
    DISMISSED = "dismissed"  # resolved with the post left where it is


class CommunityReport(Base):
    """Someone told a community's moderators about a post in it (`communities.reports`).
    One per reporter, post and community; only that community's moderators read it."""

    __tablename__ = "community_reports"
    __table_args__ = (UniqueConstraint("community_id", "post_id", "reporter_id"),)

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    community_id: Mapped[int] = mapped_column(ForeignKey("communities.id", ondelete="CASCADE"))
    post_id: Mapped[int] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), index=True)
    reporter_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(Text, default="")
    rule: Mapped[int | None] = mapped_column(Integer, default=None)  # the rule's number, 1-based
    state: Mapped[str] = mapped_column(String(16), default=ReportState.OPEN)
    # The instance-wide report (`kith.moderation`) filed with it, when the reporter asked.
    instance_report_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None
    )
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)


# The moderators' page lists a community's open reports, oldest first.
Index(
    "ix_community_reports_open",
    CommunityReport.community_id,
    CommunityReport.state,
    CommunityReport.id,
)
