"""`:shortcode:` as a picture in the pages' HTML (the client API and ActivityPub keep the text
and list the emoji beside it, as Mastodon does)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from markupsafe import Markup, escape

from kith.emojis.models import CustomEmoji
from kith.emojis.service import IN_TEXT_RE

_TAG_RE = re.compile(r"(<[^>]*>)")


def _img(emoji: CustomEmoji) -> str:
    code = f":{emoji.shortcode}:"  # letters, digits and _ only: safe in an attribute
    return (
        f'<img class="emoji" src="/emojis/{emoji.id}.png" alt="{code}" title="{code}" '
        'width="20" height="20" draggable="false">'
    )


def emojify(value: str | Markup | None, emojis: Sequence[CustomEmoji]) -> Markup:
    """`value` with each `:shortcode:` of `emojis` shown as its picture. Plain text is
    escaped first; sanitized HTML (Markup) is changed in its text only, never inside a tag."""
    html = str(value if isinstance(value, Markup) else escape(value or ""))
    by_code = {e.shortcode: e for e in emojis}
    if not by_code or ":" not in html:
        return Markup(html)  # noqa: S704 - escaped above, or HTML already sanitized

    def picture(match: re.Match[str]) -> str:
        emoji = by_code.get(match[1])
        return _img(emoji) if emoji is not None else match[0]

    parts = _TAG_RE.split(html)
    for i in range(0, len(parts), 2):  # even parts are text, odd ones tags
        parts[i] = IN_TEXT_RE.sub(picture, parts[i])
    return Markup("".join(parts))  # noqa: S704 - only our own <img> added to safe HTML
