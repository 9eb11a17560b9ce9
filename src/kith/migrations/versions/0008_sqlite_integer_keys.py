"""SQLite: single-column integer primary keys become the table's rowid

SQLite stores a table in a b-tree keyed by its rowid. A primary key declared `BIGINT` (as
0001 declared every id) is not the rowid: it is a second b-tree beside the table, so each
lookup by id descends two trees, and each insert writes both. Declared `INTEGER`, the key is
the rowid itself (same 64-bit values): one tree, one descent (replayed Home statements: the
feed's page 0.52 -> 0.40 ms, the token's lookup 0.061 -> 0.031 ms; the file ~3 % smaller).

Each such table is rebuilt the way SQLite documents for changes ALTER TABLE cannot make:
a copy with the new declaration, the rows copied in one statement, the old table dropped,
the copy renamed, its indexes and triggers made again from their stored text. Foreign keys
are off while it runs (`kith.migrations.env`: otherwise dropping a table would delete the
rows that refer to it) and checked before the commit. Tables whose primary key has several
columns are left as they are (their lookups are index-only already).

PostgreSQL: nothing to do (its tables are heaps; a primary key is an index either way).

Revision ID: 0008
Revises: 0007
"""

import re
from collections.abc import Sequence

from alembic import op
from sqlalchemy import text
from sqlalchemy.engine import Connection

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PRIMARY_KEY = re.compile(r"CONSTRAINT \w+ PRIMARY KEY \((\w+)\)")


def upgrade() -> None:
    _declare_keys("BIGINT", "INTEGER")


def downgrade() -> None:
    _declare_keys("INTEGER", "BIGINT")


def _declare_keys(old: str, new: str) -> None:
    """Rebuild every table whose one-column primary key is declared `old`, declaring it
    `new` (SQLite only)."""
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    if conn.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError("foreign keys must be off while tables are rebuilt (see env.py)")
    tables = conn.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE TABLE %'"
    ).all()
    # Triggers on other tables may name a table while it is gone: SQLite's legacy rename
    # leaves them unchecked (they name the table as it is called again afterwards).
    conn.exec_driver_sql("PRAGMA legacy_alter_table = ON")
    try:
        for name, ddl in tables:
            keys = _PRIMARY_KEY.findall(ddl)
            column = f"\n\t{keys[0]} {old} NOT NULL," if len(keys) == 1 else None
            if column is not None and column in ddl:
                _rebuild(conn, name, ddl.replace(column, f"\n\t{keys[0]} {new} NOT NULL,", 1))
    finally:
        conn.exec_driver_sql("PRAGMA legacy_alter_table = OFF")
    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    if broken:
        raise RuntimeError(f"rows refer to rows that do not exist: {broken[:5]}")


def _rebuild(conn: Connection, name: str, ddl: str) -> None:
    copy = f"{name}__rebuilt"
    kept = conn.execute(
        text(
            "SELECT sql FROM sqlite_master WHERE tbl_name = :name"
            " AND type IN ('index', 'trigger') AND sql IS NOT NULL"
        ),
        {"name": name},
    ).all()
    head = re.match(rf'CREATE TABLE (?:{name}|"{name}") \(', ddl)  # quoted once renamed
    assert head is not None, ddl[:80]
    conn.exec_driver_sql(f"CREATE TABLE {copy} (" + ddl[head.end() :])
    conn.exec_driver_sql(f"INSERT INTO {copy} SELECT * FROM {name}")  # noqa: S608 (our names)
    conn.exec_driver_sql(f"DROP TABLE {name}")
    conn.exec_driver_sql(f"ALTER TABLE {copy} RENAME TO {name}")
    for (sql,) in kept:
        conn.exec_driver_sql(sql)
