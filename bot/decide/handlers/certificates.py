"""A CA's certificate list in the thread: store its certificates and domains, then a receipt.

Each attached list is streamed from the parser into a stage (temporary
tables, storage.certstage) and from there into the incident's tables in key
order, CHUNK_ROWS rows a transaction, so memory stays flat whatever the
list's length and each page of the unique indexes is written about once.
Duplicates — inside a list, across lists, or on a retry of the same
message — are counted once by the unique keys. Rejected lines are recorded
with their line numbers and reasons in a `certificate-list` event whose
data carries "rejected": N (show --json sums it). A list cut short by a
decompression limit (zip or gzip bomb) keeps what was read before the
limit; the CA and staff are told. The list satisfies the
open `certificate-list` deadline (R2) even with rejected lines.

Storing happens before the message is acted on (`store_lists_before_acting`,
called by the pipeline between analysis and its act transaction): each chunk
is its own short write transaction, so SMTP intake commits between chunks
instead of waiting behind a whole list (1,000,000 rows held the write lock
~50 s in one transaction, past storage.db's 30 s busy timeout). The inserts
are idempotent, and each chunk's transaction also records the list's
progress (`CertificateListLoad`: rows read, new certificates and domains so
far), so a crash between chunks, or in the act that follows, loses nothing
and counts nothing twice: a retry skips the lists already complete and the
receipt reports what this message added. The act handler then records the
events and the receipt from that progress, or stores a list itself, inside
the act transaction, when the early stage did not run (a direct call, or the
message's incident changed in between).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from typing import Any, Protocol

import sqlalchemy as sa
from sqlmodel import Session

from bot.compose.addressing import common
from bot.compose.alerts import alert_staff
from bot.compose.replies import allow_auto_reply
from bot.context import Context
from bot.decide.classify import Classification, classify
from bot.decide.handlers.listoutcome import ListOutcome
from bot.decide.handlers.signatures import signature_phrase
from bot.decide.incident.deadlines import satisfy
from bot.errors import LimitExceeded
from bot.outbox.enqueue import enqueue
from bot.outbox.render import MailSpec
from bot.parse.certlists.read import DEFAULT_LIMITS as DEFAULT_LIST_LIMITS
from bot.parse.certlists.read import (
    ListLimits,
    RejectedLine,
    iter_certificate_rows,
)
from bot.parse.mail.message import Attachment
from bot.rules.events import EventKind
from bot.service.analysis import Analysis
from storage.certificates import (
    certificate_count,
    domain_count,
    list_loads,
    save_list_load,
)
from storage.certstage import ListStage, move_certificates, move_domains
from storage.models import CertificateListLoad, Event, InboundMessage, Incident

log = logging.getLogger("rootnotify.decide.certificates")

# Rows moved from the stage into the incident per write transaction (and
# names per domain transaction). The rows of a chunk are a range of the
# unique index's keys, so its pages are written once whatever the chunk's
# size; the size bounds how long a chunk holds the write lock (10,000 rows:
# ~0.05 s, 1,000,000-row list, storage.certstage) against the fixed cost of
# a transaction and its progress row (~100 of them a million rows).
CHUNK_ROWS = 10_000
# Parsed rows kept in memory before they are appended to the stage: one
# executemany's worth, a few MB.
STAGE_BATCH_ROWS = 10_000
# Rejected lines kept per list in the event and quoted in the receipt: enough
# to show the CA what is wrong; the count says how many there were.
FIRST_REJECTIONS = 10


class ListWriter(Protocol):
    """Where a list is stored: its stage (temporary tables) and its write transactions.

    The pipeline's bulk writer (storage.db.BulkWriter) gives a transaction
    a chunk; `InTransaction` gives the act transaction's own session to both.
    """

    connection: sa.Connection

    def stage(self) -> AbstractContextManager[Any]: ...

    def write(self) -> AbstractContextManager[Session]: ...


class InTransaction:
    """Everything inside one open session's transaction (the act handler's)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.connection = session.connection()

    @contextmanager
    def stage(self) -> Iterator[Any]:
        cursor = self.connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            yield cursor
        finally:
            cursor.close()

    def write(self) -> AbstractContextManager[Session]:
        return nullcontext(self.session)


def _key(sha256: str | None, serial: str | None, issuer: str | None,
         crtsh_id: int | None) -> str | None:
    """The row's identity in its incident: the SHA-256, else issuer and serial, else crt.sh id."""
    if sha256:
        return sha256
    if serial:
        return f"serial:{(issuer or '').lower()}:{serial}"
    if crtsh_id is not None:
        return f"crtsh:{crtsh_id}"
    return None


def _reject(outcome: ListOutcome, item: RejectedLine) -> None:
    outcome.rejected += 1
    if len(outcome.first_rejections) < FIRST_REJECTIONS:
        outcome.first_rejections.append(item)


