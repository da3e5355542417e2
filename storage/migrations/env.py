"""Alembic's entry point for rootnotify: migrations run on the connection they are given.

`storage.migrate` hands over a connection already inside a write transaction
(on SQLite, BEGIN IMMEDIATE: one process migrates, the others wait and then
find the schema at head). Nothing here reads alembic.ini or a URL.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import context
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString

from storage import models
from storage.migrate import same_type

assert models  # the import registers every table with SQLModel's metadata


def plain_types(kind: str, obj: Any, autogen_context: Any) -> str | bool:
    """Write new revisions with SQLAlchemy's own types, not storage.models' or
    sqlmodel's, so that a revision stays what it was when the models change."""
    if kind == "type" and isinstance(obj, AutoString):
        return f"sa.String(length={obj.length})" if obj.length else "sa.String()"
    if kind == "type" and isinstance(obj, sa.types.TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False



connection = context.config.attributes["connection"]
# SQLite alters a table by copying it ("batch" mode); other databases in place.
context.configure(connection=connection, target_metadata=SQLModel.metadata,
                  render_as_batch=connection.dialect.name == "sqlite",
                  compare_type=same_type, render_item=plain_types)
with context.begin_transaction():
    context.run_migrations()
