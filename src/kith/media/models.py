"""Tables of the media domain: files attached to posts (images today; video and audio later)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kith.db import Base, new_id, utcnow


class MediaType(enum.StrEnum):
    """What kind of file an attachment is (Mastodon's `type`)."""

    IMAGE = "image"
    VIDEO = "video"  # later: transcoded by a job
    GIFV = "gifv"  # later: animated GIF turned into a looping video
    AUDIO = "audio"  # later


class MediaState(enum.StrEnum):
    """Where an upload is in its processing. Images are processed while the upload request
    waits, so they are born READY; video will be PROCESSING until its job finishes."""

    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class MediaAttachment(Base):
    """One uploaded file. Uploaded first (no post), then attached to one post by its uploader;
    unattached uploads are forgotten after a day by the clean-up job."""

    __tablename__ = "media_attachments"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    # The database cascade is a backstop: posts.service deletes attachments (rows and files)
    # explicitly through media.service when a post is deleted.
    post_id: Mapped[int | None] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), default=None
    )
    type: Mapped[str] = mapped_column(String(16), default=MediaType.IMAGE)
    state: Mapped[str] = mapped_column(String(16), default=MediaState.READY)
    # Paths relative to the media directory (served at /media/<path>); None while processing.
    file_path: Mapped[str | None] = mapped_column(String(255), default=None)
    preview_path: Mapped[str | None] = mapped_column(String(255), default=None)
    # A remote post's attachment: the file's URL on its server. Pages and the API never link
    # to it as an image; they show the cached copy (file_path) or a placeholder.
    remote_url: Mapped[str | None] = mapped_column(String(1024), default=None)
    # When the remote file was fetched and cached here (federation.remote_media); None while
    # it is not (yet, or any more: the cache is pruned by age and refetched on demand).
    remote_fetched_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    width: Mapped[int | None] = mapped_column(Integer, default=None)
    height: Mapped[int | None] = mapped_column(Integer, default=None)
    preview_width: Mapped[int | None] = mapped_column(Integer, default=None)
    preview_height: Mapped[int | None] = mapped_column(Integer, default=None)
    blurhash: Mapped[str | None] = mapped_column(String(100), default=None)
    description: Mapped[str] = mapped_column(Text, default="")  # alt text, ≤ 1500 characters
    focus_x: Mapped[float] = mapped_column(Float, default=0.0)  # -1 (left) … 1 (right)
    focus_y: Mapped[float] = mapped_column(Float, default=0.0)  # -1 (bottom) … 1 (top)
    position: Mapped[int] = mapped_column(Integer, default=0)  # order within the post
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# A post's attachments (presenter, only_media) and the clean-up job's scan of unattached
# uploads by age, with one index.
Index(
    "ix_media_attachments_post_id_created_at", MediaAttachment.post_id, MediaAttachment.created_at
)
