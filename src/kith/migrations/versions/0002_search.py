"""full-text search of posts

SQLite: an FTS5 table `posts_fts` (rowid = post id, one `body` column) that keeps its own copy
of the indexed text. The contentless variants would save that copy, but deleting from them needs
SQLite 3.43 (`contentless_delete`) or the exact text that was indexed, and a delete given the
wrong text corrupts the index silently; Debian 12's SQLite is 3.40.
PostgreSQL: a `tsvector` column `posts.search_document` with a GIN index.
Both hold `kith.search.service.document_text`, written by explicit service calls.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BACKFILL_BATCH = 500


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.add_column("posts", sa.Column("search_document", postgresql.TSVECTOR(), nullable=True))
        op.create_index(
            "ix_posts_search_document", "posts", ["search_document"], postgresql_using="gin"
        )
    else:
        # remove_diacritics 2: "cafe" finds "café" (PostgreSQL's 'simple' config does not fold
        # accents; unaccent is an extension an operator may not be allowed to install).
        op.execute(
            "CREATE VIRTUAL TABLE posts_fts USING fts5("
            "body, tokenize = 'unicode61 remove_diacritics 2')"
        )
    _backfill(bind)


def _backfill(bind: sa.Connection) -> None:
    """Index the posts written before this migration (none on a new instance)."""
    from kith.search.service import document_text

    posts = sa.table(
        "posts",
        sa.column("id", sa.BigInteger),
        sa.column("content_html", sa.Text),
        sa.column("spoiler_text", sa.Text),
        sa.column("reblog_of_id", sa.BigInteger),
    )
    last = -1
    while True:
        rows = bind.execute(
            sa.select(posts.c.id, posts.c.content_html, posts.c.spoiler_text)
            .where(posts.c.reblog_of_id.is_(None), posts.c.id > last)
            .order_by(posts.c.id)
            .limit(_BACKFILL_BATCH)
        ).all()
        if not rows:
            return
        for post_id, html, spoiler in rows:
            body = document_text(html or "", spoiler or "")
            if bind.dialect.name == "postgresql":
                bind.execute(
                    sa.text(
                        "UPDATE posts SET search_document = to_tsvector('simple', :body) "
                        "WHERE id = :id"
                    ),
                    {"body": body, "id": post_id},
                )
            else:
                bind.execute(
                    sa.text("INSERT INTO posts_fts (rowid, body) VALUES (:id, :body)"),
                    {"body": body, "id": post_id},
                )
        last = rows[-1][0]


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_posts_search_document", table_name="posts")
        op.drop_column("posts", "search_document")
    else:
        op.execute("DROP TABLE posts_fts")
