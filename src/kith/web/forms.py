"""Parse HTML form values into service inputs (the web edge's only translation layer)."""

from __future__ import annotations

from starlette.datastructures import FormData

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
