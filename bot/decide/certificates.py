"""A CA's certificate list in the thread: store its certificates and domains, then a receipt.

Each attached list is streamed from the parser into the database in chunks
(one `executemany` of CHUNK_ROWS rows at a time), so memory stays flat
whatever the list's length. Duplicates — inside a list, across lists, or on
a retry of the same message — are counted once by the unique keys, so a
retry after a failure (the pipeline's transaction rolls back) or a second
copy of the list changes nothing. Rejected lines are recorded with their line
numbers and reasons in a `certificate-list` event whose data carries
"rejected": N (show --json sums it). A list cut short by a decompression
limit (zip or gzip bomb) keeps what was read before the limit; the CA and
staff are told. The list satisfies the open `certificate-list` deadline (R2)
even with rejected lines.

The whole message is acted on in the pipeline's one write transaction, so a
big list holds SQLite's write lock while it is inserted. bench/certlists_ingest.py
measured ~50 s for 1,000,000 rows with 2,000,000 domains on a busy 2-core
machine: longer than storage.db's 30 s busy timeout, so other writers (SMTP
intake) can time out meanwhile. The inserts are idempotent, which would let
a list be committed in chunks of its own transactions; that is a pipeline
change, not made here.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session

from bot.analysis import Analysis
from bot.context import Context
from bot.decide.alerts import alert_staff
from bot.decide.classify import Classification
from bot.decide.deadlines import satisfy
from bot.decide.mail import allow_auto_reply
from bot.decide.outmail import common
from bot.decide.signatures import signature_phrase
from bot.errors import LimitExceeded
from bot.outbox.enqueue import enqueue
from bot.outbox.render import MailSpec
from bot.parse.certlists import CertRecord, RejectedLine, iter_certificate_list
from bot.parse.message import Attachment
from storage.certificates import (
    certificate_count,
    domain_count,
    insert_certificates,
    insert_domains,
)
from storage.models import Event, InboundMessage, Incident

log = logging.getLogger("rootnotify.decide.certificates")

# Rows per executemany. SQLite inserts ~120,000 rows/s into a uniquely indexed
# table; 5,000 rows (a few MB of dicts) is ~40 ms of work per round, enough to
# make per-statement overhead vanish while memory stays a few MB.
CHUNK_ROWS = 5_000
# Rejected lines kept per list in the event and quoted in the receipt: enough
# to show the CA what is wrong; the count says how many there were.
FIRST_REJECTIONS = 10


@dataclass
class ListOutcome:
    """What one attached list gave: rows read, lines rejected, and whether a limit cut it."""

    source: str
    rows: int = 0
    rejected: int = 0
    first_rejections: list[RejectedLine] = field(default_factory=list)
    limit: str | None = None
    seconds: float = 0.0

    def event_data(self) -> dict[str, Any]:
        return {"file": self.source, "rows": self.rows, "rejected": self.rejected,
                "limit": self.limit, "seconds": round(self.seconds, 3),
                "first_rejections": [{"line": r.line, "source": r.source, "reason": r.reason,
                                      "text": r.text} for r in self.first_rejections]}


def certificate_key(item: CertRecord) -> str | None:
    """The row's identity in its incident: the SHA-256, else issuer and serial, else crt.sh id."""
    if item.sha256:
        return item.sha256
    if item.serial:
        return f"serial:{(item.issuer or '').lower()}:{item.serial}"
    if item.crtsh_id is not None:
        return f"crtsh:{item.crtsh_id}"
    return None


def _row(item: CertRecord, key: str, incident_id: str,
         inbound_id: int | None) -> tuple[Any, ...]:
    """The row in storage.certificates.CERTIFICATE_COLUMNS order."""
    return (incident_id, key, item.sha256, item.serial, item.issuer, item.subject,
            "\n".join(item.dns_names), item.not_before, item.not_after, item.precertificate,
            item.crtsh_id, inbound_id)


def _reject(outcome: ListOutcome, item: RejectedLine) -> None:
    outcome.rejected += 1
    if len(outcome.first_rejections) < FIRST_REJECTIONS:
        outcome.first_rejections.append(item)


def store_list(session: Session, incident_id: str, inbound_id: int | None,
               attachment: Attachment) -> ListOutcome:
    """Stream one attached list into Certificate and Domain rows, CHUNK_ROWS at a time."""
    started = time.perf_counter()
    outcome = ListOutcome(attachment.filename)
    rows: list[tuple[Any, ...]] = []
    domains: set[str] = set()

    def flush() -> None:
        insert_certificates(session, rows)
        insert_domains(session, incident_id, sorted(domains))
        rows.clear()
        domains.clear()

    try:
        for item in iter_certificate_list(attachment.filename, attachment.data):
            if isinstance(item, RejectedLine):
                _reject(outcome, item)
                continue
            key = certificate_key(item)
            if key is None:
                _reject(outcome, RejectedLine(item.line, "", "nothing identifies the "
                                              "certificate (no SHA-256, serial or crt.sh id)",
                                              item.source))
                continue
            outcome.rows += 1
            rows.append(_row(item, key, incident_id, inbound_id))
            domains.update(item.dns_names)
            if len(rows) >= CHUNK_ROWS or len(domains) >= CHUNK_ROWS:
                flush()
    except LimitExceeded as exc:
        outcome.limit = str(exc)
    flush()
    outcome.seconds = time.perf_counter() - started
    return outcome


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
    certs_before = certificate_count(session, incident.id)
    domains_before = domain_count(session, incident.id)
    outcomes = []
    for attachment in analysis.certificate_lists:
        outcome = store_list(session, incident.id, inbound.id, attachment)
        outcomes.append(outcome)
        log.info("message %s in %s: %s in %.2f s", inbound.id, incident.id, _summary(outcome),
                 outcome.seconds)
        session.add(Event(incident_id=incident.id, at=now, kind="certificate-list", rule="R2",
                          inbound_id=inbound.id, summary=_summary(outcome),
                          data=json.dumps(outcome.event_data())))
    certs_after = certificate_count(session, incident.id)
    domains_after = domain_count(session, incident.id)
    satisfied = satisfy(session, incident, cls.kind, inbound, now,
                        hint_text=analysis.message.subject or "")
    totals = {"rows": sum(o.rows for o in outcomes),
              "new_certificates": certs_after - certs_before,
              "new_domains": domains_after - domains_before,
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
    if not allow_auto_reply(session, ctx, sender):
        session.add(Event(incident_id=incident.id, at=ctx.clock.now(), kind="reply-suppressed",
                          summary=f"certificate list receipt to {sender} suppressed by the "
                                  f"daily cap"))
        return
    subject, body = ctx.renderer.render(
        "certificate-list-receipt.txt.j2", incident=incident, ca_name=incident.ca,
        received_at=inbound.received_at, lists=outcomes, totals=totals, satisfied=satisfied,
        signature=signature_phrase(analysis.smime), **common(ctx))
    enqueue(session, ctx, MailSpec(
        kind="receipt", to=[sender], subject=subject, body=body, incident_id=incident.id,
        in_reply_to=analysis.message.message_id, references=analysis.message.references,
    ), inbound_id=inbound.id)
