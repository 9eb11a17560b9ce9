"""Domain blocks: an admin's decision about a remote domain and every subdomain of it.

- `suspend`: no federation at all. The inbox answers 403 to the domain, nothing is fetched
  from it or delivered to it, its accounts are suspended (so `kith.policy` hides them and
  their posts everywhere, as any suspended account) and follows with them end.
- `silence`: its accounts are silenced, so `kith.policy` leaves their posts out of public
  timelines, search and trends for people who don't follow them.
- `none`: no limit on accounts (useful with `reject_media`, or to exempt a subdomain).
- `reject_media`: its files are not fetched (`rejects_media`; a suspended domain's neither).

The effect on accounts is written into them (`suspended_at` / `silenced_at` = the block's
`applied_at` stamp), as Mastodon does: the policy's clauses stay one column test on the hot
read paths, and lifting the block clears exactly the stamps blocks wrote, never a suspension
a moderator made by hand. The most specific block wins (`a.example.com` over `example.com`).

Lookups (`policy_for`) read a per-process copy of the table, refreshed every
`CACHE_SECONDS`; the process that changes a block drops its copy at once."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import ColumnElement, and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kith import policy
from kith.accounts.models import Account
from kith.db import utcnow
from kith.errors import NotFound, ValidationFailed
from kith.federation.models import DomainBlock
from kith.federation.origin import origin_of
from kith.graph.models import Follow, FollowRequest
from kith.moderation.roles import require_moderator
from kith.runtime import runtime_of

SUSPEND = "suspend"
SILENCE = "silence"
NONE = "none"
SEVERITIES = (SUSPEND, SILENCE, NONE)
CACHE_SECONDS = 10.0
MAX_PUBLIC_COMMENT = 1000
MAX_PRIVATE_COMMENT = 5000
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_CHUNK = 500


@dataclass(frozen=True)
class DomainPolicy:
    """What applies to one host: the governing block's domain (None: no block) and effects."""

    suspend: bool = False
    silence: bool = False
    reject_media: bool = False
    domain: str | None = None
    applied_at: datetime | None = None


NO_POLICY = DomainPolicy()


@dataclass(frozen=True)
class PublicBlock:
    """A block as anyone may see it (/about, `/api/v1/instance/domain_blocks`)."""

    domain: str
    digest: str  # SHA-256 of the domain, as Mastodon's entity has it
    severity: str  # "suspend" | "silence" | "noop" (media rejected only)
    comment: str


# --- the cached lookup ------------------------------------------------------------------


@dataclass
class _Copy:
    loaded_at: float
    rules: dict[str, DomainPolicy]


_COPIES: weakref.WeakKeyDictionary[Any, _Copy] = weakref.WeakKeyDictionary()


def _policy_of(block: DomainBlock) -> DomainPolicy:
    return DomainPolicy(
        suspend=block.severity == SUSPEND,
        silence=block.severity == SILENCE,
        reject_media=block.reject_media or block.severity == SUSPEND,
        domain=block.domain,
        applied_at=block.applied_at,
    )


async def _load(db: AsyncSession) -> dict[str, DomainPolicy]:
    return {b.domain: _policy_of(b) for b in (await db.scalars(select(DomainBlock))).all()}


async def _rules(db: AsyncSession) -> dict[str, DomainPolicy]:
    """Every block by domain, from this process's copy (at most CACHE_SECONDS old)."""
    engine = db.get_bind()
    copy = _COPIES.get(engine)
    now = time.monotonic()
    if copy is None or now - copy.loaded_at > CACHE_SECONDS:
        copy = _Copy(now, await _load(db))
        _COPIES[engine] = copy
    return copy.rules


def cached_policy(engine: Any, host: str) -> DomainPolicy | None:
    """`policy_for` from this process's copy of the blocks alone (`engine`: the session's
    bind), without a session; None when there is no fresh copy (then ask `policy_for`)."""
    copy = _COPIES.get(engine)
    if copy is None or time.monotonic() - copy.loaded_at > CACHE_SECONDS:
        return None
    return _governing(copy.rules, host) if host and copy.rules else NO_POLICY


def forget_cached_blocks(db: AsyncSession) -> None:
    """Drop this process's copy (after a change, so the next lookup reads the table)."""
    _COPIES.pop(db.get_bind(), None)


