"""render revisions kept by triggers

`posts.render_rev` and `accounts.render_rev` (declared in the models, created by 0001) count
the changes of what a Status or Account entity shows of the row. The API caches entities per
process keyed by them (mastodon_api/entity_cache.py), so every writer must bump them: that is
why triggers do it, whichever code path (local services, federation handlers, moderation,
the remote media cache) makes the change.

- posts: any UPDATE that sets a shown column (not the counters, which are read per request);
  any insert, update or delete of the post's media, mentions and hashtags.
- accounts: any UPDATE that sets a column the Account entity shows.

SQLite fires `UPDATE OF` triggers when a listed column is in the SET clause, PostgreSQL too;
the ORM only sets columns whose value changed.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POST_COLUMNS = (
    "account_id, visibility, content_html, spoiler_text, sensitive, language, in_reply_to_id, "
    "in_reply_to_account_id, reblog_of_id, created_at, edited_at, uri"
)
ACCOUNT_COLUMNS = (
    "username, domain, display_name, bio_source, bio_html, fields, avatar_path, header_path, "
    "locked, discoverable, hide_network, suspended_at, silenced_at, created_at, uri, "
    "moved_to_id, also_known_as"
)
# Tables whose rows are part of a post's entity: (table, events).
POST_PARTS = (("media_attachments", "INSERT", "UPDATE", "DELETE"), ("mentions", "INSERT", "DELETE"),
              ("post_tags", "INSERT", "DELETE"))  # fmt: skip

_BUMP_POST = "UPDATE posts SET render_rev = render_rev + 1 WHERE id IN ({ids});"


def _sqlite() -> list[str]:
    statements = [
        f"""CREATE TRIGGER posts_render_rev AFTER UPDATE OF {POST_COLUMNS} ON posts BEGIN
  UPDATE posts SET render_rev = render_rev + 1 WHERE id = NEW.id;
END""",  # noqa: S608 (column names from this module's constants)
        f"""CREATE TRIGGER accounts_render_rev AFTER UPDATE OF {ACCOUNT_COLUMNS} ON accounts BEGIN
  UPDATE accounts SET render_rev = render_rev + 1 WHERE id = NEW.id;
END""",  # noqa: S608 (column names from this module's constants)
    ]
    for table, *events in POST_PARTS:
        for event in events:
            row = {"INSERT": "NEW.post_id", "DELETE": "OLD.post_id"}.get(event)
            body = _BUMP_POST.format(ids=row or "OLD.post_id, NEW.post_id")  # each post once
            statements.append(
                f"CREATE TRIGGER {table}_render_rev_{event.lower()} AFTER {event} ON {table} "
                f"BEGIN\n  {body}\nEND"
            )
    return statements


def _postgres() -> list[str]:
    statements = [
        """CREATE FUNCTION kith_bump_render_rev() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.render_rev := OLD.render_rev + 1;
  RETURN NEW;
END $$""",
        f"""CREATE TRIGGER posts_render_rev BEFORE UPDATE OF {POST_COLUMNS} ON posts
FOR EACH ROW EXECUTE FUNCTION kith_bump_render_rev()""",
        f"""CREATE TRIGGER accounts_render_rev BEFORE UPDATE OF {ACCOUNT_COLUMNS} ON accounts
FOR EACH ROW EXECUTE FUNCTION kith_bump_render_rev()""",
        """CREATE FUNCTION kith_bump_post_render_rev() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.post_id IS NOT NULL THEN
    UPDATE posts SET render_rev = render_rev + 1 WHERE id = OLD.post_id;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.post_id IS NOT NULL
     AND (TG_OP = 'INSERT' OR NEW.post_id IS DISTINCT FROM OLD.post_id) THEN
    UPDATE posts SET render_rev = render_rev + 1 WHERE id = NEW.post_id;
  END IF;
  RETURN NULL;
END $$""",
    ]
    for table, *events in POST_PARTS:
        statements.append(
            f"CREATE TRIGGER {table}_render_rev AFTER {' OR '.join(events)} ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION kith_bump_post_render_rev()"
        )
    return statements


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in _postgres() if postgres else _sqlite():
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in ("posts", "accounts", *(t for t, *_ in POST_PARTS)):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_render_rev ON {table}")
        op.execute("DROP FUNCTION IF EXISTS kith_bump_post_render_rev()")
        op.execute("DROP FUNCTION IF EXISTS kith_bump_render_rev()")
    else:
        op.execute("DROP TRIGGER IF EXISTS posts_render_rev")
        op.execute("DROP TRIGGER IF EXISTS accounts_render_rev")
        for table, *events in POST_PARTS:
            for event in events:
                op.execute(f"DROP TRIGGER IF EXISTS {table}_render_rev_{event.lower()}")
