"""`kith demo`: a small, living community written for Kith, loaded into an empty database."""

from __future__ import annotations

import random

from sqlalchemy import func, select

from kith import policy
from kith.accounts import service as accounts
from kith.accounts.models import User
from kith.config import Settings
from kith.demo_communities import load_communities
from kith.errors import KithError
from kith.graph import service as graph
from kith.posts import service as posts
from kith.posts.models import Visibility
from kith.posts.service import PollInput, PostInput
from kith.runtime import Runtime

DEMO_PASSWORD = "kith-demo-garden"  # noqa: S105 (demo accounts only; printed by `make run`)

FIRST = (
    "ada",
    "bea",
    "cai",
    "dev",
    "eli",
    "fen",
    "gus",
    "hana",
    "ivo",
    "jun",
    "kai",
    "lena",
    "milo",
    "nia",
    "oli",
    "pia",
    "quin",
    "rosa",
    "sam",
    "tao",
    "uma",
    "vic",
    "wren",
    "xia",
    "yara",
    "zed",
)
PLACES = ("riverside", "hilltop", "harbour", "oldtown", "market", "orchard")
TOPICS = {
    "gardening": [
        "The tomatoes finally turned red. Three months of patience. #gardening",
        "Anyone swapping seeds this spring? I have too many courgette seeds. #gardening #seedswap",
        "Compost question: how wet is too wet? Mine smells like a swamp. #gardening",
    ],
    "cycling": [
        "New bike lane on the bridge is open and it is glorious. #cycling #riverside",
        "Group ride Saturday 9:00 from the market square, easy pace, everyone welcome. #cycling",
        "Fixed my first puncture without help. Small victories. #cycling",
    ],
    "books": [
        "Finished a novel in one sitting for the first time in years. #books",
        "The library's book sale starts Friday. Bring a bag, or three. #books #oldtown",
        "Reading group picks for next month? Leaning towards something short. #books",
    ],
    "food": [
        "Made bread with the sourdough starter from the market. It rose! #food #baking",
        "Best soup in town is the lentil one at the harbour café. Fight me. #food #harbour",
        "Pickling everything this week. The fridge is 40% jars. #food",
    ],
    "music": [
        "The choir needs tenors. We have biscuits. #music",
        "Open mic at the orchard hall on Thursday, sign-up at the door. #music #orchard",
        "Learning the accordion, apologies to my neighbours. #music",
    ],
    "town": [
        "The footbridge repair finished early. Whoever planned it: thank you. #town",
        "Lost: one grey cat, answers to Pickle, last seen near the hilltop steps. #town #hilltop",
        "Street clean-up on Sunday morning, gloves provided. #town #volunteering",
    ],
}


async def load_demo(
    settings: Settings, *, force: bool = False, people: int = 50, seed: int = 7
) -> str:
    """Create ~50 people with profiles, follows, posts, replies, polls and likes, and a dozen
    communities (`kith.demo_communities`)."""
    rng = random.Random(seed)
    rt = Runtime.from_settings(settings)
    try:
        async with rt.sessions() as db:
            if not force and await db.scalar(select(func.count()).select_from(User)):
                return "database already has accounts: demo data not loaded"
            admin = await accounts.register(
                db,
                username="gardener",
                email="gardener@demo.kith.invalid",
                password=DEMO_PASSWORD,
                admin=True,
                bypass_mode=True,
            )
            members = [admin.account]
            instance = await accounts.get_instance_settings(db)
            instance.name = "Kith Riverside"
            instance.description = "A friendly demo town on Kith. Everything here is made up."
            instance.rules = [
                "Be kind.",
                "No ads or spam.",
                "Put spoilers and heavy topics behind a content warning.",
            ]
            await db.commit()
            for i in range(people - 1):
                name = (
                    f"{FIRST[i % len(FIRST)]}_{PLACES[i % len(PLACES)]}"
                    if i >= len(FIRST)
                    else FIRST[i]
                )
                reg = await accounts.register(
                    db,
                    username=name,
                    email=f"{name}@demo.kith.invalid",
                    password=DEMO_PASSWORD,
                    bypass_mode=True,
                )
                acc = reg.account
                topics = rng.sample(sorted(TOPICS), 2)
                acc.display_name = name.split("_")[0].capitalize()
                acc.bio_source = (
                    f"Into {topics[0]} and {topics[1]}. Lives near the {rng.choice(PLACES)}."
                )
                acc.bio_html = f"<p>{acc.bio_source}</p>"
                acc.pronouns = rng.choice(["she/her", "he/him", "they/them", ""])
                acc.locked = i % 13 == 5
                await db.commit()
                members.append(acc)
            # Follows with skew: the first few are followed by most people.
            for acc in members:
                k = rng.randint(5, 20)
                popular = members[:5]
                targets = set(rng.sample(members, k)) | set(rng.sample(popular, 3))
                for t in targets:
                    if t.id != acc.id:
                        await graph.follow(db, acc.id, t.id)
            created = []
            for _ in range(people * 3):
                author = rng.choice(members)
                source = rng.choice(TOPICS[rng.choice(sorted(TOPICS))])
                vis = rng.choices(
                    [Visibility.PUBLIC, Visibility.UNLISTED, Visibility.PRIVATE], [8, 1, 1]
                )[0]
                created.append(
                    await posts.create_post(
                        db, author, PostInput(source=source, visibility=vis, language="en")
                    )
                )
            for _ in range(people):
                parent = rng.choice(created)
                author = rng.choice(members)
                try:
                    reply = await posts.create_post(
                        db,
                        author,
                        PostInput(
                            source=rng.choice(
                                [
                                    "Same here!",
                                    "Good to know, thanks.",
                                    "I'll be there.",
                                    "Ha, yes.",
                                ]
                            ),
                            visibility=Visibility.PUBLIC,
                            in_reply_to_id=parent.id,
                            language="en",
                        ),
                    )
                    created.append(reply)
                except KithError:  # the parent may not be visible to this author: skip
                    continue
            poll_author = members[1]
            await posts.create_post(
                db,
                poll_author,
                PostInput(
                    source="Where should the summer picnic be? #town",
                    language="en",
                    poll=PollInput(
                        options=["Riverside meadow", "Orchard", "Harbour steps"],
                        expires_in=3 * 86400,
                    ),
                ),
            )
            for _ in range(people * 4):
                liker = rng.choice(members)
                post = rng.choice(created)
                try:
                    await posts.like(db, policy.Viewer(liker.id), post.id)
                except KithError:  # not visible to this person: skip
                    continue
            made = await load_communities(db, members, rng)
        return (
            f"demo loaded: {people} people, {len(made)} communities. Sign in as 'gardener' "
            f"(admin) or any demo member with password '{DEMO_PASSWORD}'"
        )
    finally:
        await rt.close()
