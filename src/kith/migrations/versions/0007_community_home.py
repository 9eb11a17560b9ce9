"""Communities' threads in members' Home feeds

A member who keeps a community in Home (`community_members.in_home`, declared in the models,
created by 0001; on when they join) gets its threads in their Home. Home feeds (0005) hold
candidates, so triggers add them whichever code path writes:

- a new thread in a community: to the feeds of its active members who keep it in Home, in
  any state (a waiting thread approved later needs no second entry; reading applies the
  Home rule and the policy, which leave out what is waiting or removed);
- a membership that begins (joining, an approved request) or the setting turned back on: the
  community's threads above the member's floor.

Nothing is removed when a member leaves, is banned or turns the setting off: entries are
candidates and `timelines.home_clause` asks for the membership when they are read. Replies
in a community's threads are not added: they reach Home by the usual rules (followed
authors), as they do without communities.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_THREAD_ROWS = """SELECT m.account_id, NEW.post_id FROM community_members m
  JOIN home_feeds h ON h.account_id = m.account_id
  WHERE m.community_id = NEW.community_id AND m.state = 'active' AND m.in_home"""

# The community's threads above the member's floor (primary key range scan of the community).
_MEMBER_ROWS = """SELECT h.account_id, cp.post_id FROM home_feeds h
  JOIN community_posts cp ON cp.community_id = NEW.community_id AND cp.post_id > h.floor_id
  WHERE h.account_id = NEW.account_id AND cp.is_thread"""

_KEEPS = "NEW.state = 'active' AND NEW.in_home"
_KEPT_BEFORE = "OLD.state = 'active' AND OLD.in_home"

# (trigger, table, event, WHEN, function): the plpgsql function (rows to add) it runs.
_TRIGGERS = (
    ("home_community_thread", "community_posts", "INSERT", "NEW.is_thread", "thread"),
    ("home_community_joined", "community_members", "INSERT", _KEEPS, "member"),
    (
        "home_community_kept",
        "community_members",
        "UPDATE OF state, in_home",
        f"{_KEEPS} AND NOT ({_KEPT_BEFORE})",
        "member",
    ),
)
_FUNCTIONS = {"thread": _THREAD_ROWS, "member": _MEMBER_ROWS}

# Feeds made before this revision: the threads of the communities their people are in.
_BACKFILL = """SELECT h.account_id, cp.post_id FROM home_feeds h
  JOIN community_members m ON m.account_id = h.account_id
    AND m.state = 'active' AND m.in_home
  JOIN community_posts cp ON cp.community_id = m.community_id AND cp.post_id > h.floor_id
  WHERE cp.is_thread"""


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        for function, rows in _FUNCTIONS.items():
            op.execute(
                f"""CREATE FUNCTION kith_home_community_{function}() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM home_feeds) THEN
    INSERT INTO home_entries (account_id, post_id)
    {rows}
    ON CONFLICT DO NOTHING;
  END IF;
  RETURN NULL;
END $$"""  # noqa: S608 (statements from this module's constants)
            )
        for name, table, event, when, function in _TRIGGERS:
            op.execute(
                f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW "
                f"WHEN ({when}) EXECUTE FUNCTION kith_home_community_{function}()"
            )
        op.execute(
            f"INSERT INTO home_entries (account_id, post_id) {_BACKFILL} ON CONFLICT DO NOTHING"
        )
        return
    for name, table, event, when, function in _TRIGGERS:
        # EXISTS: nothing to look up while nobody has a feed (bulk imports, new instances).
        op.execute(
            f"""CREATE TRIGGER {name} AFTER {event} ON {table}
WHEN {when} AND EXISTS (SELECT 1 FROM home_feeds) BEGIN
  INSERT OR IGNORE INTO home_entries (account_id, post_id)
  {_FUNCTIONS[function]};
END"""  # noqa: S608 (statements from this module's constants)
        )
    op.execute(f"INSERT OR IGNORE INTO home_entries (account_id, post_id) {_BACKFILL}")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, table, _event, _when, _function in _TRIGGERS:
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    if postgres:
        for function in _FUNCTIONS:
            op.execute(f"DROP FUNCTION IF EXISTS kith_home_community_{function}()")
