"""The custom emoji table: one row per shortcode and domain (`""` for this instance's own)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from kith.db import Base, new_id, utcnow


class CustomEmoji(Base):
    """A picture that `:shortcode:` stands for in text. Local emoji are uploaded by admins;
    a remote one is stored under the domain of the actor whose post or profile used it (so a
    server can only ever define its own), with its image fetched by a job."""

    __tablename__ = "custom_emojis"

    id: Mapped[int] = mapped_column(primary_key=True, default=new_id)
    shortcode: Mapped[str] = mapped_column(String(64))
    domain: Mapped[str] = mapped_column(String(255), default="")
    # The cleaned PNG in the media directory; None while a remote image is not cached.
    image_path: Mapped[str | None] = mapped_column(String(512), default=None)
    remote_url: Mapped[str | None] = mapped_column(String(2048), default=None)
    uri: Mapped[str | None] = mapped_column(String(2048), default=None)  # a remote Emoji's id
    visible_in_picker: Mapped[bool] = mapped_column(Boolean, default=True)
    # A remote image the cache refused (not an image, too large, unsafe address): not tried
    # again until the emoji's image URL changes.
    failed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def is_local(self) -> bool:
        return self.domain == ""


Index("uq_custom_emojis_domain_shortcode", CustomEmoji.domain, CustomEmoji.shortcode, unique=True)
