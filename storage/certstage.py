"""A certificate list staged in temporary tables, then moved into its incident's rows in key order.

The certificate and domain tables have unique indexes on random keys
(serials, fingerprints, names). Rows inserted in the list's own order land
on random index pages, and when the index outgrows the page cache nearly
every row reads and rewrites a page (measured on 1,000,000 rows: one
`executemany` in one transaction 14-28 s; in 100 chunk transactions 28 s,
the chunks rewriting the same pages again and again). Here the parsed rows
are appended to a temporary table with no index, which takes no lock on the
database (SQLite keeps temporary tables in a file of the connection's own);
an index on the staged keys is built once, after the load; and the rows are
then moved into the real tables in key order, a key range per short write
transaction, so each page of the unique indexes is written about once
(measured: 9 s for the same list, the longest transaction 0.06 s).

Nothing is held in memory but one batch of rows on its way to the stage.
The SQL is SQLAlchemy Core compiled for the connection's dialect (temporary
tables, `INSERT … SELECT … ON CONFLICT DO NOTHING` and `LIMIT … OFFSET` are
common to SQLite and PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import sqlalchemy as sa

from storage.db import insert_on_conflict
from storage.models import Certificate, Domain

CERTIFICATE_TABLE: sa.Table = Certificate.__table__  # type: ignore[attr-defined]
DOMAIN_TABLE: sa.Table = Domain.__table__  # type: ignore[attr-defined]

# The columns of a staged certificate row, in the order of the tuples the
# caller adds; incident and inbound message are the same for the whole list
# and are given when the rows are moved. `seq` is the row's place in the
# list: of two rows with one key, the earlier is kept, as in the list.
STAGED_COLUMNS = ("seq", "key", "sha256", "serial", "issuer", "subject", "dns_names",
                  "not_before", "not_after", "precertificate", "crtsh_id")
CERTIFICATE_STAGE = "rootnotify_certificate_stage"
DOMAIN_STAGE = "rootnotify_domain_stage"


def _stage_tables() -> tuple[sa.Table, sa.Table]:
    metadata = sa.MetaData()
    certificates = sa.Table(
        CERTIFICATE_STAGE, metadata,
        sa.Column("seq", sa.Integer, nullable=False),
        *(sa.Column(name, CERTIFICATE_TABLE.c[name].type) for name in STAGED_COLUMNS[1:]),
        prefixes=["TEMPORARY"])
    domains = sa.Table(DOMAIN_STAGE, metadata, sa.Column("name", DOMAIN_TABLE.c.name.type),
                       prefixes=["TEMPORARY"])
    sa.Index(f"{CERTIFICATE_STAGE}_key", certificates.c.key, certificates.c.seq)
    sa.Index(f"{DOMAIN_STAGE}_name", domains.c.name)
    return certificates, domains


STAGE_CERTIFICATES, STAGE_DOMAINS = _stage_tables()
_DATED = (STAGED_COLUMNS.index("not_before"), STAGED_COLUMNS.index("not_after"))


def _processed(row: tuple[Any, ...], processors: tuple[tuple[int, Any], ...]) -> tuple[Any, ...]:
    values = list(row)
    for position, processor in processors:
        if values[position] is not None and values[position].__class__ is not bool:
            values[position] = processor(values[position])
    return tuple(values)


@dataclass(frozen=True)
class _Statements:
    """The stage's SQL compiled for one dialect, with positional parameters."""

    drop: tuple[str, ...]
    create: tuple[str, ...]
    index: tuple[str, ...]
    add_certificates: str
    add_domains: str
    certificate_bound: str  # the key CHUNK rows after a key (LIMIT 1 OFFSET n)
    domain_bound: str
    move_certificates: str  # (incident, inbound, after, up to)
    move_certificates_rest: str  # (incident, inbound, after)
    move_domains: str
    move_domains_rest: str
    processors: tuple[tuple[int, Any], ...]  # bind processors of the added rows' columns


def _sql(statement: Any, dialect: sa.engine.Dialect) -> str:
    return str(statement.compile(dialect=dialect))


