"""Custom emoji as ActivityPub `Emoji` tags, both ways (Mastodon's shape, which Pleroma,
Akkoma and Misskey send too):
`{"id", "type": "Emoji", "name": ":code:", "updated", "icon": {"type": "Image", "mediaType",
"url"}}`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kith.config import Settings
from kith.emojis.models import CustomEmoji
from kith.emojis.service import SHORTCODE_RE, image_url
from kith.federation.origin import origin_of, type_of

Json = dict[str, Any]

MAX_EMOJI_TAGS = 50  # per post or profile; more is not a real post
MAX_URL = 2048


def emoji_id(settings: Settings, emoji: CustomEmoji) -> str:
    """The ActivityPub id of a local emoji (`emojis.routes` serves it)."""
    return f"{settings.base_url}/emojis/{emoji.id}"


def emoji_tag(settings: Settings, emoji: CustomEmoji) -> Json:
    """The `Emoji` tag of a local emoji, for a Note's or a Person's `tag`."""
    return {
        "id": emoji_id(settings, emoji),
        "type": "Emoji",
        "name": f":{emoji.shortcode}:",
        "updated": emoji.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "icon": {"type": "Image", "mediaType": "image/png", "url": image_url(settings, emoji)},
    }


@dataclass(frozen=True)
class EmojiTag:
    """What Kith keeps of a remote `Emoji` tag."""

    shortcode: str
    url: str
    uri: str | None
    updated: datetime | None


def _url(value: Any) -> str | None:
    """The image URL of an `icon` (an Image, a Link, a bare URL, or a list of those)."""
    for item in value if isinstance(value, list) else [value]:
        url = item.get("url", item.get("href")) if isinstance(item, dict) else item
        if isinstance(url, list | dict):
            return _url(url)
        if isinstance(url, str) and origin_of(url) and len(url) <= MAX_URL:
            return url
    return None


def _when(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None


def parse_emoji_tags(tags: Any) -> list[EmojiTag]:
    """The well-formed `Emoji` tags among `tags` (a list or a single tag): a `:shortcode:`
    name and an http(s) image URL; the first of each shortcode, at most 50."""
    found: dict[str, EmojiTag] = {}
    for tag in tags if isinstance(tags, list) else [tags]:
        if len(found) >= MAX_EMOJI_TAGS:
            break
        if not isinstance(tag, dict) or type_of(tag) != "Emoji":
            continue
        name = tag.get("name")
        code = name.strip().strip(":") if isinstance(name, str) else ""
        url = _url(tag.get("icon"))
        if not SHORTCODE_RE.fullmatch(code) or url is None or code in found:
            continue
        uri = tag.get("id") if isinstance(tag.get("id"), str) else None
        if uri is not None and (not origin_of(uri) or len(uri) > MAX_URL):
            uri = None
        found[code] = EmojiTag(code, url, uri, _when(tag.get("updated")))
    return list(found.values())