def store_list(writer: ListWriter, incident_id: str, inbound_id: int, position: int,
               attachment: Attachment, prior: CertificateListLoad | None = None,
               limits: ListLimits = DEFAULT_LIST_LIMITS) -> ListOutcome:
    """Stream one attached list into Certificate and Domain rows (storage.certstage).

    The parsed rows go to the list's stage STAGE_BATCH_ROWS at a time, in
    one transaction of the stage's own that takes no lock on the database
    (each commit of the stage flushes its cache: a hundred of them doubled
    the staging time); then they move into the incident's tables in key
    order, CHUNK_ROWS a write transaction, each recording the list's
    progress. `prior` is the progress an earlier, interrupted pass left:
    what it inserted still counts as new.
    """
    started = time.perf_counter()
    outcome = ListOutcome(attachment.filename)
    if prior is not None:
        outcome.new_certificates, outcome.new_domains = prior.new_certificates, prior.new_domains
    stage: ListStage | None = None
    try:
        with writer.stage() as cursor:
            stage = ListStage(cursor, writer.connection.dialect)
            _stage_rows(stage, outcome, attachment, limits)
            stage.index()
            steps = ([("certificates", r) for r in stage.certificate_ranges(CHUNK_ROWS)]
                     + [("domains", r) for r in stage.domain_ranges(CHUNK_ROWS)])
        _move(writer, steps, outcome, incident_id, inbound_id, position, started)
    finally:
        if stage is not None:
            with writer.stage() as cursor:
                stage.cursor = cursor
                stage.drop()
    return outcome


def _stage_rows(stage: ListStage, outcome: ListOutcome, attachment: Attachment,
                limits: ListLimits) -> None:
    """Parse the list into its stage; rejected lines are counted in `outcome`."""
    rows: list[tuple[Any, ...]] = []
    domains: set[str] = set()
    seq = 0

    def flush() -> None:
        stage.add_certificates(rows)
        stage.add_domains(domains)
        outcome.rows += len(rows)
        rows.clear()
        domains.clear()

    # A stream: a large list is decoded from the raw message as it is read,
    # never held whole beside its rows.
    stream = attachment.open()
    try:
        # Plain tuples from the parser, unpacked here: at a million rows every
        # attribute lookup and call per row shows (see bench/certlists_ingest.py).
        for item in iter_certificate_rows(attachment.filename, stream, limits=limits):
            if type(item) is RejectedLine:
                _reject(outcome, item)
                continue
            (sha256, serial, issuer, subject, dns_names, not_before, not_after, precertificate,
             crtsh_id, line, source) = item  # type: ignore[misc]
            key = _key(sha256, serial, issuer, crtsh_id)
            if key is None:
                _reject(outcome, RejectedLine(line, "", "nothing identifies the certificate "
                                              "(no SHA-256, serial or crt.sh id)", source))
                continue
            # In storage.certstage.STAGED_COLUMNS order.
            seq += 1
            rows.append((seq, key, sha256, serial, issuer, subject, "\n".join(dns_names),
                         not_before, not_after, precertificate, crtsh_id))
            domains.update(dns_names)
            if len(rows) >= STAGE_BATCH_ROWS:
                flush()
    except LimitExceeded as exc:
        outcome.limit = str(exc)
    finally:
        stream.close()
    flush()


def _move(writer: ListWriter, steps: list[tuple[str, tuple[str, str | None]]],
          outcome: ListOutcome, incident_id: str, inbound_id: int, position: int,
          started: float) -> None:
    """Move the staged rows, then names, into the incident: a key range a write transaction."""
    for number, (what, bounds) in enumerate(steps, 1):
        complete = number == len(steps)
        with writer.write() as session:
            began = time.perf_counter()
            connection = session.connection()
            if what == "certificates":
                outcome.new_certificates += move_certificates(connection, incident_id,
                                                              inbound_id, bounds)
            else:
                outcome.new_domains += move_domains(connection, incident_id, bounds)
            outcome.seconds = time.perf_counter() - started
            outcome.chunks += 1
            save_list_load(session, outcome.load(inbound_id, position, incident_id, complete))
        # Measured after the commit; the row above has the longest of the chunks before.
        held = time.perf_counter() - began
        if held > outcome.longest_chunk:
            outcome.longest_chunk = held
            if complete:
                with writer.write() as session:
                    save_list_load(session, outcome.load(inbound_id, position, incident_id,
                                                         complete))


def store_lists_before_acting(ctx: Context, inbound_id: int, analysis: Analysis) -> None:
    """The pipeline's pre-act stage: store the lists of a CA's mail in its own incident.

    Classifies read-only, as the act will; only a `certificate-list` (a CA
    contact writing in an incident of that CA) is stored here. Lists an
    earlier attempt completed are skipped.
    """
    if not analysis.certificate_lists:
        return
    with ctx.db.read() as session:
        cls = classify(session, ctx.config, analysis)
        if cls.kind != "certificate-list" or cls.incident is None:
            return
        incident_id = cls.incident.id
        loads = {load.position: load for load in list_loads(session, inbound_id)}
    with ctx.db.bulk() as bulk:
        for position, attachment in enumerate(analysis.certificate_lists):
            load = loads.get(position)
            if load is not None and load.incident_id == incident_id and load.complete:
                continue
            prior = load if load is not None and load.incident_id == incident_id else None
            outcome = store_list(bulk, incident_id, inbound_id, position, attachment,
                                 prior, list_limits(ctx))
            log.info("message %s in %s: %s in %.2f s, %d chunk(s), longest write "
                     "transaction %.3f s", inbound_id, incident_id, _summary(outcome),
                     outcome.seconds, outcome.chunks, outcome.longest_chunk)


