"""community threads' score kept by triggers

`community_posts.score` (declared in the models, created by 0001) is a thread's likes + boosts
+ replies in the community: what the "top" feed sorts by. Sorting on a sum over two tables
could not use an index (47 ms for "top of all time" in a 13,500-thread community); triggers
keep the sum on the row, whichever code path changes a counter (local likes, federation
handlers, recounts), and `ix_community_posts_top` sorts by it.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BACKFILL = """
UPDATE community_posts SET score = thread_replies + coalesce(
  (SELECT p.likes_count + p.reblogs_count FROM posts p WHERE p.id = community_posts.post_id), 0)
"""

_FROM_POST = """coalesce((SELECT p.likes_count + p.reblogs_count FROM posts p
                                  WHERE p.id = NEW.post_id), 0)"""

# SQLite cannot change NEW in a BEFORE trigger: each sets the row it fired for. Recursive
# triggers are off, and `score` is not a column these fire on.
_SQLITE = [
    f"""
CREATE TRIGGER community_posts_score_added AFTER INSERT ON community_posts BEGIN
  UPDATE community_posts SET score = NEW.thread_replies + {_FROM_POST}
  WHERE community_id = NEW.community_id AND post_id = NEW.post_id;
END
""",  # noqa: S608 - built from constants
    f"""
CREATE TRIGGER community_posts_score_replies AFTER UPDATE OF thread_replies ON community_posts
BEGIN
  UPDATE community_posts SET score = NEW.thread_replies + {_FROM_POST}
  WHERE community_id = NEW.community_id AND post_id = NEW.post_id;
END
""",  # noqa: S608 - built from constants
    """
CREATE TRIGGER community_posts_score_counters AFTER UPDATE OF likes_count, reblogs_count ON posts
WHEN NEW.likes_count + NEW.reblogs_count <> OLD.likes_count + OLD.reblogs_count
BEGIN
  UPDATE community_posts SET score = thread_replies + NEW.likes_count + NEW.reblogs_count
  WHERE post_id = NEW.id;
END
""",
]

_POSTGRES = [
    f"""
CREATE FUNCTION kith_community_posts_score() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.score := NEW.thread_replies + {_FROM_POST};
  RETURN NEW;
END $$
""",
    """
CREATE TRIGGER community_posts_score BEFORE INSERT OR UPDATE OF thread_replies
ON community_posts FOR EACH ROW EXECUTE FUNCTION kith_community_posts_score()
""",
    """
CREATE FUNCTION kith_community_posts_counters() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE community_posts SET score = thread_replies + NEW.likes_count + NEW.reblogs_count
  WHERE post_id = NEW.id;
  RETURN NULL;
END $$
""",
    """
CREATE TRIGGER community_posts_score_counters AFTER UPDATE OF likes_count, reblogs_count
ON posts FOR EACH ROW
WHEN (NEW.likes_count + NEW.reblogs_count IS DISTINCT FROM OLD.likes_count + OLD.reblogs_count)
EXECUTE FUNCTION kith_community_posts_counters()
""",
]


def upgrade() -> None:
    op.execute(_BACKFILL)
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in _POSTGRES if postgres else _SQLITE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS community_posts_score_counters ON posts")
        op.execute("DROP TRIGGER IF EXISTS community_posts_score ON community_posts")
        op.execute("DROP FUNCTION IF EXISTS kith_community_posts_counters()")
        op.execute("DROP FUNCTION IF EXISTS kith_community_posts_score()")
    else:
        for name in ("added", "replies", "counters"):
            op.execute(f"DROP TRIGGER IF EXISTS community_posts_score_{name}")
