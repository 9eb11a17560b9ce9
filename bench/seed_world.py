"""Seed a Kith database with a synthetic community, fast, for the timeline benchmarks.

The world is generated in pure Python from one random seed, so the SQLite and PostgreSQL runs
see the same people, follows and posts. Rows go in with bulk inserts (SQLAlchemy Core
executemany on SQLite, COPY through asyncpg on PostgreSQL) after the real migrations ran.

Shape, chosen to look like a lively instance rather than a uniform grid:
- follows: each account follows ~`follows` others (log-normal spread), followees drawn from a
  Zipf-like popularity ranking, so a few accounts have thousands of followers;
- posting activity is log-normal too (a few prolific posters, many quiet ones);
- posts spread over 60 days, ids made from their time (kith.db.id_for_time + a counter) so id
  order is time order, as kith.db.new_id would have made them;
- originals are mostly public, some unlisted, followers-only and direct (with mentions);
  replies (some continuing the author's own thread), boosts, hashtags, likes, and the
  notifications all of these would have caused.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Table

from kith.accounts.models import Account, InstanceSettings, User
from kith.accounts.passwords import hash_password
from kith.db import id_for_time
from kith.graph.models import Follow
from kith.notifications.models import Notification
from kith.posts.models import Like, Mention, Post, PostTag, Tag

DAY_MS = 86_400_000
POST_WINDOW_DAYS = 60
BATCH = 20_000
BASE_URL = "http://127.0.0.1:8000"  # only used inside post URIs and links
PASSWORD = "bench-garden-password"
# kith.db.id_for_time at the Unix epoch: id_for_time(t) == (ms(t) << 16) + _ID_AT_EPOCH, exact in
# integers (going through a float timestamp can be off by a millisecond).
_ID_AT_EPOCH = id_for_time(datetime(1970, 1, 1, tzinfo=UTC))

FIRST = """maya joe ana li sam noor ravi ola finn mei tom ada kai lena omar ines yuki
paul sara ivan zoe liam nina hugo emma theo ruth amir jade cole lucia eli nora max
iris ben tara leo mila""".split()
LAST = """river stone field brook moss hill lake wood vale ash fern glen marsh cliff
shore bay reed heath dale ford""".split()
WORDS = """the a and of to in is it that for on with as was at by this we you be from
have are or but not had one all were they there her his can an which their if
would about out up what so them some just like time new good day make today morning
walk river light great coffee train book garden city music rain sun week friend
think really still little world people town market bread bike photo night school
work home small long first last street park tree birds sea cloud winter summer
spring autumn cook recipe soup tea dog cat kids game match team local council
library museum film show song band concert trail hill lake beach forest snow storm
wind quiet busy happy tired finally maybe never always again soon later tonight
weekend holiday repair build code open source release bug fix design draft
paint drawing poem story news read write learn teach plant seed harvest
""".split()
TAG_STEMS = """photography walks gardening books music coffee cycling cooking art
localnews weather hiking birds cats dogs opensource python linux climate
football running film podcasts history science space poetry knitting baking
travel trains maps boardgames chess design typography fediverse""".split()
LANGS = ["en"] * 8 + ["de", "fr", "es", "pt"]


@dataclass(frozen=True)
class Scale:
    """How big a world to seed."""

    accounts: int = 10_000
    posts: int = 1_000_000
    follows: int = 150  # mean follows per account
    seed: int = 20240501

    @property
    def key(self) -> str:
        return f"a{self.accounts}-p{self.posts}-f{self.follows}-s{self.seed}"


@dataclass
class WorldFacts:
    """What a benchmark needs to know about the seeded world (and reports about it)."""

    account_ids: list[int]
    usernames: list[str]
    viewer_ids: list[int]  # active, not suspended
    tag_names: list[str]
    rows: dict[str, int]
    followers_max: int
    followers_p99: int
    followers_median: int
    accounts_over_1000_followers: int
    follows_median: int


class IdClock:
    """Strictly increasing time-sortable ids for events given in time order (ms since epoch).

    `tag` goes into the top bits of the 16-bit counter, so two clocks used for the same table
    (e.g. post notifications and like notifications) never hand out the same id."""

    def __init__(self, tag: int = 0, tag_bits: int = 0) -> None:
        self._last = 0
        self._tag = tag << (16 - tag_bits) if tag_bits else 0
        self._mask = (1 << (16 - tag_bits)) - 1

    def at(self, ms: int) -> int:
        candidate = ((ms << 16) + _ID_AT_EPOCH) | self._tag
        if candidate <= self._last:
            candidate = self._last + 1
            if (candidate & self._mask) == 0:  # counter overflowed within one millisecond
                candidate = ((candidate >> 16) + 1) << 16 | self._tag
        self._last = candidate
        return candidate


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _lognormal_count(rng: random.Random, mean: float, sigma: float, lo: int, hi: int) -> int:
    # mu = -sigma²/2 keeps the mean of the multiplier at 1.
    return max(lo, min(hi, int(round(mean * rng.lognormvariate(-sigma * sigma / 2, sigma)))))


def _defaults(table: Table) -> dict[str, Any]:
    """Python-side scalar defaults of a table's columns (for columns a row leaves out)."""
    out: dict[str, Any] = {}
    for col in table.columns:
        d = col.default
        if d is None:
            out[col.name] = None
        elif getattr(d, "is_scalar", False):
            out[col.name] = d.arg  # type: ignore[attr-defined]
        elif getattr(d, "is_callable", False):
            out[col.name] = d.arg(None)  # type: ignore[attr-defined]
        else:
            out[col.name] = None
    return out