def _split_port(host: str) -> tuple[str, str]:
    """("name", ":port" or "") of an authority; IPv6 literals keep their brackets."""
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1], host[end + 1 :]
    if ":" in host:
        name, port = host.rsplit(":", 1)
        return name, f":{port}"
    return host, ""


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def candidates(host: str) -> list[str]:
    """The block domains that could govern `host`, most specific first: the authority with
    its port, the name, then each parent domain ("a.b.example" → "b.example", "example")."""
    host = host.strip().lower().rstrip(".")
    if not host:
        return []
    name, port = _split_port(host)
    out = [host] if port else []
    out.append(name)
    if not _is_ip(name):
        labels = name.split(".")
        out.extend(".".join(labels[i:]) for i in range(1, len(labels)))
    return out


def _governing(rules: dict[str, DomainPolicy], host: str) -> DomainPolicy:
    for candidate in candidates(host):
        rule = rules.get(candidate)
        if rule is not None:
            return rule
    return NO_POLICY


async def policy_for(db: AsyncSession, host: str) -> DomainPolicy:
    """What applies to `host` (an authority such as "example.com" or "127.0.0.2:8001"): the
    most specific block of it or of a parent domain, or NO_POLICY."""
    if not host:
        return NO_POLICY
    rules = await _rules(db)
    return _governing(rules, host) if rules else NO_POLICY


async def domain_is_blocked(db: AsyncSession, host: str) -> bool:
    """True if `host` is suspended: refuse its activities, fetch nothing from it and deliver
    nothing to it."""
    return (await policy_for(db, host)).suspend


async def rejects_media(db: AsyncSession, host: str) -> bool:
    """True if files of `host` must not be fetched (media rejected, or the domain suspended)."""
    return (await policy_for(db, host)).reject_media


async def uri_is_blocked(db: AsyncSession, uri: str) -> bool:
    """`domain_is_blocked` for the host of a URI."""
    host = origin_of(uri)
    return bool(host) and await domain_is_blocked(db, host)


# --- admins' changes --------------------------------------------------------------------


def normalize_domain(value: str) -> str:
    """The domain as stored: lowercase, IDNA (punycode), no scheme, path or trailing dot, a
    port kept only when given. Accepts "https://Example.com/x", "*.example.com", "café.example".
    Raises ValidationFailed."""
    value = value.strip()
    if "://" in value:
        value = urlsplit(value).netloc
    value = value.split("/", 1)[0].rsplit("@", 1)[-1]
    if value.startswith("*."):
        value = value[2:]
    value = value.lower().rstrip(".")
    name, port = _split_port(value)
    if port and not (port[1:].isdigit() and 0 < int(port[1:]) < 65536):
        raise ValidationFailed("That port is not a number from 1 to 65535.", field="domain")
    if _is_ip(name):
        return f"{name}{port}"
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValidationFailed("That is not a domain name.", field="domain") from None
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValidationFailed("That is not a domain name.", field="domain")
    return f"{name}{port}"


def _under(domain: str) -> ColumnElement[bool]:
    """SQL: a remote account on `domain` or a subdomain of it (any port if none is given)."""
    like = domain.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    patterns = [Account.domain == domain, Account.domain.like(f"%.{like}", escape="\\")]
    if ":" not in domain.lstrip("[").split("]")[-1]:
        patterns.append(Account.domain.like(f"{like}:%", escape="\\"))
        patterns.append(Account.domain.like(f"%.{like}:%", escape="\\"))
    return and_(Account.domain != "", or_(*patterns))


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


async def _reconcile(db: AsyncSession, domain: str, old_stamps: set[datetime]) -> None:
    """Make the accounts under `domain` match the blocks as they now are: clear what any
    block stamped (and `old_stamps`, of a block just changed or lifted), then stamp each
    account with the block that governs it; follows with newly suspended accounts end."""
    rules = await _load(db)
    stamps = sorted({r.applied_at for r in rules.values() if r.applied_at} | old_stamps)
    rows = (await db.execute(select(Account.id, Account.domain).where(_under(domain)))).all()
    if not rows:
        return
    ids = [row.id for row in rows]
    for chunk in _chunks(ids):
        for column in (Account.suspended_at, Account.silenced_at):
            await db.execute(
                update(Account)
                .where(Account.id.in_(chunk), column.in_(stamps))
                .values({column.key: None})
                .execution_options(synchronize_session=False)
            )
    by_stamp: dict[tuple[str, datetime], list[int]] = {}
    for row in rows:
        rule = _governing(rules, row.domain)
        if rule.applied_at is not None and (rule.suspend or rule.silence):
            by_stamp.setdefault((SUSPEND if rule.suspend else SILENCE, rule.applied_at), [])
            by_stamp[(SUSPEND if rule.suspend else SILENCE, rule.applied_at)].append(row.id)
    for (severity, stamp), governed in by_stamp.items():
        column = Account.suspended_at if severity == SUSPEND else Account.silenced_at
        for chunk in _chunks(governed):
            await db.execute(
                update(Account)
                .where(Account.id.in_(chunk), column.is_(None))
                .values({column.key: stamp})
                .execution_options(synchronize_session=False)
            )
            if severity == SUSPEND:
                await _end_follows(db, chunk)


