"""Import every module that registers job handlers, so a worker knows them all."""

from kith.accounts import deletion as account_deletion  # noqa: F401
from kith.accounts import mail  # noqa: F401
from kith.emojis import remote as emoji_remote  # noqa: F401
from kith.federation import processing as federation_processing  # noqa: F401
from kith.federation import retention as federation_retention  # noqa: F401
from kith.federation import sending as federation_sending  # noqa: F401
from kith.jobs import cleanup  # noqa: F401
from kith.mastodon_api import scheduling  # noqa: F401
from kith.media import remote as media_remote  # noqa: F401
from kith.media import service as media_service  # noqa: F401
from kith.posts import service as posts_service  # noqa: F401
from kith.timelines import feeds as timeline_feeds  # noqa: F401
from kith.trends import service as trends_service  # noqa: F401