@lru_cache(maxsize=4)
def _statements(dialect: sa.engine.Dialect) -> _Statements:
    # Positional parameters, so rows go to the driver's executemany as the
    # tuples they are (psycopg takes %s as well as SQLAlchemy's named style).
    positional = dialect if dialect.positional else type(dialect)(paramstyle="format")
    certs, names = STAGE_CERTIFICATES, STAGE_DOMAINS

    def compiled(statement: Any) -> str:
        return _sql(statement, positional)

    def move_certificates(bounded: bool) -> str:
        rows = sa.select(sa.bindparam("incident", type_=sa.String),
                         sa.bindparam("inbound", type_=sa.Integer),
                         *(certs.c[name] for name in STAGED_COLUMNS[1:]))
        rows = rows.where(certs.c.key > sa.bindparam("after", type_=sa.String))
        if bounded:
            rows = rows.where(certs.c.key <= sa.bindparam("upto", type_=sa.String))
        rows = rows.order_by(certs.c.key, certs.c.seq)
        return compiled(insert_on_conflict(dialect.name, CERTIFICATE_TABLE).from_select(
            ["incident_id", "inbound_id", *STAGED_COLUMNS[1:]], rows).on_conflict_do_nothing())

    def move_domains(bounded: bool) -> str:
        rows = sa.select(sa.bindparam("incident", type_=sa.String), names.c.name).distinct()
        rows = rows.where(names.c.name > sa.bindparam("after", type_=sa.String))
        if bounded:
            rows = rows.where(names.c.name <= sa.bindparam("upto", type_=sa.String))
        rows = rows.order_by(names.c.name)
        return compiled(insert_on_conflict(dialect.name, DOMAIN_TABLE).from_select(
            ["incident_id", "name"], rows).on_conflict_do_nothing())

    def bound(column: sa.Column[Any]) -> str:
        return compiled(sa.select(column).where(column > sa.bindparam("after", type_=sa.String))
                        .order_by(column).limit(1).offset(sa.bindparam("skip", type_=sa.Integer)))

    processors = []
    for position, name in enumerate(STAGED_COLUMNS):
        # The dialect's own form of the type: on SQLite the generic DateTime's
        # processor leaves a naive datetime for sqlite3 to format its own way
        # ("… 12:00:00"), not SQLAlchemy's ("… 12:00:00.000000"), and SQL
        # comparing such a column with a bound time then never matches.
        processor = certs.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            processors.append((position, processor))
    return _Statements(
        drop=tuple(_sql(sa.schema.DropTable(t, if_exists=True), dialect) for t in (certs, names)),
        create=tuple(_sql(sa.schema.CreateTable(t), dialect) for t in (certs, names)),
        index=tuple(_sql(sa.schema.CreateIndex(i), dialect)
                    for t in (certs, names) for i in t.indexes),
        add_certificates=compiled(sa.insert(certs)),
        add_domains=compiled(sa.insert(names)),
        certificate_bound=bound(certs.c.key), domain_bound=bound(names.c.name),
        move_certificates=move_certificates(True), move_certificates_rest=move_certificates(False),
        move_domains=move_domains(True), move_domains_rest=move_domains(False),
        processors=tuple(processors))


class ListStage:
    """The temporary tables of one list on one connection: rows added, indexed, moved in ranges.

    `cursor` is a DB-API cursor of the connection that holds the temporary
    tables (they exist for that connection only), in a transaction of the
    caller's; the caller sets it anew for each transaction. Adding rows needs
    no write transaction on the database, moving them does.
    """

    def __init__(self, cursor: Any, dialect: sa.engine.Dialect) -> None:
        self.cursor = cursor
        self._sql = _statements(dialect)
        for statement in (*self._sql.drop, *self._sql.create):
            cursor.execute(statement)
        self.rows = 0

    def add_certificates(self, rows: list[tuple[Any, ...]]) -> None:
        """Append rows: tuples in STAGED_COLUMNS order, `seq` (the place in the list) first."""
        if not rows:
            return
        processors = self._sql.processors
        before, after = _DATED
        # Most rows of a big list have no validity dates, and a plain bool
        # binds as the Boolean type would: only rows with dates go through
        # the columns' processors (a per-row check of every column cost more
        # than the insert).
        if any(row[before] is not None or row[after] is not None for row in rows):
            rows = [row if row[before] is None and row[after] is None
                    else _processed(row, processors) for row in rows]
        self.cursor.executemany(self._sql.add_certificates, rows)
        self.rows += len(rows)

    def add_domains(self, names: Iterable[str]) -> None:
        rows = [(name,) for name in names]
        if rows:
            self.cursor.executemany(self._sql.add_domains, rows)

    def index(self) -> None:
        """Index the staged keys and names: once, after the load, as an index is built fastest."""
        for statement in self._sql.index:
            self.cursor.execute(statement)

    def _ranges(self, bound: str, after: str, per_range: int) -> Iterator[tuple[str, str | None]]:
        while True:
            self.cursor.execute(bound, (after, 1, per_range - 1))  # key > ?, LIMIT, OFFSET
            found = self.cursor.fetchone()
            yield after, (found[0] if found else None)
            if found is None:
                return
            after = found[0]

    def certificate_ranges(self, per_range: int) -> Iterator[tuple[str, str | None]]:
        """(after, up to) key ranges of about `per_range` staged rows each, in key order.

        The last range is open (up to None). Keys are never empty, so "" is
        before them all; rows sharing a key fall in one range.
        """
        return self._ranges(self._sql.certificate_bound, "", per_range)

    def domain_ranges(self, per_range: int) -> Iterator[tuple[str, str | None]]:
        """(after, up to) ranges of about `per_range` staged names each, in name order."""
        return self._ranges(self._sql.domain_bound, "", per_range)

    def drop(self) -> None:
        for statement in self._sql.drop:
            self.cursor.execute(statement)


def move_certificates(connection: sa.Connection, incident_id: str, inbound_id: int,
                      key_range: tuple[str, str | None]) -> int:
    """Insert the staged rows of one key range into the incident; returns how many were new.

    Runs in the caller's write transaction, on the connection holding the stage.
    """
    sql = _statements(connection.dialect)
    after, upto = key_range
    if upto is None:
        params: tuple[Any, ...] = (incident_id, inbound_id, after)
        statement = sql.move_certificates_rest
    else:
        params, statement = (incident_id, inbound_id, after, upto), sql.move_certificates
    return connection.exec_driver_sql(statement, params).rowcount


def move_domains(connection: sa.Connection, incident_id: str,
                 name_range: tuple[str, str | None]) -> int:
    """Insert the staged names of one range into the incident; returns how many it did not have."""
    sql = _statements(connection.dialect)
    after, upto = name_range
    if upto is None:
        return connection.exec_driver_sql(sql.move_domains_rest, (incident_id, after)).rowcount
    return connection.exec_driver_sql(sql.move_domains, (incident_id, after, upto)).rowcount
