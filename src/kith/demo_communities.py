"""The demo's micro-communities: a dozen of every membership model, with owners, moderators,
members, join requests, threads and replies, pins, a lock, a removal, an approval queue,
invites, a ban and so a moderation log. Everything goes through the communities' and posts'
services, so the demo obeys the same rules as people do."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from kith.accounts.models import Account
from kith.communities import moderation
from kith.communities import service as communities
from kith.communities.models import Community, MembershipModel, Role
from kith.communities.service import CommunityInput
from kith.posts import service as posts
from kith.posts.models import Post
from kith.posts.service import PostInput

OPEN, APPROVAL = MembershipModel.OPEN, MembershipModel.APPROVAL
INVITE, PRIVATE = MembershipModel.INVITE, MembershipModel.PRIVATE


@dataclass(frozen=True)
class DemoCommunity:
    handle: str
    name: str
    membership: MembershipModel
    topics: tuple[str, ...]
    description: str
    threads: tuple[str, ...]
    question: str = ""
    post_approval: bool = False


RULES = "1. Be kind.\n2. Stay on topic.\n3. No ads: ask the moderators first."
REPLIES = (
    "Count me in!",
    "Thanks for sharing this.",
    "I had the same problem last year — patience helps.",
    "Photos please!",
    "Great idea, let's do it next week.",
)
DEMO_COMMUNITIES = (
    DemoCommunity(
        "gardening",
        "Riverside Gardeners",
        OPEN,
        ("gardening", "seedswap"),
        "Allotments, balconies and window boxes: everything that grows.",
        (
            "Welcome! Introduce yourself and your patch of green. #gardening",
            "Slugs ate my lettuce again. What actually works? #gardening",
            "Seed swap at the market on the first Saturday. #seedswap",
        ),
    ),
    DemoCommunity(
        "bike_kitchen",
        "Bike Kitchen",
        OPEN,
        ("cycling",),
        "Fix your own bike with help from neighbours. Tools shared, tea provided.",
        (
            "Opening hours this month: Tuesdays and Saturdays. #cycling",
            "Which chain lube for wet winters? #cycling",
            "Found a good second-hand frame, what should I check? #cycling",
        ),
    ),
    DemoCommunity(
        "sourdough",
        "Sourdough Society",
        OPEN,
        ("food", "baking"),
        "Starters, loaves and crumb shots. New threads wait for a moderator.",
        (
            "Pinned: how to feed a starter, the short version. #baking",
            "My loaf is flat as a pancake, help. #baking",
        ),
        post_approval=True,
    ),
    DemoCommunity(
        "book_circle",
        "Oldtown Book Circle",
        APPROVAL,
        ("books",),
        "We read one book a month and meet at the library.",
        (
            "This month: a short novel, vote in the replies. #books",
            "Meeting notes from last Thursday. #books",
        ),
        question="What is the last book you loved?",
    ),
    DemoCommunity(
        "seed_library",
        "Seed Library",
        APPROVAL,
        ("gardening", "seedswap"),
        "A shared catalogue of local seeds. Members lend and return seeds each season.",
        ("Catalogue update: three new tomato varieties. #seedswap",),
        question="Which seeds could you bring?",
    ),
    DemoCommunity(
        "choir",
        "Harbour Choir",
        INVITE,
        ("music",),
        "Rehearsals on Wednesdays. Ask a member for an invite.",
        (
            "Sheet music for the spring concert is up. #music",
            "Tenors: extra rehearsal on Monday? #music",
        ),
    ),
    DemoCommunity(
        "board_games",
        "Board Game Night",
        INVITE,
        ("games",),
        "Friday nights at the orchard hall, by invitation (the room is small).",
        ("Who brings what this Friday? #games",),
    ),
    DemoCommunity(
        "parents",
        "Riverside Parents",
        PRIVATE,
        ("town", "family"),
        "A private place for parents in the neighbourhood.",
        (
            "Playground on Mill Street reopens Monday.",
            "Babysitting swap: who is in?",
        ),
        question="Which part of town do you live in?",
    ),
    DemoCommunity(
        "allotment_committee",
        "Allotment Committee",
        PRIVATE,
        ("gardening",),
        "The committee's own room: minutes, budgets and plots.",
        ("Draft budget for next year, comments by Friday.",),
    ),
    DemoCommunity(
        "town_hall",
        "Town Hall",
        OPEN,
        ("town", "volunteering"),
        "Local news, street works and volunteering.",
        (
            "Street clean-up on Sunday, gloves provided. #volunteering",
            "The footbridge is closed for two days next week. #town",
            "Ideas for the summer fair? #town",
        ),
    ),
    DemoCommunity(
        "photo_walks",
        "Photo Walks",
        OPEN,
        ("photography",),
        "Monthly walks with a camera (or a phone). All levels.",
        ("Next walk: the harbour at golden hour. #photography",),
    ),
    DemoCommunity(
        "night_owls",
        "Night Owls",
        PRIVATE,
        ("music", "books"),
        "For people who are up late. Quiet chat, no pressure.",
        ("What are you listening to tonight?",),
    ),
)


async def _thread(db: AsyncSession, author: Account, text: str, community: Community) -> Post:
    return await posts.create_post(
        db, author, PostInput(source=text, language="en", community_ids=[community.id])
    )


async def _reply(db: AsyncSession, author: Account, text: str, parent: Post) -> Post:
    return await posts.create_post(
        db, author, PostInput(source=text, language="en", in_reply_to_id=parent.id)
    )


async def _fill(
    db: AsyncSession, spec: DemoCommunity, owner: Account, people: list[Account], n: int
) -> tuple[Community, list[Account]]:
    """Found the community and bring `n` people in as its model allows; the first becomes
    a moderator. Returns the community and its members (owner first)."""
    data = CommunityInput(
        name=spec.name,
        description=spec.description,
        rules=RULES,
        topics=list(spec.topics),
        language="en",
        membership=spec.membership,
        join_question=spec.question,
    )
    community = await communities.create_community(db, owner.id, spec.handle, data)
    joining = people[:n]
    if spec.membership == OPEN:
        for who in joining:
            await communities.join(db, who.id, community)
    elif spec.membership == APPROVAL:
        for who in joining:
            await communities.join(db, who.id, community, answer="Happy to help out.")
            await moderation.approve(db, owner.id, community, who.id)
    else:  # invite and private: one invite code passed round
        _, code = await communities.create_invite(
            db, owner.id, community, expires_in=timedelta(days=30), max_uses=n + 5
        )
        for who in joining:
            await communities.join(db, who.id, community, invite_code=code)
    if joining:
        await moderation.set_role(db, owner.id, community, joining[0].id, Role.MODERATOR)
    return community, [owner, *joining]


async def load_communities(
    db: AsyncSession, people: list[Account], rng: random.Random
) -> list[Community]:
    """Create the demo's communities among `people` (people[0] is the demo admin, who owns
    two and so finds requests and a waiting post in their notifications)."""
    made: list[Community] = []
    admin, others = people[0], people[1:]
    for i, spec in enumerate(DEMO_COMMUNITIES):
        owner = admin if spec.handle in ("sourdough", "book_circle") else others[i % len(others)]
        pool = [p for p in others if p.id != owner.id]
        rng.shuffle(pool)
        size = rng.randint(5, 9)
        community, members = await _fill(db, spec, owner, pool, size)
        threads = [
            await _thread(db, members[(k + 1) % len(members)], text, community)
            for k, text in enumerate(spec.threads)
        ]
        for thread in threads:
            for author in rng.sample(members, 2):
                await _reply(db, author, rng.choice(REPLIES), thread)
        if spec.membership != OPEN and spec.question:
            # Requests still waiting for a moderator.
            for who in pool[size : size + 2]:
                await communities.join(db, who.id, community, answer="I'd love to join!")
        if threads:
            await moderation.pin_thread(db, owner.id, community, threads[0].id)
        made.append(community)
        await _moderate(db, spec, community, owner, members, threads)
    return made


async def _moderate(
    db: AsyncSession,
    spec: DemoCommunity,
    community: Community,
    owner: Account,
    members: list[Account],
    threads: list[Post],
) -> None:
    """The moderation the demo shows: a queue, a lock, a removal, a ban, more invites."""
    if spec.post_approval:
        community.post_approval = True
        await db.commit()
        approved = await _thread(db, members[-1], "Crumb shot of my first rye. #baking", community)
        await moderation.approve_post(db, owner.id, community, approved.id)
        await _thread(db, members[-2], "Is it okay to bake with rye only? #baking", community)
    if spec.handle == "town_hall" and len(threads) >= 3:
        await moderation.lock_thread(
            db, owner.id, community, threads[1].id, reason="Announcement: no replies needed."
        )
        await moderation.remove_post(
            db, owner.id, community, threads[2].id, reason="Duplicate of the fair thread."
        )
    if spec.handle == "bike_kitchen" and len(members) > 2:
        await moderation.ban(
            db,
            owner.id,
            community,
            members[-1].id,
            duration=timedelta(days=30),
            reason="Selling stolen parts.",
        )
    if spec.membership in (INVITE, PRIVATE):
        await communities.create_invite(db, owner.id, community, max_uses=10)
