"""The instance's public face as admins edit it (name, description, rules, who may sign up)
and as the About page shows it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy, text
from kith.accounts import service as accounts
from kith.accounts.models import Account, InstanceSettings, RegistrationMode, User
from kith.communities.models import CommunityCreation
from kith.errors import ValidationFailed
from kith.moderation.roles import require_moderator

MAX_NAME = 100
MAX_DESCRIPTION = 5000
MAX_RULES = 20
MAX_RULE = 300


def _one_line(value: str) -> str:
    """Collapse whitespace, newlines and control characters to single spaces."""
    return " ".join("".join(c if c.isprintable() else " " for c in value).split())


def parse_rules(rules_text: str) -> list[str]:
    """Rules from a textarea, one per line; blank lines are skipped."""
    rules = [_one_line(line) for line in rules_text.splitlines()]
    rules = [r for r in rules if r]
    if len(rules) > MAX_RULES:
        raise ValidationFailed(f"Write at most {MAX_RULES} rules.", field="rules")
    if any(len(r) > MAX_RULE for r in rules):
        raise ValidationFailed(f"Each rule is at most {MAX_RULE} characters.", field="rules")
    return rules


async def update_instance_settings(
    db: AsyncSession,
    moderator: policy.Viewer,
    *,
    name: str,
    description: str,
    rules: list[str],
    registration_mode: str,
    require_email_confirmation: bool,
    community_creation: str | None = None,
) -> InstanceSettings:
    """Save the admin-editable settings; nothing changes unless all of them are valid.
    `community_creation` (who may start a community): None leaves it as it is."""
    require_moderator(moderator)
    name = _one_line(name)
    if not 1 <= len(name) <= MAX_NAME:
        raise ValidationFailed(f"Name the instance (at most {MAX_NAME} characters).", field="name")
    description = description.replace("\r\n", "\n").strip()
    if len(description) > MAX_DESCRIPTION:
        raise ValidationFailed(
            f"The description is at most {MAX_DESCRIPTION} characters.", field="description"
        )
    if len(rules) > MAX_RULES or any(not r or len(r) > MAX_RULE for r in rules):
        raise ValidationFailed(
            f"Write at most {MAX_RULES} rules of at most {MAX_RULE} characters.", field="rules"
        )
    if registration_mode not in {m.value for m in RegistrationMode}:
        raise ValidationFailed("Choose who may sign up.", field="registration_mode")
    if community_creation is not None and community_creation not in {
        c.value for c in CommunityCreation
    }:
        raise ValidationFailed("Choose who may start a community.", field="community_creation")
    row = await accounts.get_instance_settings(db)
    if community_creation is not None:
        row.community_creation = community_creation
    row.name = name
    row.description = description
    row.rules = list(rules)
    row.registration_mode = registration_mode
    row.require_email_confirmation = require_email_confirmation
    await db.commit()
    return row


@dataclass(frozen=True)
class About:
    """What the About page shows."""

    name: str
    description_html: str
    rules: list[str]
    registration_mode: str
    admins: list[Account]


async def about(db: AsyncSession) -> About:
    """The instance as visitors see it: the description rendered from its Markdown subset
    (sanitized like a bio), the rules, and the admins to contact."""
    row = await accounts.get_instance_settings(db)
    admins = (
        await db.scalars(
            select(Account)
            .join(User, User.account_id == Account.id)
            .where(User.is_admin.is_(True), Account.suspended_at.is_(None))
            .order_by(User.id)
        )
    ).all()
    return About(
        name=row.name,
        description_html=text.render_bio(row.description) if row.description else "",
        rules=list(row.rules or []),
        registration_mode=row.registration_mode,
        admins=list(admins),
    )
