"""Every table, imported in one place so Alembic and `create_all` see the whole schema."""

from kith.accounts.models import (  # noqa: F401
    Account,
    AccountStats,
    EmailToken,
    InstanceSettings,
    Invite,
    RecoveryCode,
    User,
    UserSession,
)
from kith.communities.models import (  # noqa: F401
    Community,
    CommunityBan,
    CommunityInvite,
    Membership,
    ModerationLogEntry,
)
from kith.db import Base  # noqa: F401
from kith.emojis.models import CustomEmoji  # noqa: F401
from kith.federation.models import (  # noqa: F401
    ActorKey,
    DeliveryHost,
    DomainBlock,
    InboxItem,
    LocalTombstone,
    OutboundActivity,
    RemoteActor,
)
from kith.filters.models import Filter, FilterKeyword, FilterStatus  # noqa: F401
from kith.graph.models import Block, Follow, FollowRequest, Mute  # noqa: F401
from kith.jobs.models import Job  # noqa: F401
from kith.lists.models import List, ListMember  # noqa: F401
from kith.mastodon_api.models import IdempotencyKey, ScheduledStatus  # noqa: F401
from kith.media.models import MediaAttachment  # noqa: F401
from kith.moderation.models import Report  # noqa: F401
from kith.notifications.models import Notification  # noqa: F401
from kith.oauth.models import OAuthApp, OAuthCode, OAuthToken  # noqa: F401
from kith.posts.models import (  # noqa: F401
    Bookmark,
    Like,
    Mention,
    Pin,
    Poll,
    PollVote,
    Post,
    PostEdit,
    PostTag,
    Tag,
)
from kith.timelines.models import ConversationState, Marker, TagFollow  # noqa: F401
from kith.trends.models import TrendLink, TrendSettings, TrendStatus, TrendTag  # noqa: F401