def complete_rows(table: Table, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with every column present (defaults filled in), so both loaders see full rows."""
    base = _defaults(table)
    missing = [c for c in base if c not in rows[0]] if rows else []
    if not missing:
        return rows
    fill = {c: base[c] for c in missing}
    return [{**fill, **r} for r in rows]


def json_columns(table: Table) -> set[str]:
    return {c.name for c in table.columns if isinstance(c.type, JSON)}


class World:
    """The generated community; `batches()` yields (table, rows) in foreign-key order."""

    def __init__(self, scale: Scale, now: datetime | None = None) -> None:
        self.scale = scale
        self.rng = random.Random(scale.seed)
        now = now or datetime.now(UTC).replace(microsecond=0)
        self.now_ms = int(now.timestamp() * 1000)
        self.counts: dict[str, int] = {}

    # --- people and the graph ------------------------------------------------------------

    def _people(self) -> None:
        rng, n = self.rng, self.scale.accounts
        start = self.now_ms - 400 * DAY_MS
        end = self.now_ms - (POST_WINDOW_DAYS + 1) * DAY_MS
        self.acc_ms = sorted(rng.randrange(start, end) for _ in range(n))
        clock = IdClock()
        self.acc_ids = [clock.at(ms) for ms in self.acc_ms]
        self.usernames = [f"{FIRST[i % len(FIRST)]}{i}" for i in range(n)]
        self.display = [f"{rng.choice(FIRST).title()} {rng.choice(LAST).title()}" for _ in range(n)]
        ranks = list(range(n))
        rng.shuffle(ranks)
        self.rank = ranks
        # Zipf-like popularity (s≈1): rank 0 is followed by most, the tail by a handful.
        self.follow_weight = [1.0 / (r + 2) ** 1.05 for r in ranks]
        self.activity = [rng.lognormvariate(0, 1.0) for _ in range(n)]
        self.suspended = {i for i in rng.sample(range(n), max(0, n // 500))}
        self.silenced = {i for i in rng.sample(range(n), max(0, n // 200))} - self.suspended

    def _graph(self) -> None:
        rng, n = self.rng, self.scale.accounts
        cum = list(itertools.accumulate(self.follow_weight))
        population = range(n)
        hi = max(1, min(n - 1, self.scale.follows * 6))
        follows: list[tuple[int, int, int]] = []  # (ms, follower, followee)
        self.following: list[list[int]] = []
        for i in population:
            want = _lognormal_count(rng, self.scale.follows, 0.5, min(5, n - 1), hi)
            picked: set[int] = set()
            tries = 0
            while len(picked) < want and tries < 50:
                tries += 1
                need = want - len(picked)
                for j in rng.choices(population, cum_weights=cum, k=need + need // 4 + 4):
                    if j != i:
                        picked.add(j)
                        if len(picked) >= want:
                            break
            lo = max(self.acc_ms[i], self.now_ms - 300 * DAY_MS)
            for j in picked:
                follows.append((rng.randrange(lo, self.now_ms - DAY_MS), i, j))
            self.following.append(sorted(picked))
        follows.sort()
        self.follows = follows
        fcount = [0] * n
        for _, _, j in follows:
            fcount[j] += 1
        self.follower_count = fcount

    # --- posts ---------------------------------------------------------------------------

    def _post_skeleton(self) -> None:
        """Decide every post's author, time, kind and audience before any row is written,
        so replies, boosts and likes can point back and counters are known up front."""
        rng, p = self.rng, self.scale.posts
        start = self.now_ms - POST_WINDOW_DAYS * DAY_MS
        self.post_ms = sorted(rng.randrange(start, self.now_ms - 60_000) for _ in range(p))
        clock = IdClock()
        self.post_ids = [clock.at(ms) for ms in self.post_ms]
        self.author = rng.choices(range(self.scale.accounts), weights=self.activity, k=p)
        # visibility codes: 0 public, 1 unlisted, 2 private, 3 direct
        self.vis = bytearray(p)
        self.reply_to = [-1] * p
        self.root = [-1] * p
        self.reblog_of = [-1] * p
        self.replies_count = [0] * p
        self.reblogs_count = [0] * p
        boostable: list[int] = []  # public/unlisted originals, in time order
        boosted: set[tuple[int, int]] = set()
        for k in range(p):
            roll = rng.random()
            a = self.author[k]
            if roll < 0.08 and len(boostable) > 50:
                target = boostable[-1 - min(len(boostable) - 1, int(rng.expovariate(1 / 3000)))]
                if self.author[target] != a and (a, target) not in boosted:
                    boosted.add((a, target))
                    self.reblog_of[k] = target
                    self.vis[k] = self.vis[target]
                    self.reblogs_count[target] += 1
                    continue
            if roll < 0.26 and len(boostable) > 50:
                parent = boostable[-1 - min(len(boostable) - 1, int(rng.expovariate(1 / 2000)))]
                if rng.random() < 0.15:  # a thread: the parent's author continues it
                    self.author[k] = a = self.author[parent]
                self.reply_to[k] = parent
                self.root[k] = self.root[parent] if self.root[parent] >= 0 else parent
                self.replies_count[parent] += 1
                r = rng.random()
                self.vis[k] = 0 if r < 0.7 else 1 if r < 0.92 else 2
            else:
                r = rng.random()
                self.vis[k] = 0 if r < 0.75 else 1 if r < 0.85 else 2 if r < 0.95 else 3
            if self.vis[k] <= 1 and self.reply_to[k] < 0:
                boostable.append(k)
        self.boost_count = len(boosted)

    def _likes(self) -> None:
        rng, p, n = self.rng, self.scale.posts, self.scale.accounts
        originals = [k for k in range(p) if self.reblog_of[k] < 0 and self.vis[k] <= 1]
        total = p // 2
        seen: set[int] = set()
        likes: list[tuple[int, int, int]] = []  # (ms, account index, post index)
        self.likes_count = [0] * p
        for _ in range(total):
            k = originals[-1 - min(len(originals) - 1, int(rng.expovariate(3 / len(originals))))]
            a = rng.randrange(n)
            key = a * (p + 1) + k
            if a == self.author[k] or key in seen or a in self.suspended:
                continue
            seen.add(key)
            ms = min(self.now_ms - 1000, self.post_ms[k] + int(rng.expovariate(1 / 3_600_000)))
            likes.append((ms, a, k))
            self.likes_count[k] += 1
        likes.sort()
        self.likes = likes

    # --- rows ----------------------------------------------------------------------------

    def _account_rows(self) -> Iterator[tuple[Table, list[dict[str, Any]]]]:
        acc: list[dict[str, Any]] = []
        users: list[dict[str, Any]] = []
        # One real hash for every seeded login: hashing 10,000 passwords would take minutes.
        password_hash = hash_password(PASSWORD)
        uclock = IdClock()
        read_floor = self.now_ms - 7 * DAY_MS
        for i, aid in enumerate(self.acc_ids):
            created = _dt(self.acc_ms[i])
            name = self.usernames[i]
            bio = f"{self.display[i]} lives by the {LAST[i % len(LAST)]}."
            acc.append(
                {
                    "id": aid,
                    "username": name,
                    "username_key": name,
                    "domain": "",
                    "display_name": self.display[i],
                    "bio_source": bio,
                    "bio_html": f"<p>{bio}</p>",
                    "fields": [],
                    "locked": False,
                    "discoverable": True,
                    "hide_network": False,
                    "suspended_at": created + timedelta(days=30) if i in self.suspended else None,
                    "silenced_at": created + timedelta(days=30) if i in self.silenced else None,
                    "created_at": created,
                }
            )
            users.append(
                {
                    "id": uclock.at(self.acc_ms[i]),
                    "account_id": aid,
                    "email": f"{name}@bench.example",
                    "email_key": f"{name}@bench.example",
                    "password_hash": password_hash,
                    "is_admin": i == 0,
                    "state": "active",
                    "email_confirmed_at": created,
                    "notifications_read_id": (self.rng.randrange(read_floor, self.now_ms) << 16)
                    + _ID_AT_EPOCH,
                    "created_at": created,
                }
            )
        for start in range(0, len(acc), BATCH):
            yield Account.__table__, acc[start : start + BATCH]
        for start in range(0, len(users), BATCH):
            yield User.__table__, users[start : start + BATCH]
        yield (
            InstanceSettings.__table__,
            [{"id": 1, "name": "Kith bench", "description": "", "rules": []}],
        )
        self.counts["accounts"] = len(acc)

    def _follow_rows(self) -> Iterator[tuple[Table, list[dict[str, Any]]]]:
        clock = IdClock()
        batch: list[dict[str, Any]] = []
        for ms, i, j in self.follows:
            batch.append(
                {
                    "follower_id": self.acc_ids[i],
                    "followee_id": self.acc_ids[j],
                    "id": clock.at(ms),
                    "show_reblogs": self.rng.random() > 0.05,
                    "notify": False,
                    "created_at": _dt(ms),
                }
            )
            if len(batch) >= BATCH:
                yield Follow.__table__, batch
                batch = []
        if batch:
            yield Follow.__table__, batch
        self.counts["follows"] = len(self.follows)

    def _tag_rows(self) -> Iterator[tuple[Table, list[dict[str, Any]]]]:
        count = max(len(TAG_STEMS), min(2000, self.scale.posts // 200))
        names = list(TAG_STEMS) + [
            f"{TAG_STEMS[k % len(TAG_STEMS)]}{k}" for k in range(count - len(TAG_STEMS))
        ]
        clock = IdClock()
        ms = self.now_ms - (POST_WINDOW_DAYS + 1) * DAY_MS
        self.tag_names = names
        self.tag_ids = [clock.at(ms) for _ in names]
        self.tag_cum = list(itertools.accumulate(1.0 / (r + 1) for r in range(len(names))))
        rows = [
            {"id": tid, "name": name, "display_name": name}
            for tid, name in zip(self.tag_ids, names, strict=True)
        ]
        self.counts["tags"] = len(rows)
        yield Tag.__table__, rows

    def _mention_targets(self, k: int) -> list[int]:
        """Who a post mentions: the parent's author for a reply, people for a direct post."""
        rng, a = self.rng, self.author[k]
        out: list[int] = []
        parent = self.reply_to[k]
        if parent >= 0 and self.author[parent] != a:
            out.append(self.author[parent])
        if self.vis[k] == 3:
            pool = self.following[a] or [rng.randrange(self.scale.accounts)]
            out.extend(rng.sample(pool, min(len(pool), rng.choice((1, 1, 2, 3)))))
        elif rng.random() < 0.1:
            out.append(rng.randrange(self.scale.accounts))
        return [m for m in dict.fromkeys(out) if m != a and m not in self.suspended]

    def _text(self, mentions: list[int], tags: list[int]) -> tuple[str, str]:
        rng = self.rng
        words = rng.choices(WORDS, k=rng.randint(4, 40))
        words[0] = words[0].capitalize()
        body = " ".join(words) + rng.choice((".", "!", "?", "", "."))
        src_parts = [f"@{self.usernames[m]}" for m in mentions] + [body]
        html_parts = [
            f'<span class="h-card"><a href="{BASE_URL}/@{self.usernames[m]}" '
            f'class="u-url mention">@<span>{self.usernames[m]}</span></a></span>'
            for m in mentions
        ] + [body]
        for t in tags:
            name = self.tag_names[t]
            src_parts.append(f"#{name}")
            html_parts.append(
                f'<a href="{BASE_URL}/tags/{name}" class="hashtag" rel="tag">#{name}</a>'
            )
        return " ".join(src_parts), "<p>" + " ".join(html_parts) + "</p>"

    def _post_rows(self) -> Iterator[tuple[Table, list[dict[str, Any]]]]:
        rng = self.rng
        vis_names = ("public", "unlisted", "private", "direct")
        nclock = IdClock(tag=0, tag_bits=1)
        counts = {"mentions": 0, "post_tags": 0, "notifications": 0}
        for start in range(0, self.scale.posts, BATCH):
            posts: list[dict[str, Any]] = []
            mentions: list[dict[str, Any]] = []
            post_tags: list[dict[str, Any]] = []
            notes: list[dict[str, Any]] = []
            for k in range(start, min(start + BATCH, self.scale.posts)):
                a, pid, ms = self.author[k], self.post_ids[k], self.post_ms[k]
                username = self.usernames[a]
                created = _dt(ms)
                row: dict[str, Any] = {
                    "id": pid,
                    "account_id": self.acc_ids[a],
                    "visibility": vis_names[self.vis[k]],
                    "created_at": created,
                    "replies_count": self.replies_count[k],
                    "reblogs_count": self.reblogs_count[k],
                    "likes_count": self.likes_count[k],
                    "in_reply_to_id": None,
                    "in_reply_to_account_id": None,
                    "thread_root_id": None,
                    "reblog_of_id": None,
                    "source": "",
                    "content_html": "",
                    "spoiler_text": "",
                    "sensitive": False,
                    "language": None,
                }
                target = self.reblog_of[k]
                if target >= 0:
                    row["reblog_of_id"] = self.post_ids[target]
                    row["uri"] = f"{BASE_URL}/boosts/{pid}"
                    posts.append(row)
                    notes.append(self._note(nclock, ms, self.author[target], "reblog", a, target))
                    continue
                row["uri"] = f"{BASE_URL}/@{username}/{pid}"
                parent = self.reply_to[k]
                if parent >= 0:
                    row["in_reply_to_id"] = self.post_ids[parent]
                    row["in_reply_to_account_id"] = self.acc_ids[self.author[parent]]
                    row["thread_root_id"] = self.post_ids[self.root[k]]
                    if self.author[parent] != a:
                        notes.append(self._note(nclock, ms, self.author[parent], "reply", a, k))
                ments = self._mention_targets(k)
                tags: list[int] = []
                if rng.random() < 0.22:
                    picks = rng.choices(range(len(self.tag_names)), cum_weights=self.tag_cum, k=3)
                    tags = list(dict.fromkeys(picks[: rng.randint(1, 3)]))
                row["source"], row["content_html"] = self._text(ments, tags)
                row["language"] = rng.choice(LANGS)
                if rng.random() < 0.03:
                    row["spoiler_text"] = "spoilers"
                    row["sensitive"] = True
                posts.append(row)
                for m in ments:
                    mentions.append({"post_id": pid, "account_id": self.acc_ids[m]})
                    if not (parent >= 0 and m == self.author[parent]):
                        notes.append(self._note(nclock, ms, m, "mention", a, k))
                for t in tags:
                    post_tags.append({"tag_id": self.tag_ids[t], "post_id": pid})
            yield Post.__table__, posts
            if mentions:
                yield Mention.__table__, mentions
            if post_tags:
                yield PostTag.__table__, post_tags
            if notes:
                yield Notification.__table__, notes
            counts["mentions"] += len(mentions)
            counts["post_tags"] += len(post_tags)
            counts["notifications"] += len(notes)
        self.counts["posts"] = self.scale.posts
        self.counts.update(counts)

    def _note(
        self, clock: IdClock, ms: int, recipient: int, kind: str, actor: int, k: int
    ) -> dict[str, Any]:
        return {
            "id": clock.at(ms),
            "account_id": self.acc_ids[recipient],
            "type": kind,
            "from_account_id": self.acc_ids[actor],
            "post_id": self.post_ids[k],
            "created_at": _dt(ms),
        }

    def _like_rows(self) -> Iterator[tuple[Table, list[dict[str, Any]]]]:
        lclock = IdClock()
        nclock = IdClock(tag=1, tag_bits=1)
        likes: list[dict[str, Any]] = []
        notes: list[dict[str, Any]] = []
        for ms, a, k in self.likes:
            likes.append(
                {
                    "account_id": self.acc_ids[a],
                    "post_id": self.post_ids[k],
                    "id": lclock.at(ms),
                    "created_at": _dt(ms),
                }
            )
            notes.append(self._note(nclock, ms, self.author[k], "favourite", a, k))
            if len(likes) >= BATCH:
                yield Like.__table__, likes
                yield Notification.__table__, notes
                likes, notes = [], []
        if likes:
            yield Like.__table__, likes
            yield Notification.__table__, notes
        self.counts["likes"] = len(self.likes)
        self.counts["notifications"] = self.counts.get("notifications", 0) + len(self.likes)

    def batches(self) -> Iterator[tuple[Table, list[dict[str, Any]]]]:
        """Every row of the world, in batches, parents before children."""
        self._people()
        self._graph()
        self._post_skeleton()
        self._likes()
        yield from self._account_rows()
        yield from self._follow_rows()
        yield from self._tag_rows()
        yield from self._post_rows()
        yield from self._like_rows()

    def facts(self) -> WorldFacts:
        """Summary of the generated world (call after `batches()` was consumed)."""
        fc = sorted(self.follower_count)
        nf = sorted(len(f) for f in self.following)
        n = len(fc)
        return WorldFacts(
            account_ids=list(self.acc_ids),
            usernames=list(self.usernames),
            viewer_ids=[a for i, a in enumerate(self.acc_ids) if i not in self.suspended],
            tag_names=list(self.tag_names),
            rows=dict(self.counts),
            followers_max=fc[-1],
            followers_p99=fc[min(n - 1, int(n * 0.99))],
            followers_median=fc[n // 2],
            accounts_over_1000_followers=sum(1 for c in fc if c >= 1000),
            follows_median=nf[n // 2],
        )


def facts_to_json(f: WorldFacts) -> dict[str, Any]:
    """The world summary as stored next to a cached database (ids and names excluded)."""
    return {
        "rows": f.rows,
        "followers_max": f.followers_max,
        "followers_p99": f.followers_p99,
        "followers_median": f.followers_median,
        "accounts_over_1000_followers": f.accounts_over_1000_followers,
        "follows_median": f.follows_median,
    }


def encode_json_values(table: Table, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """JSON columns as text (what asyncpg's COPY expects for a json column)."""
    cols = json_columns(table)
    if not cols:
        return rows
    return [{**r, **{c: json.dumps(r[c]) for c in cols if c in r}} for r in rows]