def list_limits(ctx: Context) -> ListLimits:
    """The list parser's limits with the archive limits the operator configured ([limits])."""
    return replace(DEFAULT_LIST_LIMITS, archive=ctx.config.limits.archive)


def _summary(outcome: ListOutcome) -> str:
    text = f"certificate list {outcome.source}: {outcome.rows:,} row(s) read"
    if outcome.rejected:
        shown = "; ".join(f"line {r.line}: {r.reason}" if r.line else r.reason
                          for r in outcome.first_rejections[:3])
        text += f", {outcome.rejected:,} line(s) rejected ({shown})"
    if outcome.limit:
        text += f"; cut short by a limit: {outcome.limit}"
    return text


def handle_certificate_list(session: Session, ctx: Context, inbound: InboundMessage,
                            analysis: Analysis, cls: Classification) -> None:
    incident = cls.incident
    assert incident is not None and cls.ca is not None
    now = inbound.received_at
    assert inbound.id is not None
    loads = {load.position: load for load in list_loads(session, inbound.id)}
    outcomes = []
    for position, attachment in enumerate(analysis.certificate_lists):
        load = loads.get(position)
        mine = load is not None and load.incident_id == incident.id
        if mine and load is not None and load.complete:
            outcome = ListOutcome.from_load(load)  # stored before acting
        else:
            outcome = store_list(InTransaction(session), incident.id, inbound.id,
                                 position, attachment, load if mine else None,
                                 list_limits(ctx))
            log.info("message %s in %s: %s in %.2f s", inbound.id, incident.id,
                     _summary(outcome), outcome.seconds)
        outcomes.append(outcome)
        session.add(Event(incident_id=incident.id, at=now,
                          kind=EventKind.CERTIFICATE_LIST, rule="R2",
                          inbound_id=inbound.id, summary=_summary(outcome),
                          data=json.dumps(outcome.event_data())))
    certs_after = certificate_count(session, incident.id)
    domains_after = domain_count(session, incident.id)
    satisfied = satisfy(session, incident, cls.kind, inbound, now,
                        hint_text=analysis.message.subject or "")
    totals = {"rows": sum(o.rows for o in outcomes),
              "new_certificates": sum(o.new_certificates for o in outcomes),
              "new_domains": sum(o.new_domains for o in outcomes),
              "certificates": certs_after, "domains": domains_after,
              "rejected": sum(o.rejected for o in outcomes)}
    inbound.note = (f"{totals['rows']:,} rows, {totals['new_certificates']:,} new certificates, "
                    f"{totals['rejected']:,} rejected")
    limited = [o for o in outcomes if o.limit]
    if limited:
        _tell_staff_of_limits(session, ctx, incident, inbound, analysis, limited)
    _receipt(session, ctx, incident, inbound, analysis, outcomes, totals, satisfied)


def _tell_staff_of_limits(session: Session, ctx: Context, incident: Incident,
                          inbound: InboundMessage, analysis: Analysis,
                          limited: list[ListOutcome]) -> None:
    lines = "\n".join(f"- {o.source}: {o.limit} ({o.rows:,} rows read before it)"
                      for o in limited)
    alert_staff(session, ctx, subject=f"Certificate list cut short by a limit in {incident.id}",
                body=(f"{analysis.message.from_address} sent a certificate list that passed a "
                      f"decompression limit (a zip or gzip bomb, or a list too large):\n\n"
                      f"{lines}\n\nThe rows read before the limit were recorded; the raw "
                      f"message is kept. The CA was told in its receipt.\n"),
                incident_id=incident.id, inbound_id=inbound.id)


def _receipt(session: Session, ctx: Context, incident: Incident, inbound: InboundMessage,
             analysis: Analysis, outcomes: list[ListOutcome], totals: dict[str, int],
             satisfied: list[str]) -> None:
    sender = analysis.message.from_address or ""
    if not allow_auto_reply(session, ctx, sender, what="certificate list receipt",
                            incident_id=incident.id, inbound_id=inbound.id):
        return
    subject, body = ctx.renderer.render(
        "certificate-list-receipt.txt.j2", incident=incident, ca_name=incident.ca,
        received_at=inbound.received_at, lists=outcomes, totals=totals, satisfied=satisfied,
        signature=signature_phrase(analysis.smime), **common(ctx))
    enqueue(session, ctx, MailSpec(
        kind="receipt", to=[sender], subject=subject, body=body, incident_id=incident.id,
        in_reply_to=analysis.message.message_id, references=analysis.message.references,
    ), inbound_id=inbound.id)