async def _end_follows(db: AsyncSession, ids: Sequence[int]) -> None:
    """Follows and follow requests with these accounts end, both ways (not restored when
    the block is lifted, as on Mastodon)."""
    for table in (Follow, FollowRequest):
        await db.execute(
            delete(table).where(or_(table.follower_id.in_(ids), table.followee_id.in_(ids)))
        )


def _own_domain(db: AsyncSession, domain: str) -> bool:
    settings = runtime_of(db).settings
    own = {settings.domain.lower(), origin_of(settings.base_url)}
    return domain in own or any(o and o.endswith(f".{domain}") for o in own)


async def block_domain(
    db: AsyncSession,
    moderator: policy.Viewer,
    domain: str,
    *,
    severity: str = SUSPEND,
    reject_media: bool = False,
    public_comment: str = "",
    private_comment: str = "",
) -> DomainBlock:
    """Create or change the block of `domain` and apply it to the accounts already known
    there (committed). Nothing is written if any input is refused."""
    require_moderator(moderator)
    name = normalize_domain(domain)
    if severity not in SEVERITIES:
        raise ValidationFailed("Choose suspend, silence or none.", field="severity")
    if _own_domain(db, name):
        raise ValidationFailed("That is this instance's own domain.", field="domain")
    if len(public_comment) > MAX_PUBLIC_COMMENT:
        raise ValidationFailed(
            f"The public reason is at most {MAX_PUBLIC_COMMENT} characters.",
            field="public_comment",
        )
    if len(private_comment) > MAX_PRIVATE_COMMENT:
        raise ValidationFailed(
            f"The private note is at most {MAX_PRIVATE_COMMENT} characters.",
            field="private_comment",
        )
    now = utcnow()
    block = await db.scalar(select(DomainBlock).where(DomainBlock.domain == name))
    old_stamps: set[datetime] = set()
    if block is None:
        block = DomainBlock(domain=name, created_by_id=moderator.account_id, created_at=now)
        db.add(block)
    else:
        old_stamps.add(block.applied_at)
    block.severity = severity
    block.reject_media = reject_media
    block.public_comment = public_comment.strip()
    block.private_comment = private_comment.strip()
    block.updated_at = now
    block.applied_at = now
    await db.flush()
    await _reconcile(db, name, old_stamps)
    await db.commit()
    forget_cached_blocks(db)
    return block


async def unblock_domain(db: AsyncSession, moderator: policy.Viewer, domain: str) -> None:
    """Lift the block of `domain` (committed): what it stamped on accounts is cleared, and a
    block of a parent domain, if any, governs them again. Follows that ended stay ended."""
    require_moderator(moderator)
    name = normalize_domain(domain)
    block = await db.scalar(select(DomainBlock).where(DomainBlock.domain == name))
    if block is None:
        raise NotFound(f"{name} is not blocked.")
    stamp = block.applied_at
    await db.delete(block)
    await db.flush()
    await _reconcile(db, name, {stamp})
    await db.commit()
    forget_cached_blocks(db)


async def list_blocks(db: AsyncSession, moderator: policy.Viewer) -> list[DomainBlock]:
    """Every block with its private note, by domain (for admins)."""
    require_moderator(moderator)
    return list((await db.scalars(select(DomainBlock).order_by(DomainBlock.domain))).all())


async def public_blocks(db: AsyncSession) -> list[PublicBlock]:
    """The blocks anyone may know about, with their public reason ("moderated servers");
    a block that limits nothing is left out."""
    out = []
    for b in (await db.scalars(select(DomainBlock).order_by(DomainBlock.domain))).all():
        if b.severity == NONE and not b.reject_media:
            continue
        out.append(
            PublicBlock(
                domain=b.domain,
                digest=hashlib.sha256(b.domain.encode()).hexdigest(),
                severity=b.severity if b.severity != NONE else "noop",
                comment=b.public_comment,
            )
        )
    return out


async def limit_new_account(db: AsyncSession, account: Account) -> None:
    """Stamp a remote account just created with its domain's block (silenced, or suspended
    should one slip in), as the domain's earlier accounts were."""
    rule = await policy_for(db, account.domain)
    if rule.applied_at is None:
        return
    if rule.suspend and account.suspended_at is None:
        account.suspended_at = rule.applied_at
    elif rule.silence and account.silenced_at is None:
        account.silenced_at = rule.applied_at
