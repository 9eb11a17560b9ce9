"""account counters kept by triggers

`account_stats` (declared in the models, created by 0001) holds each account's post, follower
and follow counts and its last post time. Triggers on `posts` and `follows` keep them: every
insert and delete counts, whichever code path (local services, federation handlers, cascades
of a deleted account) makes it. The counts were computed per request before, which for a
popular account meant counting thousands of follows each time one of its posts was shown.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BACKFILL = """
INSERT INTO account_stats (account_id, statuses_count, followers_count, following_count,
                           last_status_at)
SELECT a.id,
       (SELECT count(*) FROM posts p WHERE p.account_id = a.id),
       (SELECT count(*) FROM follows f WHERE f.followee_id = a.id),
       (SELECT count(*) FROM follows f WHERE f.follower_id = a.id),
       (SELECT max(p.created_at) FROM posts p WHERE p.account_id = a.id)
FROM accounts a
"""

# SQLite: one trigger per event; UPSERT because the row appears with the first post or follow.
_SQLITE = [
    """
CREATE TRIGGER account_stats_post_added AFTER INSERT ON posts BEGIN
  INSERT INTO account_stats (account_id, statuses_count, followers_count, following_count,
                             last_status_at)
  VALUES (NEW.account_id, 1, 0, 0, NEW.created_at)
  ON CONFLICT (account_id) DO UPDATE SET
    statuses_count = statuses_count + 1,
    last_status_at = max(coalesce(last_status_at, excluded.last_status_at),
                         excluded.last_status_at);
END
""",
    """
CREATE TRIGGER account_stats_post_removed AFTER DELETE ON posts BEGIN
  UPDATE account_stats SET
    statuses_count = max(statuses_count - 1, 0),
    last_status_at = (SELECT max(created_at) FROM posts WHERE account_id = OLD.account_id)
  WHERE account_id = OLD.account_id;
END
""",
    """
CREATE TRIGGER account_stats_follow_added AFTER INSERT ON follows BEGIN
  INSERT INTO account_stats (account_id, statuses_count, followers_count, following_count)
  VALUES (NEW.followee_id, 0, 1, 0)
  ON CONFLICT (account_id) DO UPDATE SET followers_count = followers_count + 1;
  INSERT INTO account_stats (account_id, statuses_count, followers_count, following_count)
  VALUES (NEW.follower_id, 0, 0, 1)
  ON CONFLICT (account_id) DO UPDATE SET following_count = following_count + 1;
END
""",
    """
CREATE TRIGGER account_stats_follow_removed AFTER DELETE ON follows BEGIN
  UPDATE account_stats SET followers_count = max(followers_count - 1, 0)
  WHERE account_id = OLD.followee_id;
  UPDATE account_stats SET following_count = max(following_count - 1, 0)
  WHERE account_id = OLD.follower_id;
END
""",
]

_POSTGRES = [
    """
CREATE FUNCTION kith_account_stats_posts() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO account_stats AS s (account_id, statuses_count, followers_count,
                                    following_count, last_status_at)
    VALUES (NEW.account_id, 1, 0, 0, NEW.created_at)
    ON CONFLICT (account_id) DO UPDATE SET
      statuses_count = s.statuses_count + 1,
      last_status_at = GREATEST(s.last_status_at, EXCLUDED.last_status_at);
    RETURN NEW;
  END IF;
  UPDATE account_stats SET
    statuses_count = GREATEST(statuses_count - 1, 0),
    last_status_at = (SELECT max(created_at) FROM posts WHERE account_id = OLD.account_id)
  WHERE account_id = OLD.account_id;
  RETURN OLD;
END $$
""",
    """
CREATE TRIGGER account_stats_posts AFTER INSERT OR DELETE ON posts
FOR EACH ROW EXECUTE FUNCTION kith_account_stats_posts()
""",
    """
CREATE FUNCTION kith_account_stats_follows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO account_stats AS s (account_id, statuses_count, followers_count,
                                    following_count)
    VALUES (NEW.followee_id, 0, 1, 0)
    ON CONFLICT (account_id) DO UPDATE SET followers_count = s.followers_count + 1;
    INSERT INTO account_stats AS s (account_id, statuses_count, followers_count,
                                    following_count)
    VALUES (NEW.follower_id, 0, 0, 1)
    ON CONFLICT (account_id) DO UPDATE SET following_count = s.following_count + 1;
    RETURN NEW;
  END IF;
  UPDATE account_stats SET followers_count = GREATEST(followers_count - 1, 0)
  WHERE account_id = OLD.followee_id;
  UPDATE account_stats SET following_count = GREATEST(following_count - 1, 0)
  WHERE account_id = OLD.follower_id;
  RETURN OLD;
END $$
""",
    """
CREATE TRIGGER account_stats_follows AFTER INSERT OR DELETE ON follows
FOR EACH ROW EXECUTE FUNCTION kith_account_stats_follows()
""",
]


def upgrade() -> None:
    op.execute("DELETE FROM account_stats")
    op.execute(_BACKFILL)
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in _POSTGRES if postgres else _SQLITE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS account_stats_follows ON follows")
        op.execute("DROP TRIGGER IF EXISTS account_stats_posts ON posts")
        op.execute("DROP FUNCTION IF EXISTS kith_account_stats_follows()")
        op.execute("DROP FUNCTION IF EXISTS kith_account_stats_posts()")
    else:
        for name in ("post_added", "post_removed", "follow_added", "follow_removed"):
            op.execute(f"DROP TRIGGER IF EXISTS account_stats_{name}")
    op.execute("DELETE FROM account_stats")
