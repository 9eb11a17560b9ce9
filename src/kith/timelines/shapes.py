"""What a timeline's rows are made into: the web's session entities or the client API's refs.

A web page presents whole posts (`kith.posts.presenter`), so its timelines load them as
entities. The client API renders a page from `kith.mastodon_api.entity_cache`, which reads
what changes fresh and keeps the rest per process: of each post it needs only the id, the
author and what it boosts. Reading whole rows there cost a public page ~20 % of its CPU
(bench/profile_api.py): the text and dates of 40 posts read, converted and made into
entities that nothing looked at.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from kith import db_plans
from kith.posts.models import Post


@dataclass(frozen=True, slots=True)
class PostRef:
    """A post as a page of the client API names it: what the entity cache needs to find the
    rest."""

    id: int
    account_id: int
    reblog_of_id: int | None


P = TypeVar("P", Post, PostRef)


@dataclass(frozen=True, eq=False)
class Shape(Generic[P]):
    """`columns` begin every row of a timeline statement of this shape; `make` turns such
    rows (more columns may follow) into posts."""

    columns: tuple[Any, ...]
    make: Callable[[AsyncSession, Sequence[Sequence[Any]]], list[P]]

    def of(self, stmt: Select[Any]) -> Select[Any]:
        """`stmt` (a `select(Post)`) selecting this shape's columns instead."""
        return stmt if self is ENTITIES else stmt.with_only_columns(*self.columns)

    async def run(
        self, db: AsyncSession, stmt: Select[Any], params: dict[str, Any] | None = None
    ) -> list[P]:
        """The posts of a statement made by `of`, in its order."""
        if self is ENTITIES:  # the ORM's own path, as before shapes
            return cast(list[P], list((await db.scalars(stmt, params)).all()))
        return self.make(db, (await db.execute(stmt, params)).all())


ENTITIES: Shape[Post] = Shape(
    tuple(Post.__table__.columns),
    lambda db, rows: db_plans.loaded_rows(db, Post, rows),
)
REFS: Shape[PostRef] = Shape(
    (Post.id, Post.account_id, Post.reblog_of_id),
    lambda db, rows: [PostRef(r[0], r[1], r[2]) for r in rows],
)
