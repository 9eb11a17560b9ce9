"""The canonical URIs of local things (actors, their collections and keys, posts).

Every ActivityPub id Kith hands out is built here, from the instance's public base URL, so
a URI stays the same wherever it is rendered. HTML pages keep their own URLs (`/@name`,
`/@name/ID`); these are the ids the rest of the fediverse stores."""

from __future__ import annotations

from kith.config import Settings

AS_PUBLIC = "https://www.w3.org/ns/activitystreams#Public"


def base_url(settings: Settings) -> str:
    """The instance's public URL (scheme, domain and port), without a trailing slash."""
    return settings.base_url


def actor_uri(settings: Settings, username: str) -> str:
    return f"{settings.base_url}/users/{username}"


def inbox_uri(settings: Settings, username: str) -> str:
    return f"{actor_uri(settings, username)}/inbox"


def shared_inbox_uri(settings: Settings) -> str:
    return f"{settings.base_url}/inbox"


def outbox_uri(settings: Settings, username: str) -> str:
    return f"{actor_uri(settings, username)}/outbox"


def followers_uri(settings: Settings, username: str) -> str:
    return f"{actor_uri(settings, username)}/followers"


def following_uri(settings: Settings, username: str) -> str:
    return f"{actor_uri(settings, username)}/following"


def featured_uri(settings: Settings, username: str) -> str:
    return f"{actor_uri(settings, username)}/collections/featured"


def key_id(settings: Settings, username: str) -> str:
    return f"{actor_uri(settings, username)}#main-key"


def profile_url(settings: Settings, username: str) -> str:
    """The HTML profile page."""
    return f"{settings.base_url}/@{username}"


def post_uri(settings: Settings, username: str, post_id: int) -> str:
    return f"{actor_uri(settings, username)}/statuses/{post_id}"


def replies_uri(settings: Settings, username: str, post_id: int) -> str:
    """The collection of a post's replies that may be shown to anyone."""
    return f"{post_uri(settings, username, post_id)}/replies"


def likes_uri(settings: Settings, username: str, post_id: int) -> str:
    return f"{post_uri(settings, username, post_id)}/likes"


def shares_uri(settings: Settings, username: str, post_id: int) -> str:
    """The collection of a post's boosts (ActivityStreams calls them shares)."""
    return f"{post_uri(settings, username, post_id)}/shares"


def post_activity_uri(settings: Settings, username: str, post_id: int) -> str:
    """The Create (or, for a boost, Announce) activity of a post."""
    return f"{post_uri(settings, username, post_id)}/activity"


def post_url(settings: Settings, username: str, post_id: int) -> str:
    """The HTML page of a post."""
    return f"{settings.base_url}/@{username}/{post_id}"


def instance_actor_uri(settings: Settings) -> str:
    """The instance's own `Application` actor, which signs fetches made for nobody in
    particular."""
    return f"{settings.base_url}/actor"


def instance_key_id(settings: Settings) -> str:
    return f"{instance_actor_uri(settings)}#main-key"


def tag_url(settings: Settings, name: str) -> str:
    return f"{settings.base_url}/tags/{name}"


# --- communities (FEP-1b12 `Group` actors) ---------------------------------------------------


def group_uri(settings: Settings, handle: str) -> str:
    """A community's `Group` actor: the same URL as its HTML page (content negotiation)."""
    return f"{settings.base_url}/c/{handle}"


def group_key_id(settings: Settings, handle: str) -> str:
    return f"{group_uri(settings, handle)}#main-key"


def group_collection_uri(settings: Settings, handle: str, name: str) -> str:
    """`outbox`, `followers`, `featured` or `moderators` of a community."""
    return f"{group_uri(settings, handle)}/{name}"
