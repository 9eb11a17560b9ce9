"""Parse HTML form values into service inputs (the web edge's only translation layer)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import FormData, UploadFile

from kith.errors import ValidationFailed
from kith.posts.models import Visibility
from kith.posts.service import PollInput, PostInput


def form_str(form: FormData, name: str, default: str = "") -> str:
    value = form.get(name, default)
    return value if isinstance(value, str) else default


def form_int(form: FormData, name: str, *, field: str | None = None) -> int | None:
    raw = form_str(form, name).strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 19:
        raise ValidationFailed("Expected a number.", field=field or name)
    return int(raw)


# The composer has this many image inputs (media_file_<i>), each with its alt text
# (media_description_<i>); Mastodon allows four attachments per post.
COMPOSER_IMAGES = 4


@dataclass
class ImageUpload:
    """One image chosen in the composer, with its alt text and its place among the inputs."""

    index: int
    file: UploadFile
    description: str


def image_uploads(form: FormData) -> list[ImageUpload]:
    """The composer's chosen images (empty file inputs are skipped), in input order."""
    out = []
    for i in range(COMPOSER_IMAGES):
        upload = form.get(f"media_file_{i}")
        # A browser sends an empty part for a file input left empty: no name, no bytes.
        if isinstance(upload, UploadFile) and (upload.filename or upload.size):
            out.append(ImageUpload(i, upload, form_str(form, f"media_description_{i}")))
    return out


def post_input(form: FormData) -> PostInput:
    """A PostInput from the composer's fields."""
    visibility = form_str(form, "visibility", "public")
    if visibility not in {v.value for v in Visibility}:
        raise ValidationFailed("Unknown audience.", field="visibility")
    options = [o for o in form.getlist("poll_option") if isinstance(o, str)]
    poll = None
    if any(o.strip() for o in options):
        expires = form_int(form, "poll_expires_in", field="poll") or 86400
        poll = PollInput(
            options=[o for o in options if o.strip()],
            expires_in=expires,
            multiple=form_str(form, "poll_multiple") == "on",
        )
    return PostInput(
        source=form_str(form, "status"),
        visibility=Visibility(visibility),
        spoiler_text=form_str(form, "spoiler_text"),
        sensitive=form_str(form, "sensitive") == "on",
        language=form_str(form, "language") or None,
        in_reply_to_id=form_int(form, "in_reply_to_id"),
        poll=poll,
    )
