"""Home feeds kept on write by triggers

`home_feeds` and `home_entries` (declared in the models, created by 0001) hold, for each
person whose Home is kept, every post that may belong in it above the feed's floor: what the
Home query would have to search for among all their followed accounts' posts. Triggers add
the entries whichever code path writes (local posting, federation, imports):

- a new post: to its author's feed and to the feeds of its author's followers;
- a hashtag on a post: to the feeds of the people following that hashtag;
- a new follow: the followee's posts above the follower's floor;
- a newly followed hashtag: its posts above the floor.

Entries are candidates only: reading applies the whole policy (visibility, blocks, mutes,
boosts and replies rules), so nothing needs removing when a follow, block or mute ends or
begins. Only feeds that exist get entries (people who read Home; timelines.feeds).

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (trigger, table, the SELECT of (account_id, post_id) rows to add, in terms of NEW)
_RULES = (
    (
        "home_post_added",
        "posts",
        """SELECT f.follower_id, NEW.id FROM follows f
  JOIN home_feeds h ON h.account_id = f.follower_id
  WHERE f.followee_id = NEW.account_id
  UNION ALL
  SELECT h.account_id, NEW.id FROM home_feeds h WHERE h.account_id = NEW.account_id""",
    ),
    (
        "home_post_tagged",
        "post_tags",
        """SELECT t.account_id, NEW.post_id FROM tag_follows t
  JOIN home_feeds h ON h.account_id = t.account_id
  WHERE t.tag_id = NEW.tag_id""",
    ),
    (
        "home_followed",
        "follows",
        """SELECT h.account_id, p.id FROM home_feeds h
  JOIN posts p ON p.account_id = NEW.followee_id AND p.id > h.floor_id
  WHERE h.account_id = NEW.follower_id""",
    ),
    (
        "home_tag_followed",
        "tag_follows",
        """SELECT h.account_id, pt.post_id FROM home_feeds h
  JOIN post_tags pt ON pt.tag_id = NEW.tag_id AND pt.post_id > h.floor_id
  WHERE h.account_id = NEW.account_id""",
    ),
)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, table, rows in _RULES:
        if postgres:
            op.execute(
                f"""CREATE FUNCTION kith_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM home_feeds) THEN
    INSERT INTO home_entries (account_id, post_id)
    {rows}
    ON CONFLICT DO NOTHING;
  END IF;
  RETURN NULL;
END $$"""  # noqa: S608 (statements from this module's constants)
            )
            op.execute(
                f"CREATE TRIGGER {name} AFTER INSERT ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION kith_{name}()"
            )
        else:
            # WHEN: nothing to look up while nobody has a feed (bulk imports, new instances).
            op.execute(
                f"""CREATE TRIGGER {name} AFTER INSERT ON {table}
WHEN EXISTS (SELECT 1 FROM home_feeds) BEGIN
  INSERT OR IGNORE INTO home_entries (account_id, post_id)
  {rows};
END"""  # noqa: S608 (statements from this module's constants)
            )


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, table, _rows in _RULES:
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS kith_{name}()")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute("DELETE FROM home_entries")
    op.execute("DELETE FROM home_feeds")
